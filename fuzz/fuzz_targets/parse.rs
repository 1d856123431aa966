//! The header parser and the detector on arbitrary frames: no panic, and
//! what the parser reports stays inside the frame.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensor::rules::{CompiledRules, MemoryTables};
use sensor::replay::state::MemoryState;
use sensor_common::detect::process;
use sensor_common::packet::{MAX_VLAN_TAGS, flag};
use sensor_common::parse::{ETH_P_IPV4, ETH_P_IPV6, parse_ethernet, parse_ip_at, peek_source};

/// Every rule the project ships: each event, flag and TTL row is in use.
fn rules() -> &'static CompiledRules {
    static RULES: OnceLock<CompiledRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
        let set = sensor::rules::load_path(std::path::Path::new(dir)).expect("shipped rules load");
        sensor::rules::compile(&set, 300)
    })
}

fuzz_target!(|frame: &[u8]| {
    let meta = parse_ethernet(frame);
    assert_eq!(meta.frame_len as usize, frame.len());
    assert!(meta.vlan_count as usize <= MAX_VLAN_TAGS);
    assert!(meta.l3_payload_len as usize <= frame.len());
    assert!(matches!(meta.ip_version, 0 | 4 | 6));
    if meta.ip_version == 0 {
        assert_eq!(meta.events, 0, "events without an IP header: {meta:?}");
        assert_eq!(meta.flags, 0);
    }
    if meta.has(flag::HAS_TCP_FLAGS) {
        assert!(meta.has(flag::HAS_PORTS));
        assert_eq!(meta.tcp_flags & !0x01ff, 0);
    }
    // Drop mode's early look at the source agrees with the full parse.
    if meta.ip_version != 0 {
        assert_eq!(peek_source(frame), Some(meta.src_key()));
    }
    for ethertype in [ETH_P_IPV4, ETH_P_IPV6] {
        let raw = parse_ip_at(frame, ethertype, 0);
        assert!(raw.l3_payload_len as usize <= frame.len());
    }

    // Twice through the detector: the second pass meets per-source state.
    let tables = MemoryTables {
        rules: rules(),
        drop_mode: frame.first().is_some_and(|b| b & 1 == 1),
    };
    let mut state = MemoryState::new();
    for now in [1_000_000_000u64, 1_000_000_001] {
        let mut alerts = 0;
        let decision = process(&meta, now, &tables, &mut state, &mut |_| alerts += 1);
        if !tables.drop_mode {
            assert!(!decision.drop);
        }
        assert!(alerts <= 64);
    }
});
