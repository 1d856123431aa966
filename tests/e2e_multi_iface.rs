//! One `sensor run` watching two interfaces: two veth pairs into the
//! sensor's namespace, each with its own injector namespace. Each alert
//! names the interface its packet came in on, the per-interface metrics
//! count each one's packets (one interface has a high index, counted in
//! the kernel's hash map rather than its array), deleting one interface leaves the other
//! alerting, and `sensor inspect --iface` on one sees only its packets.

mod support;

use std::path::Path;
use std::time::Duration;

use sensor::testing::frames::{self, flags};
use serde_json::Value;
use support::fixtures::SYN_FIN_RULE;
use support::live::{parse_lines, read_lines};
use support::netns::{Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap;

const METRICS: &str = "127.0.0.1:9473";

/// `count` SYN+FIN frames from `src` (documentation addresses only).
fn attack(src: [u8; 4], count: usize, path: &Path) {
    let frame = frames::ipv4_tcp(src, [192, 0, 2, 10], 41000, 80, flags::SYN | flags::FIN);
    write_pcap(path, &vec![frame; count]);
}

fn lines_from<'a>(lines: &'a [Value], src: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["src_ip"] == src).collect()
}

#[test]
fn one_process_two_interfaces_each_alert_names_its_own() {
    if !sensor::testing::bpf_available("one_process_two_interfaces_each_alert_names_its_own") {
        return;
    }
    let bed = Testbed::new("mia");
    // The second interface's index is above the kernel's directly indexed
    // counters: both ways of counting an interface's packets are checked.
    let high = sensor_common::alert::IFINDEX_DIRECT + 904;
    let peer = bed.add_peer_at("mib", Some(high));
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let alerts = dir.path().join("alerts.json");
    let log_path = dir.path().join("sensor.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let series = |name: &str, iface: &str| format!("{name}{{iface=\"{iface}\"}}");
    // The endpoint's figures are refreshed once a second.
    let metric_becomes = |series: &str, value: u64| {
        wait_for(Duration::from_secs(5), || {
            metric(&scrape(&bed, METRICS), series) == Some(value)
        })
    };

    let mut sensor = bed
        .sensor_run(&rules)
        .arg("--iface")
        .arg(&peer.sensor_if)
        .json(&alerts)
        .metrics(METRICS)
        .start(None, &log_path);

    // Different counts on each side, so swapped labels cannot pass.
    let first = dir.path().join("first.pcap");
    let second = dir.path().join("second.pcap");
    attack([198, 51, 100, 1], 2, &first);
    attack([203, 0, 113, 1], 5, &second);
    bed.inject(&first, 20);
    peer.inject(&second, 20);
    // One line per packet: far below the rate limit of 5 a second.
    let complete = || {
        let lines = read_lines(&alerts);
        lines_from(&lines, "198.51.100.1").len() == 2
            && lines_from(&lines, "203.0.113.1").len() == 5
    };
    assert!(
        wait_for(Duration::from_secs(10), complete),
        "2 + 5 alert lines:\n{}\n{}",
        std::fs::read_to_string(&alerts).unwrap_or_default(),
        log()
    );
    let lines = read_lines(&alerts);
    for line in lines_from(&lines, "198.51.100.1") {
        assert_eq!(line["in_iface"], bed.sensor_if.as_str(), "{line}");
    }
    for line in lines_from(&lines, "203.0.113.1") {
        assert_eq!(line["in_iface"], peer.sensor_if.as_str(), "{line}");
    }

    let packets = "sensor_interface_packets_total";
    assert!(
        metric_becomes(&series(packets, &bed.sensor_if), 2),
        "{}",
        scrape(&bed, METRICS)
    );
    assert!(
        metric_becomes(&series(packets, &peer.sensor_if), 5),
        "{}",
        scrape(&bed, METRICS)
    );
    assert!(metric_becomes("sensor_packets_total", 7));
    for iface in [&bed.sensor_if, &peer.sensor_if] {
        assert!(metric_becomes(
            &series("sensor_interface_attached", iface),
            1
        ));
        assert!(metric_becomes(
            &series("sensor_interface_lost_total", iface),
            0
        ));
    }

    // The peer's interface goes: the other keeps alerting.
    peer.delete_link();
    assert!(
        wait_for(Duration::from_secs(10), || log()
            .contains("the watched interface disappeared")),
        "the loss is logged:\n{}",
        log()
    );
    assert!(matches!(sensor.0.try_wait(), Ok(None)), "still running");
    let attached = series("sensor_interface_attached", &peer.sensor_if);
    assert!(metric_becomes(&attached, 0), "{}", scrape(&bed, METRICS));
    assert!(metric_becomes(
        &series("sensor_interface_lost_total", &peer.sensor_if),
        1
    ));
    // Its count survives its loss.
    assert!(metric_becomes(&series(packets, &peer.sensor_if), 5));
    assert!(metric_becomes(
        &series("sensor_interface_attached", &bed.sensor_if),
        1
    ));
    assert!(metric_becomes(
        &series("sensor_interface_lost_total", &bed.sensor_if),
        0
    ));

    let third = dir.path().join("third.pcap");
    attack([198, 51, 100, 2], 1, &third);
    bed.inject(&third, 20);
    assert!(
        wait_for(Duration::from_secs(10), || {
            lines_from(&read_lines(&alerts), "198.51.100.2").len() == 1
        }),
        "the remaining interface still alerts:\n{}",
        log()
    );
    let lines = read_lines(&alerts);
    assert_eq!(
        lines_from(&lines, "198.51.100.2")[0]["in_iface"],
        bed.sensor_if.as_str()
    );
    assert!(metric_becomes(&series(packets, &bed.sensor_if), 3));

    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", log());
}

#[test]
fn inspect_on_one_of_two_interfaces_sees_only_its_packets() {
    if !sensor::testing::bpf_available("inspect_on_one_of_two_interfaces_sees_only_its_packets") {
        return;
    }
    let bed = Testbed::new("mic");
    let peer = bed.add_peer("mid");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let alerts = dir.path().join("alerts.json");
    let run_log = dir.path().join("run.log");
    let mut run = bed
        .sensor_run(&rules)
        .arg("--iface")
        .arg(&peer.sensor_if)
        .json(&alerts)
        .start(None, &run_log);

    for (name, iface, own_src, other_src) in [
        ("peer", &peer.sensor_if, "203.0.113.5", "198.51.100.5"),
        ("bed", &bed.sensor_if, "198.51.100.6", "203.0.113.6"),
    ] {
        let stdout = dir.path().join(format!("{name}.stdout"));
        let stderr = dir.path().join(format!("{name}.stderr"));
        let mut inspect = bed
            .sensor_inspect()
            .on_iface(iface)
            .arg("--json")
            .start(Some(&stdout), &stderr);
        let stderr_text = || std::fs::read_to_string(&stderr).unwrap_or_default();
        assert!(
            stderr_text().contains("shared with `sensor run`"),
            "joined the running sensor: {}",
            stderr_text()
        );
        let to_bed = dir.path().join(format!("{name}-bed.pcap"));
        let to_peer = dir.path().join(format!("{name}-peer.pcap"));
        let (bed_src, peer_src) = if iface == &peer.sensor_if {
            (other_src, own_src)
        } else {
            (own_src, other_src)
        };
        let addr = |text: &str| -> [u8; 4] {
            let ip: std::net::Ipv4Addr = text.parse().unwrap();
            ip.octets()
        };
        attack(addr(bed_src), 3, &to_bed);
        attack(addr(peer_src), 3, &to_peer);
        bed.inject(&to_bed, 20);
        peer.inject(&to_peer, 20);
        let own = || {
            let text = std::fs::read_to_string(&stdout).unwrap_or_default();
            lines_from(&parse_lines(&text), own_src).len()
        };
        assert!(
            wait_for(Duration::from_secs(10), || own() == 3),
            "{name}: its own 3 packets:\n{}",
            stderr_text()
        );
        // The other interface's packets were sent first or alongside; the
        // run's alerts show they arrived, so none can be on their way still.
        assert!(
            wait_for(Duration::from_secs(10), || {
                lines_from(&read_lines(&alerts), other_src).len() == 3
            }),
            "{name}: the other interface's packets reached the sensor"
        );
        let status = inspect.stop(Duration::from_secs(15)).expect("exits");
        assert!(status.success(), "{}", stderr_text());
        let text = std::fs::read_to_string(&stdout).unwrap();
        let lines = parse_lines(&text);
        assert!(
            lines_from(&lines, other_src).is_empty(),
            "{name}: no packet of the other interface:\n{text}"
        );
        assert!(
            lines.iter().all(|l| l["iface"] == iface.as_str()),
            "{name}: every line names its interface:\n{text}"
        );
    }

    let status = run.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success());
}
