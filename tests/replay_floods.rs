//! `sensor replay` with the default rules on a capture of every flood kind
//! and reflector of `rules/floods.yaml` and `rules/reflection.yaml`
//! (docs/CONTRACT.md section 2, `flood`): each attack raises its own rule
//! once, with `count` = the packets of its window when the threshold was
//! crossed, `dest_ip` = the victim and category `flood`, and nothing else;
//! every line is valid EVE. The same attacks just below their thresholds
//! raise nothing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::floods::{attacks, reflectors};
use support::pcap::write_pcap_spaced;

/// 200,000 packets a second: every attack fits well inside its 1 s window.
const SPACING: Duration = Duration::from_micros(5);

fn default_rules() -> sensor::rules::CompiledRules {
    support::load_rules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"))
}

#[test]
fn every_default_flood_and_reflection_rule_fires_once_in_replay() {
    let attacks = attacks(50);
    let frames: Vec<Vec<u8>> = attacks.iter().flat_map(|a| a.frames.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("floods.pcap");
    write_pcap_spaced(&pcap, &frames, SPACING);
    let rules = default_rules();
    let (alerts, result) = support::replay_lines(&pcap, &rules);
    result.expect("replay");

    let mut by_sig: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for alert in &alerts {
        by_sig
            .entry(alert.alert.signature_id)
            .or_default()
            .push(alert);
    }
    let want: Vec<u32> = attacks.iter().map(|a| a.sig).collect();
    assert_eq!(
        by_sig.keys().copied().collect::<Vec<_>>(),
        want,
        "rules raised: {:?}",
        by_sig
            .iter()
            .map(|(sig, lines)| (*sig, lines.len()))
            .collect::<Vec<_>>()
    );
    for attack in &attacks {
        let lines = &by_sig[&attack.sig];
        assert_eq!(lines.len(), 1, "{}: one line per window", attack.name);
        let line = lines[0];
        let threshold = match attack.sig {
            100311 => 60_000,
            100312 => 2_000,
            100313 => 5_000,
            100314 => 50_000,
            100315 => 1_000,
            100316 => 2_000,
            100501 => 5_000,
            100502 => 250, // by bytes: 250 frames of 1,000 bytes
            100503 => 200,
            other => panic!("unexpected rule {other}"),
        };
        assert_eq!(line.sensor.count, threshold, "{}: count", attack.name);
        assert_eq!(line.alert.category, "flood", "{}", attack.name);
        assert_eq!(
            line.dest_ip,
            std::net::IpAddr::from(attack.victim),
            "{}",
            attack.name
        );
    }
}

#[test]
fn the_same_attacks_below_their_thresholds_raise_nothing() {
    // One frame short of each packet threshold: each attack without its
    // last frames (the byte-counted one, 250 frames, 1 short too).
    let attacks = attacks(0);
    let frames: Vec<Vec<u8>> = attacks
        .iter()
        .flat_map(|a| a.frames[..a.frames.len() - 1].to_vec())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("below.pcap");
    write_pcap_spaced(&pcap, &frames, SPACING);
    let (alerts, result) = support::replay_lines(&pcap, &default_rules());
    result.expect("replay");
    let raised: Vec<(u32, u64)> = alerts
        .iter()
        .map(|a| (a.alert.signature_id, a.sensor.count))
        .collect();
    assert!(
        raised.is_empty(),
        "below every threshold, raised {raised:?}"
    );
}

/// The default scan rules (`rules/scans.yaml`) in replay: a scanner at
/// 1.2 × each threshold raises its rule once, with `count` = the bits at
/// the crossing (B(100) = 95, B(256) = 227, B(64) = 62); another at
/// 0.8 × raises nothing. Frames 20 ms apart: at most 50 SYNs a second from
/// a source, below the SYN-burst rule (100302), and each scan inside its
/// 10 s window.
#[test]
fn default_scan_rules_fire_at_1_2_n_and_not_at_0_8_n_in_replay() {
    use sensor::testing::frames::{self, ETH_IPV4, Ipv4, flags};
    use sensor_common::packet::{PROTO_ICMP, PROTO_TCP};
    let syn = |src: [u8; 4], dst: [u8; 4], port: u16| {
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(src, dst, PROTO_TCP).build(&frames::tcp(40000, port, flags::SYN, 1, &[])),
        )
    };
    let ping = |src: [u8; 4], dst: [u8; 4]| {
        frames::ethernet(
            &[],
            ETH_IPV4,
            &Ipv4::new(src, dst, PROTO_ICMP).build(&frames::icmp_echo(8, 3, 1)),
        )
    };
    // Distinct documentation addresses: 203.0.113.1.. then 198.51.100.1..
    let host = |i: usize| -> [u8; 4] {
        if i < 250 {
            [203, 0, 113, i as u8 + 1]
        } else {
            [198, 51, 100, (i - 250) as u8 + 100]
        }
    };
    let target = [192, 0, 2, 60];
    let (port_scanner, quiet_port_scanner) = ([198, 51, 100, 61], [198, 51, 100, 62]);
    let (sweeper, quiet_sweeper) = ([198, 51, 100, 63], [198, 51, 100, 64]);
    let (pinger, quiet_pinger) = ([198, 51, 100, 65], [198, 51, 100, 66]);
    let mut traffic = Vec::new();
    traffic.extend((0..120).map(|p| syn(port_scanner, target, 1000 + p)));
    traffic.extend((0..80).map(|p| syn(quiet_port_scanner, target, 1000 + p)));
    traffic.extend((0..308).map(|i| syn(sweeper, host(i), 22)));
    traffic.extend((0..204).map(|i| syn(quiet_sweeper, host(i), 22)));
    traffic.extend((0..77).map(|i| ping(pinger, host(i))));
    traffic.extend((0..51).map(|i| ping(quiet_pinger, host(i))));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("scans.pcap");
    write_pcap_spaced(&pcap, &traffic, Duration::from_millis(20));
    let (alerts, result) = support::replay_lines(&pcap, &default_rules());
    result.expect("replay");
    let got: Vec<(u32, String, u64, String)> = alerts
        .iter()
        .map(|a| {
            (
                a.alert.signature_id,
                a.src_ip.to_string(),
                a.sensor.count,
                a.alert.category.clone(),
            )
        })
        .collect();
    let line = |sig: u32, src: [u8; 4], count: u64| {
        (
            sig,
            std::net::IpAddr::from(src).to_string(),
            count,
            "scan".to_owned(),
        )
    };
    assert_eq!(
        got,
        [
            line(100601, port_scanner, 95),
            line(100602, sweeper, 227),
            line(100603, pinger, 62),
        ]
    );
}

/// Each reflector port of the default rules (53, 123, 161, 1900, 19, 389,
/// 11211), flooding a victim of its own: each raises its rule once for
/// its victim, and one frame fewer raises nothing.
#[test]
fn every_reflector_port_raises_its_rule() {
    let rules = default_rules();
    let dir = tempfile::tempdir().unwrap();
    for (over, expect_lines) in [(20, true), (0, false)] {
        let attacks = reflectors(over);
        let frames: Vec<Vec<u8>> = attacks
            .iter()
            .flat_map(|a| {
                // `over` 0: one frame short of the threshold.
                let keep = if expect_lines {
                    a.frames.len()
                } else {
                    a.frames.len() - 1
                };
                a.frames[..keep].to_vec()
            })
            .collect();
        let pcap = dir.path().join(format!("reflectors-{over}.pcap"));
        write_pcap_spaced(&pcap, &frames, SPACING);
        let (alerts, result) = support::replay_lines(&pcap, &rules);
        result.expect("replay");
        let raised: Vec<(u32, std::net::IpAddr)> = alerts
            .iter()
            .map(|a| (a.alert.signature_id, a.dest_ip))
            .collect();
        let want: Vec<(u32, std::net::IpAddr)> = if expect_lines {
            attacks
                .iter()
                .map(|a| (a.sig, std::net::IpAddr::from(a.victim)))
                .collect()
        } else {
            Vec::new()
        };
        assert_eq!(
            raised,
            want,
            "{}",
            attacks
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
