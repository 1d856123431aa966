//! The watched interface comes and goes: deleted (a driver reload, a bond
//! reconfigured), the sensor stays up, says so and counts it; recreated
//! under the same name, the sensor attaches again with the same rules and
//! alerts; down and up without deletion keeps working.

mod support;

use std::path::Path;
use std::time::Duration;

use sensor::testing::frames::{self, flags};
use support::fixtures::SYN_FIN_RULE;
use support::live::read_lines;
use support::netns::{Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap;

const METRICS: &str = "127.0.0.1:9471";

#[test]
fn a_deleted_interface_is_watched_for_and_reattached() {
    if !sensor::testing::bpf_available("a_deleted_interface_is_watched_for_and_reattached") {
        return;
    }
    let bed = Testbed::new("ifc");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let alerts = dir.path().join("alerts.json");
    let log_path = dir.path().join("sensor.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let attack = |last: u8, path: &Path| {
        let frame = frames::ipv4_tcp(
            [198, 51, 100, last],
            [192, 0, 2, 10],
            41000,
            80,
            flags::SYN | flags::FIN,
        );
        write_pcap(path, &[frame]);
        bed.inject(path, 10);
    };
    // The endpoint's figures are refreshed once a second.
    // Per interface, labelled with its name.
    let metric_becomes = |name: &str, value: u64| {
        let series = format!("{name}{{iface=\"{}\"}}", bed.sensor_if);
        wait_for(Duration::from_secs(5), || {
            metric(&scrape(&bed, METRICS), &series) == Some(value)
        })
    };
    let alerted_from = |last: u8| {
        let src = format!("198.51.100.{last}");
        wait_for(Duration::from_secs(10), || {
            read_lines(&alerts)
                .iter()
                .any(|l| l["src_ip"] == src.as_str())
        })
    };

    let mut sensor = bed
        .sensor_run(&rules)
        .json(&alerts)
        .metrics(METRICS)
        .start(None, &log_path);
    attack(1, &dir.path().join("a1.pcap"));
    assert!(alerted_from(1), "alert before anything happens:\n{}", log());

    bed.delete_link();
    assert!(
        wait_for(Duration::from_secs(10), || log()
            .contains("the watched interface disappeared")),
        "the loss is logged:\n{}",
        log()
    );
    assert!(matches!(sensor.0.try_wait(), Ok(None)), "still running");
    assert!(metric_becomes("sensor_interface_attached", 0));
    assert!(metric_becomes("sensor_interface_lost_total", 1));

    bed.add_link();
    assert!(
        wait_for(Duration::from_secs(10), || log()
            .contains("the watched interface is back")),
        "the return is logged:\n{}",
        log()
    );
    attack(2, &dir.path().join("a2.pcap"));
    assert!(
        alerted_from(2),
        "alert after the interface returned:\n{}",
        log()
    );

    bed.bounce_sensor_link();
    attack(3, &dir.path().join("a3.pcap"));
    assert!(alerted_from(3), "alert after down/up:\n{}", log());
    assert!(metric_becomes("sensor_interface_attached", 1));
    assert!(metric_becomes("sensor_interface_lost_total", 1));
    assert!(metric_becomes("sensor_interface_reattached_total", 1));

    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", log());
}
