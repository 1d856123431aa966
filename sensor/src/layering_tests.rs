//! Checks the layer order promised in `lib.rs` against the sources: a
//! module's production code (tests aside) may name only modules of its own
//! layer or below. Reads the files, so a new upward `crate::` path fails
//! here before review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers from the bottom; modules of one layer may use each other.
const LAYERS: &[&[&str]] = &[
    &["settings", "testing"],
    &["rules"],
    &["alert"],
    &["filter"],
    &["kernel"],
    &["sinks"],
    &["metrics"],
    &["engine"],
    &["replay"],
    &["control"],
    &["inspect"],
    &["run"],
    &["config"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`kernel/perf.rs` →
/// `kernel`, `cli.rs` → `cli`); `None` for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layering_tests")).then(|| name.to_owned())
}

/// Production code only: everything before the file's test module, and
/// no test-only files.
fn production_part(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |end| &text[..end])
}

/// Every `crate::NAME` in `text` outside line comments.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

/// `(file, its module, the upper module it names)` for each violation.
fn upward_uses(src: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name.ends_with("_tests.rs") {
            continue;
        }
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let own = layer_of(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` has no layer in LAYERS",
                file.display()
            )
        });
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_paths(production_part(&text)) {
            let Some(layer) = layer_of(&used) else {
                continue;
            };
            if layer > own {
                violations.push((file.display().to_string(), module.clone(), used));
            }
        }
    }
    violations
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = upward_uses(&src);
    assert!(
        violations.is_empty(),
        "upward dependencies: {violations:#?}"
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mut modules = BTreeMap::new();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            modules.insert(name.to_owned(), layer_of(name));
        }
    }
    assert!(
        modules.len() > 10,
        "lib.rs lists too few modules: {modules:?}"
    );
    let missing: Vec<_> = modules
        .iter()
        .filter(|(_, layer)| layer.is_none())
        .collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}

#[test]
fn the_check_sees_an_upward_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/mod.rs"),
        "use crate::engine::aggregate::Aggregator;\n#[cfg(test)]\nmod tests {\n use crate::run::x;\n}\n",
    )
    .unwrap();
    let violations = upward_uses(dir.path());
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].2, "engine");
}
