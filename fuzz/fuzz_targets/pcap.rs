//! The pcap / pcapng reader and the whole replay path behind it.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensor::rules::CompiledRules;

fn rules() -> &'static CompiledRules {
    static RULES: OnceLock<CompiledRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
        let set = sensor::rules::load_path(std::path::Path::new(dir)).expect("shipped rules load");
        sensor::rules::compile(&set, 300)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write temp file");
    file.flush().expect("flush temp file");
    let mut lines = 0u64;
    let result = sensor::replay::replay(file.path(), rules(), &mut |alert| {
        lines += 1;
        // Every alert renders as a JSON line.
        serde_json::to_string(alert)
            .map(drop)
            .map_err(std::io::Error::other)
    });
    if let Err(err) = result {
        let _ = err.to_string();
    }
});
