//! `sensor run` and `sensor replay` share one pipeline: the same records
//! give the same lines through both. Replay reads a capture; the live
//! engine gets the records the kernel would send for the same frames (the
//! shared parser and detector over memory tables, as in the kernel program)
//! and writes them through its real sinks (a JSON file here).

use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};
use sensor_common::detect::{AlertHead, process};
use sensor_common::packet::IP_VERSION_NONE;
use sensor_common::parse::parse_ethernet;
use sensor_common::tables::{RATE_BURST, RATE_WINDOW_NS};

use super::*;
use crate::alert::Alert;
use crate::kernel::perf::AlertSample;
use crate::replay::state::MemoryState;
use crate::replay::{ReplayOptions, replay_with};
use crate::rules::MemoryTables;
use crate::sinks::json::JsonTarget;
use crate::testing::frames::{self, flags};

const START_NS: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;
const PACKET_BYTES: u16 = 64;
/// `rules/flags.yaml`: TCP NULL scan.
const NULL_SCAN: u32 = 100_002;

/// The repository's flag rules, compiled as `sensor run` compiles them.
fn flag_rules() -> CompiledRules {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/flags.yaml");
    let set = crate::rules::load_path(&path).unwrap();
    crate::rules::compile(&set, 300)
}

/// (capture time, frame): a NULL scan burst from one source past the rate
/// limit, a SYN+FIN from another, then traffic seconds later so sweeps
/// report the suppressed matches, and a last burst left for the final flush.
fn traffic() -> Vec<(u64, Vec<u8>)> {
    let null_scan = |port| frames::ipv4_tcp([192, 0, 2, 1], [198, 51, 100, 9], 40_000, port, 0);
    let syn_fin = frames::ipv4_tcp(
        [192, 0, 2, 2],
        [198, 51, 100, 9],
        40_001,
        80,
        flags::SYN | flags::FIN,
    );
    let mut traffic = Vec::new();
    let burst = u64::from(RATE_BURST) * 3;
    for n in 0..burst {
        traffic.push((START_NS + n * MS, null_scan(1_000 + n as u16)));
    }
    traffic.push((START_NS + 50 * MS, syn_fin.clone()));
    let later = START_NS + 3 * RATE_WINDOW_NS;
    traffic.push((later, syn_fin));
    for n in 0..burst {
        traffic.push((later + (n + 1) * MS, null_scan(2_000 + n as u16)));
    }
    traffic
}

fn lines_through_replay(rules: &CompiledRules, traffic: &[(u64, Vec<u8>)]) -> Vec<Alert> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    let mut writer = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
    for (time_ns, frame) in traffic {
        let packet = PcapPacket::new(Duration::from_nanos(*time_ns), frame.len() as u32, frame);
        writer.write_packet(&packet).unwrap();
    }
    drop(writer);
    let options = ReplayOptions {
        packet_bytes: PACKET_BYTES,
        community_id_seed: 0,
    };
    let mut lines = Vec::new();
    replay_with(&path, rules, options, &mut |alert: &Alert| {
        lines.push(alert.clone());
        Ok(())
    })
    .unwrap();
    lines
}

/// The records the kernel program would send for `traffic`, through the
/// live engine, its sweeps on the same one-second timer.
async fn lines_through_run(rules: &CompiledRules, traffic: &[(u64, Vec<u8>)]) -> Vec<Alert> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.json");
    let sinks = LiveSinks {
        json: Some(JsonHandle::spawn(
            JsonSink::open(JsonTarget::File(path.clone())).unwrap(),
            json_sink::DEFAULT_CAPACITY,
        )),
        syslog: None,
        redis: None,
    };
    // Offset 0: the records' times are taken as wall-clock time, as the
    // capture's are.
    let mut engine = Engine::new(
        Clock::with_offset(0),
        &["eq0".to_owned()],
        0,
        sinks,
        SensorMode::Ids,
        DropPolicy::default(),
    );
    engine.pipeline.learn_rules(rules);
    let tables = MemoryTables {
        rules,
        drop_mode: false,
    };
    let mut state = MemoryState::new();
    let entries = |state: &MemoryState| -> Vec<RateEntry> {
        state
            .rate_states()
            .map(|(key, state)| RateEntry {
                sig_id: key.sig_id,
                src: key.addr,
                cpu: 0,
                state: *state,
            })
            .collect()
    };
    let mut last_sweep = None;
    for (now_ns, frame) in traffic {
        let last = *last_sweep.get_or_insert(*now_ns);
        if now_ns - last >= RATE_WINDOW_NS {
            last_sweep = Some(*now_ns);
            engine.sweep(entries(&state), *now_ns, false);
        }
        let meta = parse_ethernet(frame.as_slice());
        assert_ne!(meta.ip_version, IP_VERSION_NONE);
        let mut records = Vec::new();
        process(
            &meta,
            *now_ns,
            &tables,
            &mut state,
            &mut |head: &AlertHead| {
                records.push(head.record(&meta, *now_ns, 0));
            },
        );
        for record in records {
            let shown = frame.len().min(usize::from(PACKET_BYTES));
            engine.on_record(AlertSample {
                record,
                frame: frame[..shown].to_vec(),
            });
        }
    }
    engine.sweep(entries(&state), 0, true);
    let json = engine.sinks.json.take().unwrap().close().await;
    assert_eq!(json.dropped_queue_full, 0);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| Alert::from_json(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_same_records_give_the_same_lines_through_run_and_replay() {
    let rules = flag_rules();
    let traffic = traffic();
    let replayed = lines_through_replay(&rules, &traffic);
    let live = lines_through_run(&rules, &traffic).await;

    // Each command adds its own field: replay the packet number, run the
    // interface. Everything else must be the same, line by line.
    assert!(
        live.iter()
            .all(|alert| alert.in_iface.as_deref() == Some("eq0"))
    );
    assert!(replayed.iter().all(|alert| alert.pcap_cnt.is_some()));
    let strip = |alerts: Vec<Alert>| -> Vec<Alert> {
        alerts
            .into_iter()
            .map(|mut alert| {
                alert.in_iface = None;
                alert.pcap_cnt = None;
                alert
            })
            .collect()
    };
    let (replayed, live) = (strip(replayed), strip(live));
    assert_eq!(replayed, live);

    // And the traffic exercised what matters: rate-limited bursts whose
    // suppressed matches come back as aggregated lines, two rules, and
    // every match accounted for.
    let null_scan_matches: u64 = live
        .iter()
        .filter(|alert| alert.alert.signature_id == NULL_SCAN)
        .map(Alert::count)
        .sum();
    assert_eq!(null_scan_matches, 6 * u64::from(RATE_BURST), "{live:#?}");
    assert!(
        live.iter().any(|alert| alert.count() > 1),
        "no aggregated line"
    );
    let rules_seen: std::collections::BTreeSet<_> =
        live.iter().map(|alert| alert.alert.signature_id).collect();
    assert!(rules_seen.len() >= 2, "{rules_seen:?}");
}
