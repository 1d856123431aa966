//! Rule sets several integration tests share, and the one way they write a
//! rule file for the sensor to load.

use std::path::{Path, PathBuf};

/// One rule: SYN and FIN together (id 1).
pub const SYN_FIN_RULE: &str = "rules:
  - id: 1
    name: SYN and FIN
    severity: high
    match: { tcp_flags: { set: [SYN, FIN] } }
";

/// The three flag-scan rules of `rules/flags.yaml` (ids 100001 to 100003),
/// without scope.
pub const FLAG_SCAN_RULES: &str = r#"
rules:
  - id: 100001
    name: TCP SYN and FIN set
    severity: high
    match: { tcp_flags: { set: [SYN, FIN] } }
  - id: 100002
    name: TCP NULL scan
    severity: medium
    match: { tcp_flags: { clear: [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] } }
  - id: 100003
    name: TCP XMAS scan
    severity: medium
    match: { tcp_flags: { set: [FIN, PSH, URG] } }
"#;

/// Writes `yaml` to `dir/rules.yaml` and returns the path.
pub fn rules_file(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// IP protocol and IPv6 extension header numbers the crafted frames use.
pub mod ipproto {
    // Every test binary builds `support`; not every one uses these.
    #[allow(unused_imports)]
    pub use sensor_common::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
    pub const PROTO_IGMP: u8 = 2;
    pub const V6_HOP_BY_HOP: u8 = 0;
    pub const V6_ROUTING: u8 = 43;
    pub const V6_FRAGMENT: u8 = 44;
    pub const V6_DEST_OPTS: u8 = 60;
}
