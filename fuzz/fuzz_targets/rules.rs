//! The rule loader: YAML text → validated rules → compiled tables.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(set) = sensor::rules::load_str("fuzz.yaml", text) else {
        return;
    };
    // Sets that load always fit the kernel tables (load.rs promises it).
    let compiled = sensor::rules::try_compile(&set, 300).expect("a loaded set compiles");
    assert_eq!(compiled.rules.len(), set.enabled().count());
    let _ = sensor::rules::summary(&set, &compiled);
});
