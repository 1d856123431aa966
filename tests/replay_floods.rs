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

use support::floods::attacks;
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
