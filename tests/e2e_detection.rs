//! End to end with the DEFAULT rule set (`rules/`): real frames sent with
//! tcpreplay through a veth pair to `sensor run` attached in native XDP
//! mode, then the same pcap through `sensor replay`.
//!
//! - a SYN flood of 100,000 spoofed SYNs: a handful of `syn_flood` lines,
//!   and every rate-limited match accounted for in the line counts;
//! - a TTL-deviation sequence, tiny / offset-one / oversize / atomic
//!   fragments, IPv6 with extension headers carrying a NULL scan, VLAN and
//!   QinQ-tagged attacks: each raises exactly its rules, field by field;
//! - a benign mix (handshakes and teardowns, DNS, ICMP echo, ordinary
//!   fragmentation, IPv6 TCP, ARP, and the low-TTL / unspecified-source
//!   protocols the rule files promise to leave alone): no line at all.
//!
//! Live and replay are compared on what must be equal: line contents apart
//! from time and interface, and summed counts per (signature, source) where
//! aggregation may cut lines differently (the live sweep runs on wall-clock
//! time, replay's on capture time).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sensor::alert::TcpInfo;
use sensor::alert::community_id::{Transport, community_id};
use sensor::rules::CompiledRules;
use sensor::testing::frames::{self, ETH_IPV4, ETH_IPV6, Ipv4, flags, more_flags};
use sensor_common::alert::DEFAULT_ALERT_PACKET_BYTES;
use sensor_common::packet::tcp;
use serde_json::{Value, json};
use support::live::{Live, canonical, essence, replay_cli, run_live};
use support::pcap::write_pcap_spaced;

use support::fixtures::ipproto::*;

fn default_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn ip4(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

fn ip6(a: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

/// Lines grouped by what they say, for order-free comparison.
fn multiset(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lines {
        *out.entry(canonical(&essence(line))).or_default() += 1;
    }
    out
}

fn sig(line: &Value) -> u64 {
    line["alert"]["signature_id"]
        .as_u64()
        .expect("signature_id")
}

fn category(line: &Value) -> &str {
    line["alert"]["category"].as_str().expect("category")
}

/// Sum of `count` per (signature id, src_ip) over the lines that pass `keep`.
fn counts_by_sig_src(
    lines: &[Value],
    keep: impl Fn(&Value) -> bool,
) -> BTreeMap<(u64, String), u64> {
    let mut out = BTreeMap::new();
    for line in lines.iter().filter(|l| keep(l)) {
        let key = (sig(line), line["src_ip"].as_str().unwrap().to_owned());
        *out.entry(key).or_default() += line["sensor"]["count"].as_u64().expect("count");
    }
    out
}

fn bpf(test: &str) -> bool {
    sensor::testing::bpf_available(test)
}

// ---- 1. SYN flood -------------------------------------------------------------------

/// Default rule 100301: `syn_flood: { track: by_dst, threshold: 200, window_ms: 1000 }`.
const BY_DST: u64 = 100301;
/// Default rule 100302: `syn_flood: { track: by_src, threshold: 100, window_ms: 1000 }`.
const BY_SRC: u64 = 100302;
const FLOOD_SYNS: usize = 100_000;
const NOISY: usize = 2_000;
/// Injection rate. 512 spoofed sources share it, so each source sends
/// 20,000 / 512 = 39 SYNs a second: well under the by_src threshold of
/// 100 (a factor 2.5, so tcpreplay catching up after a short stall cannot
/// push a source over it), while the victim gets 100 times its by_dst
/// threshold.
const FLOOD_PPS: u32 = 20_000;

#[test]
fn syn_flood_of_100k_spoofed_syns_gives_a_handful_of_lines_and_counts_add_up() {
    if !bpf("syn_flood_of_100k_spoofed_syns_gives_a_handful_of_lines_and_counts_add_up") {
        return;
    }
    let victim = [192, 0, 2, 10];
    let null_scanner = [192, 0, 2, 200];
    let syn_fin_flooder = [192, 0, 2, 201];
    let null = frames::ipv4_tcp(null_scanner, victim, 41000, 443, 0);
    let syn_fin = frames::ipv4_tcp(syn_fin_flooder, victim, 42000, 80, flags::SYN | flags::FIN);
    let mut traffic = Vec::with_capacity(FLOOD_SYNS + 2 * NOISY);
    let every = FLOOD_SYNS / NOISY;
    for i in 0..FLOOD_SYNS {
        let n = i % 512;
        let src = if n < 256 {
            [198, 51, 100, n as u8]
        } else {
            [203, 0, 113, (n - 256) as u8]
        };
        let sport = 1024 + (i / 512) as u16;
        traffic.push(frames::ipv4_tcp(src, victim, sport, 80, flags::SYN));
        // The two noisy sources, spread evenly through the flood.
        if i % every == every / 2 {
            traffic.push(null.clone());
            traffic.push(syn_fin.clone());
        }
    }
    assert_eq!(traffic.len(), FLOOD_SYNS + 2 * NOISY);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("flood.pcap");
    write_pcap_spaced(&pcap, &traffic, Duration::from_secs(1) / FLOOD_PPS);
    let rules = default_rules();

    let live = run_live(
        "flood",
        &rules,
        &pcap,
        FLOOD_PPS,
        Duration::from_secs(5),
        Duration::from_millis(300),
        |lines| lines.iter().any(|l| sig(l) == BY_DST),
    );
    let replayed = replay_cli(&pcap, &rules);

    // Nominal duration 104,000 / 20,000 = 5.2 s. tcpreplay never sends
    // faster than asked on average, so the flood lasts at least that long;
    // `inject_time` (tcpreplay's whole run) bounds it from above.
    let nominal = traffic.len() as f64 / f64::from(FLOOD_PPS);
    let measured = live.inject_time.as_secs_f64();
    assert!(
        measured >= nominal * 0.95 && measured < 40.0,
        "tcpreplay took {measured:.2} s for a nominal {nominal:.2} s"
    );
    // Tumbling 1 s windows, each opened by the first SYN after the last one
    // ended. Every full second of the flood holds far more than the
    // threshold, so each window alerts once: at least floor(nominal) = 5
    // windows (the 6th may hold only a short tail), at most one per started
    // second of the measured injection.
    let min_windows = nominal.floor() as usize;
    let max_windows = measured.ceil() as usize + 1;
    eprintln!(
        "flood: {} live lines in {measured:.2} s, {} replay lines",
        live.lines.len(),
        replayed.len()
    );

    for (what, lines) in [("live", &live.lines), ("replay", &replayed)] {
        check_flood_lines(
            what,
            lines,
            victim,
            syn_fin_flooder,
            null_scanner,
            min_windows,
            max_windows,
        );
    }
    if let Some(packets) = live.packets_seen() {
        assert!(
            packets >= traffic.len() as u64,
            "the sensor saw {packets} of {} packets",
            traffic.len()
        );
    }
    assert!(!live.log.contains("records lost"), "{}", live.log);

    // Live and replay: the same per-(signature, source) totals for the
    // rate-limited kinds, the same by_src lines (one source, identical
    // frames), by_dst lines describing the same victim.
    let rate_limited = |l: &Value| category(l) != "syn_flood";
    assert_eq!(
        counts_by_sig_src(&live.lines, rate_limited),
        counts_by_sig_src(&replayed, rate_limited)
    );
    let by_src_lines = |lines: &[Value]| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| sig(l) == BY_SRC)
            .map(|l| canonical(&essence(l)))
            .collect()
    };
    assert_eq!(by_src_lines(&live.lines), by_src_lines(&replayed));
    let by_dst_shape = |lines: &[Value]| -> BTreeSet<(String, u64, String, u64)> {
        lines
            .iter()
            .filter(|l| sig(l) == BY_DST)
            .map(|l| {
                (
                    l["dest_ip"].as_str().unwrap().to_owned(),
                    l["dest_port"].as_u64().unwrap(),
                    l["proto"].as_str().unwrap().to_owned(),
                    l["sensor"]["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(by_dst_shape(&live.lines), by_dst_shape(&replayed));
}

fn check_flood_lines(
    what: &str,
    lines: &[Value],
    victim: [u8; 4],
    syn_fin_flooder: [u8; 4],
    null_scanner: [u8; 4],
    min_windows: usize,
    max_windows: usize,
) {
    let syn_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| category(l) == "syn_flood")
        .collect();
    let by_dst: Vec<&Value> = syn_lines
        .iter()
        .copied()
        .filter(|l| sig(l) == BY_DST)
        .collect();
    let by_src: Vec<&Value> = syn_lines
        .iter()
        .copied()
        .filter(|l| sig(l) == BY_SRC)
        .collect();
    eprintln!(
        "{what}: {} by_dst and {} by_src lines ({min_windows}..={max_windows} windows), {} rate-limited lines",
        by_dst.len(),
        by_src.len(),
        lines.len() - syn_lines.len()
    );
    assert!(
        syn_lines.len() <= 2 * max_windows,
        "{what}: {} syn_flood lines, a handful expected",
        syn_lines.len()
    );
    assert!(
        (min_windows..=max_windows).contains(&by_dst.len()),
        "{what}: {} by_dst lines, want {min_windows}..={max_windows}: {by_dst:#?}",
        by_dst.len()
    );
    for line in &by_dst {
        assert_eq!(line["dest_ip"], ip4(victim), "{what}: {line}");
        assert_eq!(line["dest_port"], 80, "{what}: {line}");
        assert_eq!(line["proto"], "TCP");
        assert!(
            line["sensor"]["count"].as_u64().unwrap() >= 200,
            "{what}: {line}"
        );
        assert_eq!(line["alert"]["action"], "allowed");
        let flags = line["sensor"]["tcp_flags"].as_str().unwrap();
        assert!(
            flags == "S" || flags == "FS",
            "{what}: the crossing packet is a SYN: {line}"
        );
    }
    // by_src: only the SYN+FIN flooder sends 100+ SYNs a second (385). Its
    // last window may be a short tail under the threshold.
    assert!(
        (min_windows.saturating_sub(1)..=max_windows).contains(&by_src.len()),
        "{what}: {} by_src lines, want about one per window: {by_src:#?}",
        by_src.len()
    );
    for line in &by_src {
        assert_eq!(
            line["src_ip"],
            ip4(syn_fin_flooder),
            "{what}: spoofed sources stay under 100/s: {line}"
        );
        assert!(
            line["sensor"]["count"].as_u64().unwrap() >= 100,
            "{what}: {line}"
        );
        assert_eq!(line["sensor"]["tcp_flags"], "FS");
        assert_eq!(line["tcp"]["syn"], true, "{line}");
        assert_eq!(line["tcp"]["fin"], true, "{line}");
    }
    // Rate-limited kinds: nothing matched goes uncounted.
    let totals = counts_by_sig_src(lines, |l| category(l) != "syn_flood");
    let want: BTreeMap<(u64, String), u64> = [
        ((100001, ip4(syn_fin_flooder)), NOISY as u64),
        ((100002, ip4(null_scanner)), NOISY as u64),
        ((100005, ip4(syn_fin_flooder)), NOISY as u64),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        totals, want,
        "{what}: summed counts per (signature, source)"
    );
    // Per (rule, source, CPU) and window: at most RATE_BURST lines, plus one
    // aggregated line from the sweep (or the window's first record carrying
    // the rest). 3 keys; the kernel's limiter is per CPU.
    let rate_lines = lines.len() - syn_lines.len();
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let burst = sensor_common::tables::RATE_BURST as usize;
    let bound = 3 * (burst + 1) * cpus * (max_windows + 1);
    assert!(
        rate_lines <= bound,
        "{what}: {rate_lines} rate-limited lines (bound {bound}): aggregation did not happen"
    );
}

// ---- 2. attacks, field by field --------------------------------------------------------

/// One attack frame and the lines it must raise.
struct Attack {
    what: &'static str,
    frame: Vec<u8>,
    sigs: Vec<u64>,
    src: String,
    dst: String,
    ports: Option<(u16, u16)>,
    proto: &'static str,
    ip_version: u8,
    ttl: u8,
    /// ip_id, frag_offset in bytes, more_fragments (absent for IPv6 without a fragment header).
    frag: Option<(u32, u32, bool)>,
    tcp_flags: Option<&'static str>,
    vlan: Option<Vec<u16>>,
}

impl Attack {
    /// The flow's Community ID (the spec's test vectors pin the function):
    /// none for non-first fragments or a transport header without ports.
    fn community_id(&self) -> Option<String> {
        let proto: u8 = match self.proto {
            "TCP" => 6,
            "UDP" => 17,
            "ICMP" => 1,
            "IPv6-ICMP" => 58,
            number => number.parse().expect("a protocol number"),
        };
        if self.frag.is_some_and(|(_, offset, _)| offset > 0) {
            return None;
        }
        let transport = match (proto, self.ports) {
            (6 | 17, Some((src, dst))) => Transport::Ports { src, dst },
            (6 | 17 | 1 | 58, _) => return None,
            _ => Transport::None,
        };
        let (src, dst) = (self.src.parse().unwrap(), self.dst.parse().unwrap());
        Some(community_id(src, dst, proto, transport, 0))
    }

    fn expected(&self, rules: &CompiledRules) -> Vec<Value> {
        self.sigs
            .iter()
            .map(|&id| {
                let meta = rules
                    .by_id(id as u32)
                    .unwrap_or_else(|| panic!("default rule {id}"));
                let mut facts = json!({
                    "count": 1,
                    "length": self.frame.len(),
                    "ttl": self.ttl,
                });
                if let Some((id, offset, more)) = self.frag {
                    facts["ip_id"] = json!(id);
                    facts["frag_offset"] = json!(offset);
                    facts["more_fragments"] = json!(more);
                }
                let shown = self.frame.len().min(DEFAULT_ALERT_PACKET_BYTES.into());
                let mut line = json!({
                    "event_type": "alert",
                    "src_ip": self.src,
                    "dest_ip": self.dst,
                    "proto": self.proto,
                    "ip_v": self.ip_version,
                    "alert": {
                        "action": "allowed",
                        "gid": 1,
                        "signature_id": id,
                        "rev": 1,
                        "signature": meta.name,
                        "category": meta.category,
                        "severity": meta.severity.number(),
                    },
                    "packet": BASE64.encode(&self.frame[..shown]),
                    "packet_info": { "linktype": 1 },
                });
                if let Some(letters) = self.tcp_flags {
                    facts["tcp_flags"] = json!(letters);
                    let bits = tcp::LETTERS
                        .iter()
                        .filter(|(_, letter)| letters.contains(*letter))
                        .fold(0, |bits, (bit, _)| bits | bit);
                    line["tcp"] = serde_json::to_value(TcpInfo::from_flags(bits)).unwrap();
                }
                if let Some(v) = &self.vlan {
                    line["vlan"] = json!(v);
                }
                if let Some(id) = self.community_id() {
                    line["community_id"] = json!(id);
                }
                line["sensor"] = facts;
                if let Some((s, d)) = self.ports {
                    line["src_port"] = json!(s);
                    line["dest_port"] = json!(d);
                }
                line
            })
            .collect()
    }
}

fn v4_attack(
    what: &'static str,
    frame: Vec<u8>,
    sigs: &[u64],
    src: [u8; 4],
    dst: [u8; 4],
) -> Attack {
    Attack {
        what,
        frame,
        sigs: sigs.to_vec(),
        src: ip4(src),
        dst: ip4(dst),
        ports: None,
        proto: "TCP",
        ip_version: 4,
        ttl: 64,
        frag: Some((0x1234, 0, false)),
        tcp_flags: None,
        vlan: None,
    }
}

fn v6_attack(
    what: &'static str,
    frame: Vec<u8>,
    sigs: &[u64],
    src: [u8; 16],
    dst: [u8; 16],
) -> Attack {
    Attack {
        ip_version: 6,
        frag: None,
        src: ip6(src),
        dst: ip6(dst),
        ..v4_attack(what, frame, sigs, [0; 4], [0; 4])
    }
}

fn attacks() -> Vec<Attack> {
    let server = [192, 0, 2, 10];
    let server6 = frames::doc_v6(0x10);
    let ack = |src: [u8; 4], ttl: u8| {
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(src, server, PROTO_TCP)
                .ttl(ttl)
                .build(&frames::tcp(40020, 80, flags::ACK, 7, &[])),
        )
    };
    let tagged = |tags: &[(u16, u16)], ip: Vec<u8>| frames::ethernet(tags, ETH_IPV4, &ip);
    let q = frames::TPID_8021Q;
    let ad = frames::TPID_8021AD;
    let mut out = Vec::new();

    // TTL deviation (100103, deviation 8, TCP) and low TTLs (100101 < 1, 100102 TCP < 2).
    let host = [198, 51, 100, 20];
    for (what, ttl, sigs) in [
        ("TTL 64: teaches hop count 0", 64, &[][..]),
        (
            "TTL 50: hop count 14 deviates by more than 8",
            50,
            &[100103][..],
        ),
        ("TTL 60: hop count 4, within 8", 60, &[][..]),
        (
            "TTL 1: hop count 31, and TCP below 2",
            1,
            &[100102, 100103][..],
        ),
        (
            "TTL 0: below 1 and 2, hop count 32",
            0,
            &[100101, 100102, 100103][..],
        ),
    ] {
        out.push(Attack {
            ports: Some((40020, 80)),
            ttl,
            tcp_flags: Some("A"),
            ..v4_attack(what, ack(host, ttl), sigs, host, server)
        });
    }

    // Fragments.
    let src = [198, 51, 100, 21];
    out.push(Attack {
        ports: Some((40021, 80)),
        frag: Some((0x1234, 0, true)),
        ..v4_attack(
            "tiny first fragment: 8 bytes of TCP (ports, no flags)",
            frames::ethernet(
                &[],
                ETH_IPV4,
                &Ipv4::new(src, server, PROTO_TCP)
                    .frag(0x2000)
                    .build(&frames::tcp(40021, 80, flags::SYN, 1, &[])[..8]),
            ),
            &[100201],
            src,
            server,
        )
    });
    let src = [198, 51, 100, 22];
    out.push(Attack {
        frag: Some((0x1234, 8, false)),
        ..v4_attack(
            "TCP fragment at offset 1",
            frames::ethernet(
                &[],
                ETH_IPV4,
                &Ipv4::new(src, server, PROTO_TCP).frag(1).build(&[0xaa; 16]),
            ),
            &[100202],
            src,
            server,
        )
    });
    let src = [198, 51, 100, 23];
    out.push(Attack {
        proto: "ICMP",
        frag: Some((0x1234, 8191 * 8, false)),
        ..v4_attack(
            "ICMP fragment at offset 8191 with 8 bytes (ping of death)",
            frames::ethernet(
                &[],
                ETH_IPV4,
                &Ipv4::new(src, server, PROTO_ICMP)
                    .frag(8191)
                    .build(&[0xbb; 8]),
            ),
            &[100203],
            src,
            server,
        )
    });
    let src6 = frames::doc_v6(0x23);
    out.push(Attack {
        proto: "IPv6-ICMP",
        frag: Some((0x6001, 8191 * 8, false)),
        ..v6_attack(
            "IPv6 fragment at offset 8191 with 8 bytes",
            frames::ethernet(
                &[],
                ETH_IPV6,
                &frames::ipv6(
                    src6,
                    server6,
                    64,
                    V6_FRAGMENT,
                    &frames::ipv6_fragment(PROTO_ICMPV6, 8191, false, 0x6001, &[0xcc; 8]),
                ),
            ),
            &[100203],
            src6,
            server6,
        )
    });
    let src6 = frames::doc_v6(0x24);
    out.push(Attack {
        proto: "UDP",
        ports: Some((5353, 53)),
        frag: Some((0x6002, 0, true)),
        ..v6_attack(
            "IPv6 tiny first fragment (16 bytes after the fragment header)",
            frames::ethernet(
                &[],
                ETH_IPV6,
                &frames::ipv6(
                    src6,
                    server6,
                    64,
                    V6_FRAGMENT,
                    &frames::ipv6_fragment(
                        PROTO_UDP,
                        0,
                        true,
                        0x6002,
                        &frames::udp(5353, 53, &[0; 8]),
                    ),
                ),
            ),
            &[100201],
            src6,
            server6,
        )
    });
    let src6 = frames::doc_v6(0x25);
    out.push(Attack {
        ports: Some((40025, 443)),
        frag: Some((0x6003, 0, false)),
        tcp_flags: Some("A"),
        ..v6_attack(
            "IPv6 atomic fragment carrying a TCP ACK",
            frames::ethernet(
                &[],
                ETH_IPV6,
                &frames::ipv6(
                    src6,
                    server6,
                    64,
                    V6_FRAGMENT,
                    &frames::ipv6_fragment(
                        PROTO_TCP,
                        0,
                        false,
                        0x6003,
                        &frames::tcp(40025, 443, flags::ACK, 1, &[]),
                    ),
                ),
            ),
            &[100204],
            src6,
            server6,
        )
    });

    // IPv6 extension headers (hop-by-hop, routing, dest options) before a NULL scan.
    let src6 = frames::doc_v6(0x30);
    let chain = frames::ipv6_ext(
        V6_ROUTING,
        &frames::ipv6_ext_sized(
            V6_DEST_OPTS,
            1,
            &frames::ipv6_ext(PROTO_TCP, &frames::tcp(40030, 443, 0, 1, &[])),
        ),
    );
    out.push(Attack {
        ports: Some((40030, 443)),
        tcp_flags: Some(""),
        ..v6_attack(
            "NULL scan behind hop-by-hop, routing and dest options headers",
            frames::ethernet(
                &[],
                ETH_IPV6,
                &frames::ipv6(src6, server6, 64, V6_HOP_BY_HOP, &chain),
            ),
            &[100002],
            src6,
            server6,
        )
    });

    // VLAN and QinQ.
    let src = [203, 0, 113, 40];
    out.push(Attack {
        ports: Some((40040, 80)),
        tcp_flags: Some("FS"),
        vlan: Some(vec![100]),
        ..v4_attack(
            "SYN+FIN on VLAN 100",
            tagged(
                &[(q, 100)],
                Ipv4::new(src, server, PROTO_TCP).build(&frames::tcp(
                    40040,
                    80,
                    flags::SYN | flags::FIN,
                    1,
                    &[],
                )),
            ),
            &[100001, 100005],
            src,
            server,
        )
    });
    let src = [203, 0, 113, 41];
    out.push(Attack {
        ports: Some((40041, 22)),
        tcp_flags: Some("FPU"),
        vlan: Some(vec![200, 100]),
        ..v4_attack(
            "XMAS scan in QinQ 200/100",
            tagged(
                &[(ad, 200), (q, 100)],
                Ipv4::new(src, server, PROTO_TCP).build(&frames::tcp(
                    40041,
                    22,
                    flags::FIN | flags::PSH | flags::URG,
                    1,
                    &[],
                )),
            ),
            &[100003, 100005],
            src,
            server,
        )
    });
    let src = [203, 0, 113, 42];
    out.push(Attack {
        proto: "UDP",
        ports: Some((7, 7)),
        vlan: Some(vec![300, 30]),
        ..v4_attack(
            "LAND (UDP) in QinQ 300/30",
            tagged(
                &[(ad, 300), (q, 30)],
                Ipv4::new(src, src, PROTO_UDP).build(&frames::udp(7, 7, b"echo")),
            ),
            &[100401],
            src,
            src,
        )
    });
    let src = [203, 0, 113, 43];
    out.push(Attack {
        ports: Some((40043, 80)),
        tcp_flags: Some("SR"),
        vlan: Some(vec![100]),
        ..v4_attack(
            "SYN+RST on VLAN 100",
            tagged(
                &[(q, 100)],
                Ipv4::new(src, server, PROTO_TCP).build(&frames::tcp(
                    40043,
                    80,
                    flags::SYN | flags::RST,
                    1,
                    &[],
                )),
            ),
            &[100004],
            src,
            server,
        )
    });
    let src = [198, 51, 100, 26];
    out.push(Attack {
        proto: "47",
        ttl: 0,
        ..v4_attack(
            "GRE with TTL 0: proto given as its number",
            frames::ethernet(
                &[],
                ETH_IPV4,
                &Ipv4::new(src, server, 47)
                    .ttl(0)
                    .build(&[0, 0, 0x08, 0, 0x45, 0, 0, 20]),
            ),
            &[100101],
            src,
            server,
        )
    });
    let src = [127, 0, 0, 1];
    out.push(Attack {
        ports: Some((40044, 80)),
        tcp_flags: Some("A"),
        vlan: Some(vec![100]),
        ..v4_attack(
            "TCP from 127.0.0.1 on VLAN 100",
            tagged(
                &[(q, 100)],
                Ipv4::new(src, server, PROTO_TCP).build(&frames::tcp(
                    40044,
                    80,
                    flags::ACK,
                    1,
                    &[],
                )),
            ),
            &[100406],
            src,
            server,
        )
    });
    out
}

#[test]
fn attacks_raise_exactly_their_default_rules_live_and_in_replay() {
    if !bpf("attacks_raise_exactly_their_default_rules_live_and_in_replay") {
        return;
    }
    let rules_dir = default_rules();
    let rules = support::load_rules(&rules_dir);
    let attacks = attacks();
    let expected: Vec<Value> = attacks.iter().flat_map(|a| a.expected(&rules)).collect();
    let frames: Vec<Vec<u8>> = attacks.iter().map(|a| a.frame.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("attacks.pcap");
    // 5 ms apart, as sent (200 pps): no (rule, source) matches more than
    // 5 times a second, so every line stands for one packet.
    write_pcap_spaced(&pcap, &frames, Duration::from_millis(5));

    let live = run_live(
        "atk",
        &rules_dir,
        &pcap,
        200,
        Duration::from_secs(10),
        Duration::from_millis(300),
        |lines| lines.len() >= expected.len(),
    );
    let replayed = replay_cli(&pcap, &rules_dir);

    for line in &live.lines {
        assert_eq!(
            line["in_iface"].as_str().map(|s| s.starts_with("satk")),
            Some(true),
            "{line}"
        );
        let ts = line["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with("+0000") && ts.len() == "2026-11-26T13:07:51.123456+0000".len(),
            "{ts}"
        );
    }
    for line in &replayed {
        assert!(line.get("in_iface").is_none(), "{line}");
    }
    let want = multiset(&expected);
    let explain = |lines: &[Value]| {
        let got = multiset(lines);
        let missing: Vec<_> = want
            .keys()
            .filter(|k| got.get(*k) != want.get(*k))
            .collect();
        let extra: Vec<_> = got.keys().filter(|k| got.get(*k) != want.get(*k)).collect();
        format!("missing or miscounted:\n{missing:#?}\nunexpected:\n{extra:#?}")
    };
    assert!(
        multiset(&live.lines) == want,
        "live lines differ from the expected ones\n{}",
        explain(&live.lines)
    );
    assert!(
        multiset(&replayed) == want,
        "replay lines differ from the expected ones\n{}",
        explain(&replayed)
    );
    // Per attack, the right rules (a readable view of the same check).
    for attack in &attacks {
        let got: BTreeSet<u64> = live
            .lines
            .iter()
            .filter(|l| {
                l["sensor"]["length"] == attack.frame.len()
                    && l["src_ip"] == attack.src.as_str()
                    && l["sensor"]["ttl"] == attack.ttl
            })
            .map(sig)
            .collect();
        let want: BTreeSet<u64> = attack.sigs.iter().copied().collect();
        assert_eq!(got, want, "{}", attack.what);
    }
}

// ---- 3. benign traffic -----------------------------------------------------------------

/// A TCP connection: handshake with options, data both ways, teardown.
/// `close` picks the teardown: FIN exchange, or RST+ACK, or a bare RST.
fn connection(
    client: [u8; 4],
    server: [u8; 4],
    sport: u16,
    dport: u16,
    close: &str,
    ecn: bool,
) -> Vec<Vec<u8>> {
    let c = |f: u16, payload: &[u8]| {
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(client, server, PROTO_TCP).build(&frames::tcp(sport, dport, f, 1, payload)),
        )
    };
    let s = |f: u16, payload: &[u8]| {
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(server, client, PROTO_TCP)
                .ttl(128)
                .build(&frames::tcp(dport, sport, f, 9, payload)),
        )
    };
    let syn_flags = if ecn {
        flags::SYN | more_flags::ECE | more_flags::CWR
    } else {
        flags::SYN
    };
    let syn_ack_flags = if ecn {
        flags::SYN | flags::ACK | more_flags::ECE
    } else {
        flags::SYN | flags::ACK
    };
    let mut out = vec![
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(client, server, PROTO_TCP).build(&frames::tcp_with_options(
                sport,
                dport,
                syn_flags,
                1,
                &[],
            )),
        ),
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(server, client, PROTO_TCP)
                .ttl(128)
                .build(&frames::tcp_with_options(
                    dport,
                    sport,
                    syn_ack_flags,
                    9,
                    &[],
                )),
        ),
        // Pure ACKs are 54 bytes: on a real link they arrive padded to 60.
        frames::pad_to(c(flags::ACK, &[]), 60),
        c(
            flags::PSH | flags::ACK,
            b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
        ),
        frames::pad_to(s(flags::ACK, &[]), 60),
        s(flags::PSH | flags::ACK, &[b'x'; 600]),
        frames::pad_to(c(flags::ACK, &[]), 60),
    ];
    match close {
        "fin" => {
            out.push(frames::pad_to(c(flags::FIN | flags::ACK, &[]), 60));
            out.push(frames::pad_to(s(flags::FIN | flags::ACK, &[]), 60));
            out.push(frames::pad_to(c(flags::ACK, &[]), 60));
        }
        "rst-ack" => out.push(frames::pad_to(c(flags::RST | flags::ACK, &[]), 60)),
        _ => out.push(frames::pad_to(s(flags::RST, &[]), 60)),
    }
    out
}

fn benign() -> Vec<Vec<u8>> {
    let server = [192, 0, 2, 10];
    let dns = [192, 0, 2, 53];
    let clients = [[203, 0, 113, 5], [203, 0, 113, 6], [198, 51, 100, 7]];
    let mut out = Vec::new();
    out.push(frames::arp(1, clients[0], server));
    out.push(frames::arp(2, server, clients[0]));
    out.extend(connection(clients[0], server, 50000, 80, "fin", false));
    out.extend(connection(clients[1], server, 50001, 443, "rst-ack", true));
    out.extend(connection(clients[2], server, 50002, 22, "rst", false));
    out.extend(connection(clients[0], server, 50003, 443, "fin", true));
    // DNS query and answer.
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new(clients[1], dns, PROTO_UDP).build(&frames::udp(53001, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new(dns, clients[1], PROTO_UDP).build(&frames::udp(53, 53001, &[0x42; 60])),
    ));
    // ICMP echo request and reply.
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new(clients[2], server, PROTO_ICMP).build(&frames::icmp_echo(8, 7, 1)),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new(server, clients[2], PROTO_ICMP)
            .ttl(128)
            .build(&frames::icmp_echo(0, 7, 1)),
    ));
    // A 3000-byte UDP datagram (a large DNSSEC answer) fragmented at a
    // 1500-byte MTU: 1480 + 1480 + 48 bytes.
    let big = frames::udp(53, 53002, &[0x5a; 2992]);
    for fragment in frames::ipv4_fragments(&Ipv4::new(dns, clients[0], PROTO_UDP), &big, 1480) {
        out.push(frames::ethernet(&[], ETH_IPV4, &fragment));
    }
    // The same over IPv6 at the minimum MTU (1280): 1232-byte pieces.
    let (c6, s6) = (frames::doc_v6(0x5), frames::doc_v6(0x10));
    for fragment in frames::ipv6_fragments(s6, c6, 64, PROTO_UDP, &big, 1232, 0x77) {
        out.push(frames::ethernet(&[], ETH_IPV6, &fragment));
    }
    // IPv6 TCP: handshake, data, teardown.
    let t6 = |src, dst, sport, dport, f: u16, payload: &[u8]| {
        frames::ethernet(
            &[],
            ETH_IPV6,
            &frames::ipv6(
                src,
                dst,
                64,
                PROTO_TCP,
                &frames::tcp(sport, dport, f, 1, payload),
            ),
        )
    };
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(
            c6,
            s6,
            64,
            PROTO_TCP,
            &frames::tcp_with_options(50100, 443, flags::SYN, 1, &[]),
        ),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(
            s6,
            c6,
            64,
            PROTO_TCP,
            &frames::tcp_with_options(443, 50100, flags::SYN | flags::ACK, 1, &[]),
        ),
    ));
    out.push(t6(c6, s6, 50100, 443, flags::ACK, &[]));
    out.push(t6(c6, s6, 50100, 443, flags::PSH | flags::ACK, &[1; 200]));
    out.push(t6(s6, c6, 443, 50100, flags::PSH | flags::ACK, &[2; 900]));
    out.push(t6(c6, s6, 50100, 443, flags::FIN | flags::ACK, &[]));
    out.push(t6(s6, c6, 443, 50100, flags::FIN | flags::ACK, &[]));
    out.push(t6(c6, s6, 50100, 443, flags::ACK, &[]));
    // ICMPv6 echo.
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(c6, s6, 64, PROTO_ICMPV6, &frames::icmp_echo(128, 3, 1)),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(s6, c6, 64, PROTO_ICMPV6, &frames::icmp_echo(129, 3, 1)),
    ));
    // What rules/ttl.yaml and rules/headers.yaml promise not to flag: DHCP
    // from 0.0.0.0, an IGMPv3 report with TTL 1 (router alert option),
    // neighbour solicitation for DAD from :: with hop limit 255, an MLDv2
    // report with hop limit 1 behind a hop-by-hop header.
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new([0, 0, 0, 0], [255, 255, 255, 255], PROTO_UDP).build(&frames::udp(
            68,
            67,
            &[0x01; 240],
        )),
    ));
    let mut igmp = Ipv4::new(clients[0], [224, 0, 0, 22], PROTO_IGMP).ttl(1);
    igmp.options = vec![0x94, 0x04, 0, 0];
    out.push(frames::ethernet(
        &[],
        ETH_IPV4,
        &igmp.build(&[0x22, 0, 0, 0, 0, 0, 0, 0]),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(
            [0; 16],
            frames::v6([0xff02, 0, 0, 0, 0, 1, 0xff00, 0x5]),
            255,
            PROTO_ICMPV6,
            &[
                135, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                5,
            ],
        ),
    ));
    out.push(frames::ethernet(
        &[],
        ETH_IPV6,
        &frames::ipv6(
            frames::v6([0xfe80, 0, 0, 0, 0, 0, 0, 5]),
            frames::v6([0xff02, 0, 0, 0, 0, 0, 0, 0x16]),
            1,
            V6_HOP_BY_HOP,
            &frames::ipv6_ext(PROTO_ICMPV6, &[143, 0, 0, 0, 0, 0, 0, 0]),
        ),
    ));
    out
}

#[test]
fn benign_mix_raises_nothing_with_the_default_rules() {
    if !bpf("benign_mix_raises_nothing_with_the_default_rules") {
        return;
    }
    let rules_dir = default_rules();
    let traffic = benign();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("benign.pcap");
    write_pcap_spaced(&pcap, &traffic, Duration::from_millis(2));

    let live: Live = run_live(
        "ben",
        &rules_dir,
        &pcap,
        500,
        Duration::ZERO,
        Duration::from_millis(1_200),
        |_| true,
    );
    let replayed = replay_cli(&pcap, &rules_dir);
    assert!(
        live.lines.is_empty(),
        "benign traffic raised alerts live:\n{:#?}",
        live.lines
    );
    assert!(
        replayed.is_empty(),
        "benign traffic raised alerts in replay:\n{replayed:#?}"
    );
    // Silence must not come from frames that never arrived.
    let seen = live
        .packets_seen()
        .expect("the sensor logs its packet count on exit");
    assert!(
        seen >= traffic.len() as u64,
        "the sensor saw {seen} of {} frames:\n{}",
        traffic.len(),
        live.log
    );
}
