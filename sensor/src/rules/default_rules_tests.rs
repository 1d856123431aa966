//! The shipped rule set (`rules/` at the repository root): it loads, fits,
//! stays quiet on benign traffic and fires on what each rule is meant for.

use std::path::PathBuf;

use sensor_common::detect::stateless_matches;
use sensor_common::packet::{
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, event, flag, tcp,
};
use sensor_common::tables::MAX_RULES;

use super::compile::try_compile;
use super::compiled::{CompiledRules, MemoryTables};
use super::load::load_path;
use super::model::{HeaderCheck, Match, RuleSet};

fn default_rules() -> (RuleSet, CompiledRules) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let set = load_path(&dir).unwrap_or_else(|err| panic!("default rules: {err}"));
    let compiled = try_compile(&set, 300).unwrap();
    (set, compiled)
}

/// Signature ids of the stateless rules that match `meta`.
fn matching_ids(compiled: &CompiledRules, meta: &PacketMeta) -> Vec<u32> {
    let tables = MemoryTables {
        rules: compiled,
        drop_mode: false,
    };
    stateless_matches(meta, &tables)
        .slots()
        .map(|slot| compiled.rules[slot as usize].sig_id)
        .collect()
}

fn ipv4(proto: u8, ttl: u8) -> PacketMeta {
    PacketMeta {
        ip_version: 4,
        src_addr: [192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_addr: [198, 51, 100, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        proto,
        ttl,
        frame_len: 74,
        ..PacketMeta::default()
    }
}

fn ipv6(proto: u8, hop_limit: u8) -> PacketMeta {
    let mut meta = ipv4(proto, hop_limit);
    meta.ip_version = 6;
    meta.src_addr = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    meta.dst_addr = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
    meta
}

fn tcp_segment(flags: u16, ttl: u8) -> PacketMeta {
    let mut meta = ipv4(PROTO_TCP, ttl);
    meta.flags |= flag::HAS_PORTS | flag::HAS_TCP_FLAGS;
    meta.src_port = 40_000;
    meta.dst_port = 443;
    meta.tcp_flags = flags;
    meta
}

fn udp(src_port: u16, dst_port: u16) -> PacketMeta {
    let mut meta = ipv4(PROTO_UDP, 64);
    meta.flags |= flag::HAS_PORTS;
    meta.src_port = src_port;
    meta.dst_port = dst_port;
    meta
}

#[test]
fn default_rule_set_loads_and_fits() {
    let (set, compiled) = default_rules();
    let enabled = compiled.rules.len();
    assert!(
        (20..=MAX_RULES as usize / 2).contains(&enabled),
        "{enabled} enabled rules: keep the default set well below {MAX_RULES}"
    );
    assert!(set.rules.iter().all(|r| r.id > 100_000));
    // Every header check is covered by some rule.
    for check in HeaderCheck::ALL {
        assert!(
            set.rules.iter().any(|r| r.matcher == Match::Header(check)),
            "no default rule for {check:?}"
        );
    }
    for category in [
        "tcp_flags",
        "ttl",
        "fragment",
        "syn_flood",
        "flood",
        "header",
    ] {
        assert!(
            compiled.meta.iter().any(|m| m.category == category),
            "{category}"
        );
    }
    // Files load in name order: flags.yaml first, ttl.yaml last.
    assert!(
        set.rules[0].origin.ends_with("flags.yaml:12"),
        "{}",
        set.rules[0].origin
    );
}

#[test]
fn benign_traffic_raises_nothing() {
    let (_, compiled) = default_rules();
    let mut benign = vec![
        ("SYN", tcp_segment(tcp::SYN, 64)),
        (
            "SYN with ECN setup",
            tcp_segment(tcp::SYN | tcp::ECE | tcp::CWR, 64),
        ),
        ("SYN+ACK", tcp_segment(tcp::SYN | tcp::ACK, 128)),
        ("ACK", tcp_segment(tcp::ACK, 64)),
        ("PSH+ACK", tcp_segment(tcp::PSH | tcp::ACK, 64)),
        ("FIN+ACK", tcp_segment(tcp::FIN | tcp::ACK, 64)),
        (
            "FIN+PSH+ACK",
            tcp_segment(tcp::FIN | tcp::PSH | tcp::ACK, 64),
        ),
        ("RST", tcp_segment(tcp::RST, 64)),
        ("RST+ACK", tcp_segment(tcp::RST | tcp::ACK, 64)),
        ("DNS query", udp(53_000, 53)),
        ("ICMP echo", ipv4(PROTO_ICMP, 64)),
        ("IGMP report, TTL 1", ipv4(2, 1)),
        ("MLD report, hop limit 1", ipv6(PROTO_ICMPV6, 1)),
        (
            "neighbour solicitation, hop limit 255",
            ipv6(PROTO_ICMPV6, 255),
        ),
        ("TCP over IPv6", {
            let mut meta = tcp_segment(tcp::SYN, 64);
            meta.ip_version = 6;
            meta
        }),
    ];
    // DHCP discover from 0.0.0.0 (the parser flags it martian).
    let mut dhcp = udp(68, 67);
    dhcp.src_addr = [0; 16];
    dhcp.dst_addr[..4].copy_from_slice(&[255, 255, 255, 255]);
    dhcp.events |= event::bit(event::MARTIAN_SRC);
    benign.push(("DHCP discover", dhcp));
    // A large UDP datagram in two fragments.
    let mut first = udp(40_000, 2049);
    first.flags |= flag::FRAGMENT | flag::MORE_FRAGMENTS;
    first.events |= event::bit(event::FIRST_FRAGMENT);
    first.l3_payload_len = 1480;
    benign.push(("first fragment", first));
    let mut second = ipv4(PROTO_UDP, 64);
    second.flags |= flag::FRAGMENT;
    second.frag_offset = 185;
    second.l3_payload_len = 520;
    benign.push(("last fragment", second));

    for (what, meta) in benign {
        assert_eq!(matching_ids(&compiled, &meta), Vec::<u32>::new(), "{what}");
    }
}

#[test]
fn attacks_raise_their_rules() {
    let (_, compiled) = default_rules();
    let with_event = |mut meta: PacketMeta, ev: u8| {
        meta.events |= event::bit(ev);
        meta
    };
    let mut tiny = tcp_segment(tcp::SYN, 64);
    tiny.flags &= !flag::HAS_TCP_FLAGS;
    tiny.flags |= flag::FRAGMENT | flag::MORE_FRAGMENTS;
    tiny.events |= event::bit(event::FIRST_FRAGMENT);
    tiny.l3_payload_len = 8;

    let cases: Vec<(&str, PacketMeta, Vec<u32>)> = vec![
        (
            "SYN+FIN",
            tcp_segment(tcp::SYN | tcp::FIN, 64),
            vec![100001, 100005],
        ),
        ("NULL", tcp_segment(0, 64), vec![100002]),
        (
            "XMAS",
            tcp_segment(tcp::FIN | tcp::PSH | tcp::URG, 64),
            vec![100003, 100005],
        ),
        (
            "SYN+RST",
            tcp_segment(tcp::SYN | tcp::RST, 64),
            vec![100004],
        ),
        ("FIN scan", tcp_segment(tcp::FIN, 64), vec![100005]),
        ("tiny first fragment", tiny, vec![100201]),
        (
            "offset one",
            with_event(ipv4(PROTO_TCP, 64), event::FRAG_OFFSET_ONE),
            vec![100202],
        ),
        (
            "ping of death",
            with_event(ipv4(PROTO_ICMP, 64), event::FRAG_OVERSIZE),
            vec![100203],
        ),
        (
            "atomic fragment",
            with_event(ipv6(PROTO_UDP, 64), event::FRAG_ATOMIC),
            vec![100204],
        ),
        (
            "land",
            with_event(tcp_segment(tcp::SYN, 64), event::LAND),
            vec![100401],
        ),
        (
            "bad IHL",
            with_event(ipv4(0, 64), event::BAD_IHL),
            vec![100402],
        ),
        (
            "bad length",
            with_event(ipv4(PROTO_UDP, 64), event::BAD_TOTAL_LENGTH),
            vec![100403],
        ),
        (
            "bad TCP offset",
            with_event(ipv4(PROTO_TCP, 64), event::BAD_TCP_OFFSET),
            vec![100404],
        ),
        (
            "port 0",
            with_event(udp(1234, 0), event::ZERO_PORT),
            vec![100405],
        ),
        (
            "martian TCP",
            with_event(tcp_segment(tcp::SYN, 64), event::MARTIAN_SRC),
            vec![100406],
        ),
        (
            "martian ICMP",
            with_event(ipv4(PROTO_ICMP, 64), event::MARTIAN_SRC),
            vec![100407],
        ),
        (
            "martian ICMPv6",
            with_event(ipv6(PROTO_ICMPV6, 64), event::MARTIAN_SRC),
            vec![100408],
        ),
        (
            "reserved bit",
            with_event(ipv4(PROTO_UDP, 64), event::IP_RESERVED_BIT),
            vec![100409],
        ),
        (
            "DF on fragment",
            with_event(ipv4(PROTO_UDP, 64), event::DF_WITH_FRAGMENT),
            vec![100410],
        ),
        (
            "routing type 0",
            with_event(ipv6(PROTO_TCP, 64), event::IPV6_ROUTING_TYPE0),
            vec![100411],
        ),
        (
            "duplicated extension header",
            with_event(ipv6(PROTO_UDP, 64), event::IPV6_DUPLICATE_EXT_HEADER),
            vec![100412],
        ),
        (
            "hop-by-hop not first",
            with_event(ipv6(PROTO_UDP, 64), event::IPV6_HOP_BY_HOP_NOT_FIRST),
            vec![100413],
        ),
        (
            "source route",
            with_event(ipv4(PROTO_ICMP, 64), event::IPV4_SOURCE_ROUTE),
            vec![100414],
        ),
        (
            "malformed IPv4 option",
            with_event(ipv4(PROTO_UDP, 64), event::IPV4_OPTION_MALFORMED),
            vec![100415],
        ),
        (
            "malformed TCP option",
            with_event(tcp_segment(tcp::ACK, 64), event::TCP_OPTION_MALFORMED),
            vec![100416],
        ),
        (
            "source route and malformed TCP option together",
            with_event(
                with_event(tcp_segment(tcp::ACK, 64), event::TCP_OPTION_MALFORMED),
                event::IPV4_SOURCE_ROUTE,
            ),
            vec![100414, 100416],
        ),
        (
            "land and routing type 0 together (both regions)",
            with_event(
                with_event(ipv6(PROTO_UDP, 64), event::LAND),
                event::IPV6_ROUTING_TYPE0,
            ),
            vec![100401, 100411],
        ),
        ("TTL 0", ipv4(PROTO_UDP, 0), vec![100101]),
        ("TCP TTL 1", tcp_segment(tcp::ACK, 1), vec![100102]),
        ("TCP TTL 0", tcp_segment(tcp::ACK, 0), vec![100101, 100102]),
    ];
    for (what, meta, mut expected) in cases {
        let mut ids = matching_ids(&compiled, &meta);
        ids.sort_unstable();
        expected.sort_unstable();
        assert_eq!(ids, expected, "{what}");
    }
}
