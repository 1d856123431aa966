//! Replays every capture of the shared corpus (`shared/pcaps`) with its
//! rules and checks the alerts against `expected.json` exactly:
//!
//! - every expected (signature_id, src_ip) pair appears, its line counts
//!   add up to `packets`, and every line shows one of its `packet_index`
//!   packets (`pcap_cnt` - 1); when no line is aggregated, the lines show
//!   exactly those packets;
//! - a `tolerated` pair may appear, but only on its listed packets;
//! - a `silent` source raises nothing, and no other alert may appear.
//!
//! All captures are checked before failing, with one readable report.
//! The same captures rewritten as big-endian pcapng must give the same lines.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use pcap_file::Endianness;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

use serde::Deserialize;

use sensor::alert::Alert;
use sensor::rules::CompiledRules;

#[derive(Debug, Deserialize)]
struct Expectations {
    pcaps: BTreeMap<String, PcapExpectation>,
}

#[derive(Debug, Deserialize)]
struct PcapExpectation {
    rules: String,
    alerts: Vec<ExpectedAlert>,
    tolerated: Vec<ExpectedAlert>,
    silent: Vec<IpAddr>,
}

#[derive(Debug, Deserialize)]
struct ExpectedAlert {
    signature_id: u32,
    src_ip: IpAddr,
    packets: u64,
    packet_index: Vec<u64>,
}

type Pair = (u32, IpAddr);

/// What the replay raised for one (signature, source): its lines as
/// (0-based packet index, count).
fn group(alerts: &[Alert]) -> BTreeMap<Pair, Vec<(u64, u64)>> {
    let mut pairs: BTreeMap<Pair, Vec<(u64, u64)>> = BTreeMap::new();
    for alert in alerts {
        let index = alert.pcap_cnt.expect("replay lines carry pcap_cnt") - 1;
        pairs
            .entry((alert.alert.signature_id, alert.src_ip))
            .or_default()
            .push((index, alert.count()));
    }
    pairs
}

/// Problems with one capture's alerts; empty when it meets its expectation.
fn check(expectation: &PcapExpectation, alerts: &[Alert]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut raised = group(alerts);
    let describe = |lines: &[(u64, u64)]| {
        let shown: Vec<String> = lines
            .iter()
            .map(|(index, count)| {
                if *count == 1 {
                    format!("#{index}")
                } else {
                    format!("#{index}×{count}")
                }
            })
            .collect();
        format!("[{}]", shown.join(", "))
    };

    for expected in &expectation.alerts {
        let pair = (expected.signature_id, expected.src_ip);
        let Some(lines) = raised.remove(&pair) else {
            problems.push(format!(
                "missing {} from {}: expected {} packet(s) {:?}",
                pair.0, pair.1, expected.packets, expected.packet_index
            ));
            continue;
        };
        let total: u64 = lines.iter().map(|(_, count)| count).sum();
        let allowed: BTreeSet<u64> = expected.packet_index.iter().copied().collect();
        let stray: Vec<u64> = lines
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !allowed.contains(i))
            .collect();
        let unaggregated = lines.iter().all(|(_, count)| *count == 1);
        let shown: Vec<u64> = lines.iter().map(|(i, _)| *i).collect();
        if total != expected.packets
            || !stray.is_empty()
            || (unaggregated && shown != expected.packet_index)
        {
            problems.push(format!(
                "{} from {}: expected {} packet(s) {:?}, got {} in lines {}",
                pair.0,
                pair.1,
                expected.packets,
                expected.packet_index,
                total,
                describe(&lines)
            ));
        }
    }

    for tolerated in &expectation.tolerated {
        let pair = (tolerated.signature_id, tolerated.src_ip);
        if let Some(lines) = raised.remove(&pair) {
            let total: u64 = lines.iter().map(|(_, count)| count).sum();
            let on_listed = lines
                .iter()
                .all(|(i, _)| tolerated.packet_index.contains(i));
            if total > tolerated.packets || !on_listed {
                problems.push(format!(
                    "tolerated {} from {} only on packets {:?}, got lines {}",
                    pair.0,
                    pair.1,
                    tolerated.packet_index,
                    describe(&lines)
                ));
            }
        }
    }

    for ((sig_id, src), lines) in raised {
        let why = if expectation.silent.contains(&src) {
            "silent source raised"
        } else {
            "unexpected"
        };
        problems.push(format!(
            "{why} {sig_id} from {src}: lines {}",
            describe(&lines)
        ));
    }
    problems
}

#[test]
fn corpus_raises_exactly_the_expected_alerts() {
    let Some(shared) = support::shared_dir("corpus_raises_exactly_the_expected_alerts") else {
        return;
    };
    let pcaps = shared.join("pcaps");
    let text = std::fs::read_to_string(pcaps.join("expected.json")).expect("read expected.json");
    let expectations: Expectations = serde_json::from_str(&text).expect("parse expected.json");
    assert!(
        !expectations.pcaps.is_empty(),
        "expected.json lists no pcaps"
    );

    let mut rule_sets: HashMap<PathBuf, CompiledRules> = HashMap::new();
    let mut report = String::new();
    let mut failed = 0;
    for (name, expectation) in &expectations.pcaps {
        let rules_path = pcaps.join(&expectation.rules);
        let rules = rule_sets
            .entry(rules_path.clone())
            .or_insert_with(|| support::load_rules(&rules_path));
        let pcap: &Path = &pcaps.join(name);
        let (alerts, result) = support::replay_lines(pcap, rules);
        let mut problems = check(expectation, &alerts);
        let stats = match result {
            Ok(stats) => format!(
                "{} packets, {} not IP, {} lines",
                stats.packets, stats.not_ip, stats.alerts
            ),
            Err(err) => {
                problems.insert(0, format!("replay failed: {err}"));
                "replay failed".to_owned()
            }
        };
        if alerts.iter().any(|a| a.in_iface.is_some()) {
            problems.push("a replay line has `in_iface`".to_owned());
        }
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        writeln!(report, "{verdict} {name} ({stats})").unwrap();
        for problem in &problems {
            writeln!(report, "       {problem}").unwrap();
        }
        failed += usize::from(!problems.is_empty());
    }
    eprintln!("{report}");
    assert!(
        failed == 0,
        "{failed} capture(s) differ from expected.json:\n{report}"
    );
}

/// `pcap` rewritten as a big-endian pcapng with nanosecond timestamps.
fn as_pcapng(pcap: &Path) -> tempfile::NamedTempFile {
    let mut reader = PcapReader::new(File::open(pcap).expect("open pcap")).expect("pcap header");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let mut writer = PcapNgWriter::with_endianness(file.reopen().expect("reopen"), Endianness::Big)
        .expect("write SHB");
    let interface = InterfaceDescriptionBlock {
        linktype: reader.header().datalink,
        snaplen: reader.header().snaplen,
        // pcap-file writes EPB timestamps in nanoseconds whatever the IDB says.
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    writer.write_pcapng_block(interface).expect("write IDB");
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("pcap packet");
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: packet.timestamp,
            original_len: packet.orig_len,
            data: packet.data,
            options: Vec::new(),
        };
        writer.write_pcapng_block(block).expect("write EPB");
    }
    file
}

#[test]
fn corpus_as_pcapng_gives_the_same_lines() {
    let Some(shared) = support::shared_dir("corpus_as_pcapng_gives_the_same_lines") else {
        return;
    };
    let pcaps = shared.join("pcaps");
    let text = std::fs::read_to_string(pcaps.join("expected.json")).expect("read expected.json");
    let expectations: Expectations = serde_json::from_str(&text).expect("parse expected.json");
    let mut rule_sets: HashMap<PathBuf, CompiledRules> = HashMap::new();
    for (name, expectation) in &expectations.pcaps {
        let rules_path = pcaps.join(&expectation.rules);
        let rules = rule_sets
            .entry(rules_path.clone())
            .or_insert_with(|| support::load_rules(&rules_path));
        let pcap = pcaps.join(name);
        let (from_pcap, result) = support::replay_lines(&pcap, rules);
        let from_pcap_stats = result.unwrap_or_else(|err| panic!("{name}: {err}"));
        let converted = as_pcapng(&pcap);
        let (from_pcapng, result) = support::replay_lines(converted.path(), rules);
        let from_pcapng_stats = result.unwrap_or_else(|err| panic!("{name} as pcapng: {err}"));
        assert_eq!(
            from_pcap, from_pcapng,
            "{name}: pcap and pcapng lines differ"
        );
        assert_eq!(from_pcap_stats, from_pcapng_stats, "{name}");
    }
}

#[test]
fn check_reports_every_kind_of_difference() {
    let src: IpAddr = "10.0.0.1".parse().unwrap();
    let other: IpAddr = "10.0.0.2".parse().unwrap();
    let expectation = PcapExpectation {
        rules: String::new(),
        alerts: vec![ExpectedAlert {
            signature_id: 1,
            src_ip: src,
            packets: 2,
            packet_index: vec![0, 3],
        }],
        tolerated: vec![ExpectedAlert {
            signature_id: 2,
            src_ip: src,
            packets: 1,
            packet_index: vec![3],
        }],
        silent: vec![other],
    };
    let line = |sig_id: u32, ip: IpAddr, index: u64, count: u64| {
        let json = format!(
            r#"{{"timestamp":"2026-11-26T13:07:51.000000+0000","pcap_cnt":{},"event_type":"alert","src_ip":"{ip}","dest_ip":"192.0.2.1","proto":"TCP","ip_v":4,"alert":{{"action":"allowed","gid":1,"signature_id":{sig_id},"rev":1,"signature":"s","category":"header","severity":3}},"sensor":{{"count":{count},"length":60,"ttl":64}}}}"#,
            index + 1
        );
        Alert::from_json(&json).unwrap()
    };
    // Exactly as expected, with and without the tolerated alert, or aggregated.
    assert!(check(&expectation, &[line(1, src, 0, 1), line(1, src, 3, 1)]).is_empty());
    assert!(
        check(
            &expectation,
            &[line(1, src, 0, 1), line(1, src, 3, 1), line(2, src, 3, 1)]
        )
        .is_empty()
    );
    assert!(
        check(&expectation, &[line(1, src, 0, 1), line(1, src, 0, 1)]).len() == 1,
        "wrong packets"
    );
    assert!(
        check(&expectation, &[line(1, src, 3, 2)]).is_empty(),
        "one aggregated line"
    );
    // Missing, wrong count, stray packet, tolerated elsewhere, silent, unexpected.
    assert_eq!(check(&expectation, &[]).len(), 1);
    assert_eq!(check(&expectation, &[line(1, src, 0, 1)]).len(), 1);
    assert_eq!(
        check(&expectation, &[line(1, src, 0, 1), line(1, src, 5, 1)]).len(),
        1
    );
    let base = [line(1, src, 0, 1), line(1, src, 3, 1)];
    for extra in [line(2, src, 0, 1), line(3, other, 1, 1), line(3, src, 1, 1)] {
        let mut alerts = base.to_vec();
        alerts.push(extra);
        assert_eq!(check(&expectation, &alerts).len(), 1, "{:?}", alerts.last());
    }
    assert!(
        check(
            &expectation,
            &[line(1, src, 0, 1), line(1, src, 3, 1), line(3, other, 1, 1)]
        )[0]
        .starts_with("silent")
    );
}
