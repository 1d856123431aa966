//! The SIEM feed end to end: attacks sent through a veth pair reach a real
//! rsyslogd as RFC 5424 and RFC 3164 messages whose bodies are the alert
//! lines, and the running sensor's metrics endpoint counts them.
//!
//! The sensor runs in its own network namespace, so it reaches rsyslogd
//! through unix sockets (paths cross namespaces; loopback ports do not).

mod support;

use std::time::Duration;

use sensor::testing::frames::{self, flags};
use serde_json::Value;
use support::fixtures::FLAG_SCAN_RULES;
use support::netns::{Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap;
use support::rsyslog::{Rsyslog, read_received, rsyslogd};

const METRICS: &str = "127.0.0.1:9464";

fn attacks() -> Vec<Vec<u8>> {
    vec![
        frames::ipv4_tcp(
            [198, 51, 100, 7],
            [192, 0, 2, 10],
            41000,
            80,
            flags::SYN | flags::FIN,
        ),
        frames::ipv4_tcp([198, 51, 100, 8], [192, 0, 2, 10], 41001, 443, 0),
        frames::ipv4_tcp([203, 0, 113, 5], [192, 0, 2, 10], 50000, 80, flags::SYN),
    ]
}

fn run_case(format: &str) {
    let test = format!("siem_{format}");
    let Some(binary) = rsyslogd(&test) else {
        return;
    };
    let rsyslog = Rsyslog::start(binary);
    // RFC 5424 needs the listener that parses it; RFC 3164 goes to a stock one.
    let socket = if format == "rfc5424" {
        rsyslog.tuned_socket()
    } else {
        rsyslog.stock_socket()
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, FLAG_SCAN_RULES).unwrap();
    let json = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let pcap = dir.path().join("attacks.pcap");
    write_pcap(&pcap, &attacks());

    let bed = Testbed::new(if format == "rfc5424" { "s54" } else { "s31" });
    let syslog_url = format!("unix://{}", socket.display());
    let mut sensor = bed
        .sensor_run(&rules)
        .json(&json)
        .arg("--syslog")
        .arg(&syslog_url)
        .arg("--syslog-format")
        .arg(format)
        .metrics(METRICS)
        .start(None, &stderr);
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    bed.inject(&pcap, 100);

    let received = rsyslog.received_path();
    assert!(
        wait_for(Duration::from_secs(10), || read_received(&received).len()
            >= 2),
        "rsyslog got {} messages:\n{}\n{}",
        read_received(&received).len(),
        log(),
        rsyslog.output()
    );
    // The metrics snapshot is refreshed once a second.
    let mut text = String::new();
    let counted = wait_for(Duration::from_secs(10), || {
        text = scrape(&bed, METRICS);
        metric(&text, "sensor_alert_lines_total{sink=\"syslog\"}") == Some(2)
    });
    assert!(counted, "metrics:\n{text}");
    assert!(
        metric(&text, "sensor_packets_total").unwrap() >= 3,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sensor_rule_hits_total{sig_id=\"100001\",name=\"TCP SYN and FIN set\"}"
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sensor_alert_lines_total{sink=\"json\"}"),
        Some(2),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sensor_perf_lost_samples_total"),
        Some(0),
        "{text}"
    );

    let status = sensor
        .stop(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{}", log());

    let lines: Vec<Value> = support::live::read_lines(&json);
    let messages = read_received(&received);
    assert_eq!(messages.len(), 2, "{messages:#?}");
    for (message, line) in messages.iter().zip(&lines) {
        let body: Value =
            serde_json::from_str(&message.msg).unwrap_or_else(|e| panic!("{e}: {}", message.msg));
        support::eve::check_alert_line(&body);
        assert_eq!(&body, line, "the syslog body is the alert line");
        assert_eq!(message.app_name, "sensor");
        assert_eq!(message.facility, 16, "local0");
        let expected_severity = match line["alert"]["severity"].as_u64().unwrap() {
            2 => 3, // high → err
            3 => 4, // medium → warning
            other => panic!("unexpected severity {other}"),
        };
        assert_eq!(message.severity, expected_severity);
        if format == "rfc5424" {
            assert_eq!(message.protocol_version, "1");
            assert_eq!(message.msgid, "tcp_flags");
        }
    }
    let sids: Vec<u64> = lines
        .iter()
        .map(|l| l["alert"]["signature_id"].as_u64().unwrap())
        .collect();
    assert_eq!(sids, [100001, 100002]);
}

#[test]
fn alerts_reach_rsyslog_as_rfc5424_and_metrics_count_them() {
    if !sensor::testing::bpf_available("alerts_reach_rsyslog_as_rfc5424_and_metrics_count_them") {
        return;
    }
    run_case("rfc5424");
}

#[test]
fn alerts_reach_rsyslog_as_rfc3164() {
    if !sensor::testing::bpf_available("alerts_reach_rsyslog_as_rfc3164") {
        return;
    }
    run_case("rfc3164");
}
