//! The SIEM feed end to end: attacks sent through a veth pair reach a real
//! rsyslogd as RFC 5424 and RFC 3164 messages whose bodies are the alert
//! lines, and the running sensor's metrics endpoint counts them.
//!
//! The sensor runs in its own network namespace, so it reaches rsyslogd
//! through unix sockets (paths cross namespaces; loopback ports do not);
//! over TLS, rsyslogd runs in the sensor's namespace and listens on its
//! loopback.

mod support;

use std::path::Path;
use std::time::Duration;

use sensor::testing::frames::{self, flags};
use serde_json::Value;
use support::certs::TestPki;
use support::fixtures::FLAG_SCAN_RULES;
use support::netns::{Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap;
use support::rsyslog::{Options, Rsyslog, TlsServer, read_received, rsyslogd};

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

/// SYN+FIN frames from 198.51.100.N for each N: one alert line each.
fn syn_fin_from(dir: &Path, name: &str, sources: std::ops::Range<u8>) -> std::path::PathBuf {
    let frames: Vec<Vec<u8>> = sources
        .map(|last| {
            frames::ipv4_tcp(
                [198, 51, 100, last],
                [192, 0, 2, 10],
                42000,
                80,
                flags::SYN | flags::FIN,
            )
        })
        .collect();
    let path = dir.join(format!("{name}.pcap"));
    write_pcap(&path, &frames);
    path
}

/// `sensor run --syslog tls://...` against rsyslogd's gtls input in the
/// sensor's namespace: alert lines arrive as RFC 5424 bodies and are
/// counted; after an rsyslogd restart the alerts raised meanwhile arrive;
/// a sensor trusting another CA is refused, logs it, counts it on the
/// metrics endpoint and delivers nothing.
#[test]
fn alerts_reach_rsyslog_over_tls_through_a_restart_and_a_wrong_ca_is_counted() {
    let test = "alerts_reach_rsyslog_over_tls_through_a_restart_and_a_wrong_ca_is_counted";
    if !sensor::testing::bpf_available(test) {
        return;
    }
    let Some(binary) = rsyslogd(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = TestPki::create(dir);
    let bed = Testbed::new("stl");
    let options = Options {
        tls: Some(TlsServer {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
        }),
        netns: Some(bed.sensor_ns.clone()),
    };
    let mut rsyslog = Rsyslog::start_with(binary, options);
    let received = rsyslog.received_path();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, FLAG_SCAN_RULES).unwrap();
    let url = format!("tls://127.0.0.1:{}", rsyslog.tls_port);
    let start = |ca: &Path, name: &str| {
        let json = dir.join(format!("{name}.json"));
        let stderr = dir.join(format!("{name}.stderr"));
        let sensor = bed
            .sensor_run(&rules)
            .json(&json)
            .args(["--syslog", &url])
            .arg("--syslog-ca")
            .arg(ca)
            .metrics(METRICS)
            .start(None, &stderr);
        (sensor, json, stderr)
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();

    let (mut sensor, json, stderr) = start(&pki.ca, "trusting");
    bed.inject(&syn_fin_from(dir, "first", 1..3), 100);
    let arrived = wait_for(Duration::from_secs(10), || {
        read_received(&received).len() >= 2
    });
    assert!(arrived, "{}\n{}", read(&stderr), rsyslog.output());

    rsyslog.stop();
    bed.inject(&syn_fin_from(dir, "while-down", 3..5), 100);
    let raised = wait_for(Duration::from_secs(10), || {
        support::live::read_lines(&json).len() == 4
    });
    assert!(raised, "{}", read(&stderr));
    rsyslog.restart();
    let arrived = wait_for(Duration::from_secs(15), || {
        read_received(&received).len() >= 4
    });
    assert!(arrived, "{}\n{}", read(&stderr), rsyslog.output());

    let mut text = String::new();
    let counted = wait_for(Duration::from_secs(10), || {
        text = scrape(&bed, METRICS);
        metric(&text, "sensor_alert_lines_total{sink=\"syslog\"}") == Some(4)
    });
    assert!(counted, "{text}");
    assert!(
        metric(&text, "sensor_syslog_reconnects_total").is_some_and(|n| n >= 1),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sensor_syslog_tls_failures_total"),
        Some(0),
        "{text}"
    );
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", read(&stderr));

    let lines: Vec<Value> = support::live::read_lines(&json);
    let messages = read_received(&received);
    assert_eq!(messages.len(), 4, "{messages:#?}");
    for (message, line) in messages.iter().zip(&lines) {
        assert_eq!(message.input, "imtcp-tls");
        assert_eq!(message.protocol_version, "1");
        let body: Value = serde_json::from_str(&message.msg).unwrap();
        support::eve::check_alert_line(&body);
        assert_eq!(&body, line, "the syslog body is the alert line");
    }

    // A sensor that trusts another CA: refused, logged, counted, retried.
    let (mut sensor, json, stderr) = start(&pki.other_ca, "distrusting");
    bed.inject(&syn_fin_from(dir, "refused", 5..6), 100);
    let mut text = String::new();
    let refused = wait_for(Duration::from_secs(15), || {
        text = scrape(&bed, METRICS);
        metric(&text, "sensor_syslog_tls_failures_total").is_some_and(|n| n >= 2)
    });
    assert!(refused, "{text}\n{}", read(&stderr));
    assert_eq!(support::live::read_lines(&json).len(), 1);
    assert_eq!(
        metric(&text, "sensor_alert_lines_total{sink=\"syslog\"}"),
        Some(0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sensor_syslog_queue_depth"),
        Some(1),
        "{text}"
    );
    assert!(
        read(&stderr).contains("TLS handshake with 127.0.0.1"),
        "{}",
        read(&stderr)
    );
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", read(&stderr));
    assert_eq!(read_received(&received).len(), 4, "nothing more arrived");
}
