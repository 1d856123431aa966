//! Alert lines against Suricata's own EVE schema
//! (`shared/eve-schema/suricata-schema.json`, read at test time).
//!
//! - *Relaxed* (the contract): the schema with `additionalProperties`
//!   allowed everywhere: our own fields may be there, but every field
//!   Suricata defines must have Suricata's type and format. Every alert line
//!   a test reads goes through [`check_alert_line`].
//! - *Strict*: the schema as Suricata ships it; counted, not required
//!   ([`strict_passes`]).

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonschema::Validator;
use serde_json::Value;

struct Schemas {
    relaxed: Validator,
    strict: Validator,
}

static SCHEMAS: OnceLock<Option<Schemas>> = OnceLock::new();
static CHECKED: AtomicU64 = AtomicU64::new(0);
static STRICT_PASSES: AtomicU64 = AtomicU64::new(0);

/// Where the shared schema is: beside the repository, as CI lays it out.
pub fn schema_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eve-schema/suricata-schema.json")
}

fn schemas() -> Option<&'static Schemas> {
    SCHEMAS
        .get_or_init(|| {
            let path = schema_path();
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(err) => {
                    let message = format!("EVE schema checks: {}: {err}", path.display());
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("{message}; CI=true, so it must be there");
                    }
                    sensor::testing::skip(&message);
                    return None;
                }
            };
            let strict: Value = serde_json::from_str(&text).expect("the EVE schema is JSON");
            let mut relaxed = strict.clone();
            allow_additional_properties(&mut relaxed);
            let build = |schema: &Value| {
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(schema)
                    .expect("the EVE schema compiles")
            };
            Some(Schemas {
                relaxed: build(&relaxed),
                strict: build(&strict),
            })
        })
        .as_ref()
}

/// Every `additionalProperties: false` in `schema` becomes `true`.
fn allow_additional_properties(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "additionalProperties" && *value == Value::Bool(false) {
                    *value = Value::Bool(true);
                } else {
                    allow_additional_properties(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_additional_properties),
        _ => {}
    }
}

/// The relaxed schema's complaints about `line` (empty: valid); `None`
/// when the schema is not available (a visible SKIP was printed).
pub fn relaxed_errors(line: &Value) -> Option<Vec<String>> {
    let schemas = schemas()?;
    CHECKED.fetch_add(1, Ordering::Relaxed);
    if schemas.strict.is_valid(line) {
        STRICT_PASSES.fetch_add(1, Ordering::Relaxed);
    }
    Some(
        schemas
            .relaxed
            .iter_errors(line)
            .map(|err| format!("{} at {}", err, err.instance_path()))
            .collect(),
    )
}

/// Panics unless `line` (an alert line) validates against the relaxed
/// schema. Lines of other event types (`sensor inspect`'s) pass through.
pub fn check_alert_line(line: &Value) {
    if line.get("event_type").and_then(Value::as_str) != Some("alert") {
        return;
    }
    if let Some(errors) = relaxed_errors(line) {
        assert!(
            errors.is_empty(),
            "alert line is not valid EVE (relaxed Suricata schema):\n  {}\n{line}",
            errors.join("\n  ")
        );
    }
}

/// [`check_alert_line`] on a line of text.
pub fn check_alert_text(line: &str) {
    let value: Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    check_alert_line(&value);
}

/// (lines checked, lines that also pass the strict schema) in this process.
pub fn strict_passes() -> (u64, u64) {
    (
        CHECKED.load(Ordering::Relaxed),
        STRICT_PASSES.load(Ordering::Relaxed),
    )
}
