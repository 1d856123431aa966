//! Floods of every packet class, a reflector and scans, detected live: crafted
//! traffic sent by tcpreplay over a veth pair in network namespaces to
//! `sensor run` (XDP, native mode on the veth), with `flood` rules of each
//! class and a reflection rule (`scope.src_ports`), lower thresholds than
//! the defaults so the test can reach them at a modest rate. Each flood
//! raises its rule exactly once, with the packet count of its window at the
//! threshold and the victim as `dest_ip`; UDP from a port that is no
//! reflector's raises nothing; a port scan and a host scan at 1.2 × their
//! threshold raise their `scan` rule once each (count = the bits at the
//! crossing, 95 for N = 100), their twins at 0.8 × nothing; `sensor replay`
//! on the same capture gives the same lines (for scans, the same rule,
//! source and count: the live sensor's hash secret is random, so which
//! packet crosses may differ).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sensor::testing::frames::{self, Ipv4, flags};
use sensor_common::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use serde_json::Value;
use support::floods::{eth, source};
use support::live::{canonical, essence, replay_cli, run_live};
use support::pcap::write_pcap_spaced;

const THRESHOLD: u64 = 200;
/// Frames per flood: well over the threshold, all inside one window.
const PER_FLOOD: usize = 300;
const PPS: u32 = 10_000;

/// (signature, packet class, victim's last byte).
const CLASSES: [(u64, &str, u8); 7] = [
    (7001, "syn", 71),
    (7002, "ack", 72),
    (7003, "rst", 73),
    (7004, "fin", 74),
    (7005, "udp", 75),
    (7006, "icmp", 76),
    (7007, "fragment", 77),
];
/// The reflection rule: UDP from ports 53 or 123 to one destination.
const REFLECTION: u64 = 7010;
const REFLECTED_VICTIM: u8 = 78;
/// UDP from port 5353 (no reflector's) to another destination.
const NOT_REFLECTED_VICTIM: u8 = 79;
/// `scan` rules of threshold 100: ports and hosts.
const PORT_SCAN: u64 = 7020;
const HOST_SCAN: u64 = 7021;
const SCAN_N: usize = 100;
/// B(100): the map bits at which a scan of 100 alerts (docs/CONTRACT.md).
const SCAN_BITS: u64 = 95;
const PORT_SCANNER: [u8; 4] = [198, 51, 100, 201];
const QUIET_PORT_SCANNER: [u8; 4] = [198, 51, 100, 202];
const HOST_SCANNER: [u8; 4] = [198, 51, 100, 203];
const QUIET_HOST_SCANNER: [u8; 4] = [198, 51, 100, 204];

fn rules_yaml() -> String {
    let mut out = String::from("rules:\n");
    for (sig, class, victim) in CLASSES {
        out.push_str(&format!(
            "  - id: {sig}\n    name: {class} flood\n    severity: high\n    \
             scope: {{ dst: [192.0.2.{victim}] }}\n    \
             match: {{ flood: {{ packets: {class}, track: by_dst, threshold: {THRESHOLD}, window_ms: 10000 }} }}\n"
        ));
    }
    out.push_str(&format!(
        "  - id: {REFLECTION}\n    name: DNS or NTP reflection\n    severity: high\n    \
         scope: {{ protocol: udp, src_ports: [53, 123] }}\n    \
         match: {{ flood: {{ packets: udp, track: by_dst, threshold: {THRESHOLD}, window_ms: 10000 }} }}\n"
    ));
    for (sig, distinct) in [(PORT_SCAN, "ports"), (HOST_SCAN, "hosts")] {
        out.push_str(&format!(
            "  - id: {sig}\n    name: {distinct} scan\n    severity: medium\n    \
             scope: {{ src: [198.51.100.200/29] }}\n    \
             match: {{ scan: {{ track: by_src, distinct: {distinct}, threshold: {SCAN_N}, window_ms: 10000 }} }}\n"
        ));
    }
    out
}

/// Scans at 1.2 × and 0.8 × their threshold: SYNs to distinct ports of
/// one host, and to port 22 of distinct hosts.
fn scans() -> Vec<Vec<u8>> {
    let syn = |src: [u8; 4], dst: [u8; 4], port: u16| {
        eth(Ipv4::new(src, dst, PROTO_TCP).build(&frames::tcp(40000, port, flags::SYN, 1, &[])))
    };
    let over = SCAN_N * 12 / 10;
    let under = SCAN_N * 8 / 10;
    let target = [192, 0, 2, 80];
    let host = |i: usize| [203, 0, 113, i as u8 + 1];
    let mut out = Vec::new();
    out.extend((0..over).map(|p| syn(PORT_SCANNER, target, 2000 + p as u16)));
    out.extend((0..under).map(|p| syn(QUIET_PORT_SCANNER, target, 2000 + p as u16)));
    out.extend((0..over).map(|i| syn(HOST_SCANNER, host(i), 22)));
    out.extend((0..under).map(|i| syn(QUIET_HOST_SCANNER, host(i), 22)));
    out
}

/// Frame `i` of a flood of `class` to `victim`.
fn frame(class: &str, i: usize, victim: [u8; 4]) -> Vec<u8> {
    let tcp = |f: u16| {
        eth(Ipv4::new(source(i), victim, PROTO_TCP).build(&frames::tcp(
            1024 + i as u16,
            80,
            f,
            i as u32,
            &[],
        )))
    };
    let udp = |sport: u16| {
        eth(Ipv4::new(source(i), victim, PROTO_UDP).build(&frames::udp(
            sport,
            1024 + i as u16,
            &[0x5a; 100],
        )))
    };
    match class {
        "syn" => tcp(flags::SYN),
        "ack" => tcp(flags::ACK),
        "rst" => tcp(flags::RST),
        "fin" => tcp(flags::FIN | flags::ACK),
        "udp" => udp(40_000),
        "icmp" => {
            eth(Ipv4::new(source(i), victim, PROTO_ICMP).build(&frames::icmp_echo(8, 9, i as u16)))
        }
        "fragment" => {
            let mut ip = Ipv4::new(source(i), victim, PROTO_UDP).frag(100);
            ip.id = i as u16;
            eth(ip.build(&[0x5a; 64]))
        }
        "dns" => udp(53),
        "ntp" => udp(123),
        "mdns" => udp(5353),
        other => panic!("no class {other}"),
    }
}

/// Every flood interleaved (frame `i` of each in turn), so they overlap
/// in time as simultaneous attacks would.
fn traffic() -> Vec<Vec<u8>> {
    let mut kinds: Vec<(&str, u8)> = CLASSES.iter().map(|(_, c, v)| (*c, *v)).collect();
    kinds.extend([
        ("dns", REFLECTED_VICTIM),
        ("ntp", REFLECTED_VICTIM),
        ("mdns", NOT_REFLECTED_VICTIM),
    ]);
    let mut out: Vec<Vec<u8>> = (0..PER_FLOOD)
        .flat_map(|i| {
            kinds
                .iter()
                .map(move |(class, victim)| frame(class, i, [192, 0, 2, *victim]))
        })
        .collect();
    out.extend(scans());
    out
}

fn check(what: &str, lines: &[Value]) {
    let by_sig: BTreeMap<u64, Vec<&Value>> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        let sig = l["alert"]["signature_id"].as_u64().expect("signature_id");
        m.entry(sig).or_insert_with(Vec::new).push(l);
        m
    });
    let mut want: Vec<u64> = CLASSES.iter().map(|(sig, _, _)| *sig).collect();
    want.extend([REFLECTION, PORT_SCAN, HOST_SCAN]);
    assert_eq!(
        by_sig.keys().copied().collect::<Vec<_>>(),
        want,
        "{what}: rules raised ({} lines)",
        lines.len()
    );
    for (sig, victim) in CLASSES
        .iter()
        .map(|(sig, _, victim)| (*sig, *victim))
        .chain([(REFLECTION, REFLECTED_VICTIM)])
    {
        let of_rule = &by_sig[&sig];
        assert_eq!(of_rule.len(), 1, "{what}: rule {sig}: one line per window");
        let line = of_rule[0];
        assert_eq!(line["alert"]["category"], "flood", "{what}: {sig}");
        assert_eq!(line["sensor"]["count"], THRESHOLD, "{what}: {sig}: count");
        assert_eq!(
            line["dest_ip"],
            format!("192.0.2.{victim}"),
            "{what}: {sig}"
        );
    }
    for (sig, scanner) in [(PORT_SCAN, PORT_SCANNER), (HOST_SCAN, HOST_SCANNER)] {
        let of_rule = &by_sig[&sig];
        assert_eq!(
            of_rule.len(),
            1,
            "{what}: rule {sig}: one line, and none at 0.8 N"
        );
        let line = of_rule[0];
        assert_eq!(line["alert"]["category"], "scan", "{what}: {sig}");
        assert_eq!(line["sensor"]["count"], SCAN_BITS, "{what}: {sig}: count");
        assert_eq!(
            line["src_ip"],
            std::net::IpAddr::from(scanner).to_string(),
            "{what}: {sig}"
        );
    }
    // The reflection rule counted 53 and 123 (2 x 300 frames: the 200th is
    // the 100th of each), never 5353.
    let reflected = by_sig[&REFLECTION][0];
    assert!(
        [53, 123].contains(&reflected["src_port"].as_u64().unwrap_or(0)),
        "{what}: {reflected}"
    );
}

#[test]
fn floods_of_every_class_a_reflector_and_scans_are_detected_live_and_in_replay() {
    if !sensor::testing::bpf_available(
        "floods_of_every_class_a_reflector_and_scans_are_detected_live_and_in_replay",
    ) {
        return;
    }
    let traffic = traffic();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("floods.pcap");
    write_pcap_spaced(&pcap, &traffic, Duration::from_secs(1) / PPS);
    let rules = support::fixtures::rules_file(dir.path(), &rules_yaml());

    let live = run_live(
        "floods",
        &rules,
        &pcap,
        PPS,
        Duration::from_secs(10),
        Duration::from_millis(300),
        |lines| lines.len() >= CLASSES.len() + 3,
    );
    let replayed = replay_cli(&pcap, &rules);
    check("live", &live.lines);
    check("replay", &replayed);
    // The same lines live and in replay, but for time, interface, packet
    // number; for scans, rule, source and count.
    let sorted = |lines: &[Value]| {
        let mut all: Vec<String> = lines
            .iter()
            .map(|l| {
                if l["alert"]["category"] == "scan" {
                    format!(
                        "{} {} {}",
                        l["alert"]["signature_id"], l["src_ip"], l["sensor"]["count"]
                    )
                } else {
                    canonical(&essence(l))
                }
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(sorted(&live.lines), sorted(&replayed), "live vs replay");
}
