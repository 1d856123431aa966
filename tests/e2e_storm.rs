//! An alert storm on the wire: SYN+FIN from more spoofed sources than the
//! kernel's per-source rate map holds (issue #9 item 4, issue #11 item 5).
//! Every match must reach the lines' counts — the sum of `sensor.count` of
//! rule 100001's lines equals the kernel's hit counter, live and in replay
//! — with no alert record lost and a bounded number of lines.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sensor::testing::frames::{self, ETH_IPV6, flags};
use sensor_common::tables::{ALERT_BUDGET, RATE_ENTRIES};
use serde_json::Value;
use support::live::{read_lines, replay_cli};
use support::netns::{Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap_spaced;

/// Default rule 100001: TCP SYN and FIN set.
const SYN_FIN: u64 = 100001;
/// More sources than the rate map holds.
const SOURCES: u64 = RATE_ENTRIES as u64 + 14_464;
const PPS: u32 = 40_000;
const METRICS: &str = "127.0.0.1:9471";

fn syn_fin_from(i: u64) -> Vec<u8> {
    let src = frames::v6([0x2001, 0xdb8, 5, 0, 0, 0, (i >> 16) as u16, i as u16]);
    let dst = frames::v6([0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 10]);
    let tcp = frames::tcp(40000, 80, flags::SYN | flags::FIN, 1, &[]);
    frames::ethernet(&[], ETH_IPV6, &frames::ipv6(src, dst, 64, 6, &tcp))
}

fn default_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn sum_of_counts(lines: &[Value], sig: u64) -> (u64, usize, usize) {
    let of_rule: Vec<_> = lines
        .iter()
        .filter(|l| l["alert"]["signature_id"].as_u64() == Some(sig))
        .collect();
    let sum = of_rule
        .iter()
        .map(|l| l["sensor"]["count"].as_u64().expect("sensor.count"))
        .sum();
    let storm = of_rule
        .iter()
        .filter(|l| l["sensor"]["aggregate"] == "rule")
        .count();
    (sum, of_rule.len(), storm)
}

#[test]
fn a_storm_from_more_sources_than_the_rate_map_holds_is_counted_exactly() {
    if !sensor::testing::bpf_available(
        "a_storm_from_more_sources_than_the_rate_map_holds_is_counted_exactly",
    ) {
        return;
    }
    let traffic: Vec<_> = (0..SOURCES).map(syn_fin_from).collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("storm.pcap");
    write_pcap_spaced(&pcap, &traffic, Duration::from_secs(1) / PPS);
    let alerts = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let rules = default_rules();

    let bed = Testbed::new("storm");
    let mut sensor = bed
        .sensor_run(&rules)
        .args(["--xdp-mode", "native"])
        .json(&alerts)
        .metrics(METRICS)
        .start(None, &stderr);
    let start = Instant::now();
    bed.inject(&pcap, PPS);
    let inject_time = start.elapsed();
    let series = r#"sensor_rule_hits_total{sig_id="100001",name="TCP SYN and FIN set"}"#;
    let mut scraped = String::new();
    let all_counted = wait_for(Duration::from_secs(20), || {
        scraped = scrape(&bed, METRICS);
        metric(&scraped, series) == Some(SOURCES)
    });
    assert!(
        all_counted,
        "the kernel counted {:?} of {SOURCES} matches",
        metric(&scraped, series)
    );
    assert_eq!(metric(&scraped, "sensor_perf_lost_samples_total"), Some(0));
    assert_eq!(
        metric(&scraped, "sensor_kernel_alert_output_errors_total"),
        Some(0)
    );
    let status = sensor
        .stop(Duration::from_secs(15))
        .expect("sensor exits on SIGTERM");
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "sensor exit {status:?}:\n{log}");

    let lines = read_lines(&alerts);
    let (sum, count, storm) = sum_of_counts(&lines, SYN_FIN);
    eprintln!(
        "storm: {SOURCES} matches in {:.2} s, {count} lines of rule {SYN_FIN} ({storm} storm lines), {} lines in all",
        inject_time.as_secs_f64(),
        lines.len()
    );
    assert_eq!(sum, SOURCES, "sum of sensor.count = kernel matches");
    assert!(storm > 0, "the budget ran out: storm lines expected");
    // Per second of the storm and CPU: at most the budget of per-source
    // lines, one storm record and one swept storm line (+2 s of slack for
    // windows cut by the start and the end).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let seconds = inject_time.as_secs() + 2;
    let bound = (u64::from(ALERT_BUDGET) + 2) * cpus * seconds;
    assert!(
        (count as u64) <= bound,
        "{count} lines for rule {SYN_FIN}: over the bound {bound}"
    );
    assert!(
        (count as u64) < SOURCES / 2,
        "{count} lines for {SOURCES} matches: nothing was aggregated"
    );

    // Replay: the same account.
    let replayed = replay_cli(&pcap, &rules);
    let (sum, count, storm) = sum_of_counts(&replayed, SYN_FIN);
    assert_eq!(sum, SOURCES, "replay: sum of sensor.count");
    assert!(
        storm > 0 && (count as u64) < SOURCES / 2,
        "replay: {count} lines"
    );
}
