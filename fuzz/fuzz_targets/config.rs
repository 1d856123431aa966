//! The configuration file parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(err) = sensor::config::parse_config("fuzz.yaml", text)
    {
        // Rendering the error (file, line, column) must not panic either.
        let _ = err.to_string();
    }
});
