//! Alert lines are Suricata EVE (CONTRACT §3, v2): every line that replay
//! writes for the shared corpus — with the corpus's own rules and with the
//! default rule set — validates against Suricata's schema relaxed, and its
//! `packet` is the capture's own bytes for that `pcap_cnt`. How many lines
//! would also pass the strict schema is reported, not required.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use pcap_file::pcap::PcapReader;
use sensor_common::alert::DEFAULT_ALERT_PACKET_BYTES;

/// A capture's link type, and its frames as stored, in file order.
fn frames_of(pcap: &Path) -> (u32, Vec<Vec<u8>>) {
    let file = std::fs::File::open(pcap).expect("open pcap");
    let mut reader = PcapReader::new(file).expect("pcap header");
    let linktype = reader.header().datalink.into();
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        frames.push(packet.expect("pcap record").data.into_owned());
    }
    (linktype, frames)
}

#[test]
fn corpus_lines_are_eve_and_carry_their_packets() {
    let Some(shared) = support::shared_dir("corpus_lines_are_eve_and_carry_their_packets") else {
        return;
    };
    let pcaps = shared.join("pcaps");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rule_sets = [
        (
            "corpus rules",
            support::load_rules(&pcaps.join("rules.yaml")),
        ),
        ("default rules", support::load_rules(&repo.join("rules"))),
    ];
    let captures: BTreeSet<_> = ["zeek", "suricata-verify"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(pcaps.join(dir)).expect("corpus folder"))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "pcap"))
        .collect();
    assert!(captures.len() >= 14, "{captures:?}");

    let mut lines = 0;
    let mut lines_by_set = Vec::new();
    for (what, rules) in &rule_sets {
        let before = lines;
        for pcap in &captures {
            let (linktype, frames) = frames_of(pcap);
            // replay_lines checks each line against the relaxed schema.
            let (alerts, result) = support::replay_lines(pcap, rules);
            result.unwrap_or_else(|err| panic!("{}: {err}", pcap.display()));
            for alert in &alerts {
                let index = alert.pcap_cnt.expect("replay lines have pcap_cnt") - 1;
                let frame = &frames[index as usize];
                let shown = frame.len().min(DEFAULT_ALERT_PACKET_BYTES.into());
                assert_eq!(
                    alert.packet_bytes(),
                    &frame[..shown],
                    "{} packet {}: `packet` is not the capture's bytes",
                    pcap.display(),
                    index + 1
                );
                let info = alert.packet_info.as_ref().map(|p| p.linktype);
                assert_eq!(info, Some(linktype), "{}", pcap.display());
            }
            lines += alerts.len();
        }
        lines_by_set.push(format!("{} with the {what}", lines - before));
    }
    assert!(lines >= 50, "the corpus should raise alerts: {lines}");
    let (checked, strict) = support::eve::strict_passes();
    assert!(checked >= lines as u64, "every line was schema-checked");
    sensor::testing::report(&format!(
        "EVE schema: {lines} replay lines of the shared corpus ({}) valid against Suricata's schema relaxed; {strict} of them also pass it strict (the `sensor` object is ours)",
        lines_by_set.join(", ")
    ));
}

#[test]
fn a_line_that_breaks_suricatas_types_is_refused() {
    // The checker itself can fail: yesterday's v1 line (`packet` an
    // object, `timestamp` ending in Z) is refused.
    let v1 = serde_json::json!({
        "timestamp": "2026-11-26T13:07:51.123456Z",
        "event_type": "alert",
        "src_ip": "10.1.2.3",
        "dest_ip": "192.0.2.10",
        "proto": "TCP",
        "alert": {"signature_id": 1, "signature": "s", "category": "c", "severity": 2, "action": "allowed"},
        "packet": {"ip_version": 4},
        "count": 1
    });
    let Some(errors) = support::eve::relaxed_errors(&v1) else {
        return;
    };
    let text = errors.join("\n");
    assert!(text.contains("/timestamp"), "{text}");
    assert!(text.contains("/packet"), "{text}");
}

/// Lines of every shape the sensor writes, built through the public API
/// (as the unit tests build them): TCP with VLANs, IPv6 ICMP, a non-first
/// fragment without ports, a blocked alert, a NULL scan, no `packet`.
#[test]
fn lines_of_every_shape_are_eve() {
    use sensor::alert::{Alert, CapturedPacket, unix_ns_to_datetime};
    use sensor::rules::{RuleMeta, Severity};
    use sensor_common::alert::{AlertRecord, outcome};
    use sensor_common::packet::{
        PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, Tunnel, flag, tcp, tunnel,
    };

    let rule = RuleMeta {
        id: 100001,
        gid: 1,
        rev: 3,
        name: "a rule".to_owned(),
        severity: Severity::High,
        category: "tcp_flags",
        drop: true,
        origin: "t.yaml:1".to_owned(),
    };
    let mut tcp4 = PacketMeta {
        frame_len: 64,
        ip_version: 4,
        ttl: 64,
        proto: PROTO_TCP,
        src_port: 1,
        dst_port: 2,
        tcp_flags: tcp::SYN | tcp::FIN | tcp::NS,
        flags: flag::HAS_PORTS | flag::HAS_TCP_FLAGS,
        vlan_count: 2,
        vlan: [100, 200, 0, 0],
        ..PacketMeta::default()
    };
    tcp4.src_addr[..4].copy_from_slice(&[198, 51, 100, 1]);
    tcp4.dst_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
    let mut icmp6 = PacketMeta {
        frame_len: 70,
        ip_version: 6,
        ttl: 255,
        proto: PROTO_ICMPV6,
        flags: flag::HAS_ICMP,
        icmp_type: 128,
        ..PacketMeta::default()
    };
    icmp6.src_addr = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    icmp6.dst_addr = "2001:db8::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let fragment = PacketMeta {
        proto: PROTO_UDP,
        flags: flag::FRAGMENT | flag::MORE_FRAGMENTS,
        frag_offset: 185,
        vlan_count: 0,
        ..tcp4
    };
    let null_scan = PacketMeta {
        tcp_flags: 0,
        ..tcp4
    };
    // Inner packets of tunnels: VXLAN (outer UDP ports, VNI), GRE with a
    // key over IPv6, IP-in-IP (no id).
    fn tunnel_of(inner: PacketMeta, kind: u8, proto: u8, id: Option<u32>, v6: bool) -> PacketMeta {
        let mut outer = Tunnel {
            kind,
            proto,
            ip_version: if v6 { 6 } else { 4 },
            has_id: id.is_some() as u8,
            id: id.unwrap_or(0),
            ..Tunnel::default()
        };
        if kind == tunnel::VXLAN {
            (outer.src_port, outer.dst_port) = (51000, 4789);
        }
        if v6 {
            outer.src_addr = "2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets();
            outer.dst_addr = "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets();
        } else {
            outer.src_addr[..4].copy_from_slice(&[203, 0, 113, 1]);
            outer.dst_addr[..4].copy_from_slice(&[203, 0, 113, 2]);
        }
        PacketMeta {
            tunnel: outer,
            ..inner
        }
    }
    let vxlan = tunnel_of(tcp4, tunnel::VXLAN, PROTO_UDP, Some(42), false);
    let gre = tunnel_of(tcp4, tunnel::GRE, 47, Some(7), true);
    let ipip = tunnel_of(tcp4, tunnel::IPIP, 4, None, false);
    let frame = CapturedPacket::ethernet(&[0xab; 64]);
    let shapes = [
        (vxlan, outcome::ALLOWED, frame.clone()),
        (gre, outcome::ALLOWED, frame.clone()),
        (ipip, outcome::ALLOWED, frame.clone()),
        (tcp4, outcome::ALLOWED, frame.clone()),
        (icmp6, outcome::ALLOWED, frame.clone()),
        (fragment, outcome::ALLOWED, frame.clone()),
        (null_scan, outcome::BLOCKED, frame.clone()),
        (tcp4, outcome::ALLOWED, CapturedPacket::default()),
    ];
    for (packet, action, frame) in shapes {
        let record = AlertRecord {
            sig_id: rule.id,
            action,
            packet,
            ..AlertRecord::default()
        };
        for alert in [
            Alert::new(&record, &frame, &rule, 7, unix_ns_to_datetime(1), 0).with_iface("eth0"),
            Alert::new(&record, &frame, &rule, 1, unix_ns_to_datetime(1), 0).with_pcap_cnt(9),
        ] {
            let line = alert.to_json_line();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            // The tunnel object as the contract says (section 3, Tunnels).
            if packet.in_tunnel() {
                let outer = &value["tunnel"];
                assert_eq!(outer["depth"], 1, "{line}");
                assert!(
                    outer["src_ip"].is_string() && outer["dest_ip"].is_string(),
                    "{line}"
                );
                let kind = outer["type"].as_str().unwrap_or_default();
                match kind {
                    "vxlan" => {
                        assert_eq!(outer["vni"], 42, "{line}");
                        assert_eq!(outer["proto"], "UDP", "{line}");
                        assert_eq!(
                            (&outer["src_port"], &outer["dest_port"]),
                            (&51000.into(), &4789.into())
                        );
                    }
                    "gre" => {
                        assert_eq!(outer["gre_key"], 7, "{line}");
                        assert_eq!(outer["proto"], "47", "{line}");
                        assert_eq!(outer["src_ip"], "2001:db8::2", "{line}");
                        assert!(outer.get("src_port").is_none(), "{line}");
                    }
                    "ipip" => {
                        assert_eq!(outer["proto"], "4", "{line}");
                        assert!(outer.get("vni").is_none() && outer.get("gre_key").is_none());
                    }
                    other => panic!("unexpected tunnel type {other:?}: {line}"),
                }
                // The inner addresses are the line's.
                assert_eq!(value["src_ip"], "198.51.100.1", "{line}");
            } else {
                assert!(value.get("tunnel").is_none(), "{line}");
            }
            let Some(errors) = support::eve::relaxed_errors(&value) else {
                return;
            };
            assert!(errors.is_empty(), "{errors:?}\n{line}");
        }
    }
}
