//! The syslog sink against a real rsyslogd on loopback.
//!
//! Each test starts its own `rsyslogd -n` (imtcp, imudp and two imuxsock
//! sockets, on free ports and paths in a temporary folder) that writes every
//! `sensor` message it parses as one line of header fields followed by the
//! raw MSG. The tests check that each line parses back to the alert that was
//! sent, with the expected PRI, APP-NAME, PROCID, MSGID, HOSTNAME and time,
//! for RFC 5424 and RFC 3164 over udp, tcp and unix sockets; and that alerts
//! sent while the peer is down arrive once it is back, or are counted as
//! dropped when they exceed the queue bound.
//!
//! Without rsyslogd the tests print SKIP and pass, except with CI=true.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use sensor::alert::{Alert, CapturedPacket, unix_ns_to_datetime};
use sensor::rules::RuleMeta;
use sensor::settings::{Severity, SyslogFormat};
use sensor::sinks::syslog::{
    HostPort, SyslogHandle, SyslogSink, SyslogStats, SyslogTarget, machine_hostname,
};
use sensor_common::alert::{AlertRecord, outcome};
use sensor_common::packet::{PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, flag, tcp};
use time::OffsetDateTime;

mod support;

use support::rsyslog::*;

// ---------------------------------------------------------------------------
// Alerts

const CATEGORIES: [&str; 5] = ["tcp_flags", "ttl", "fragment", "syn_flood", "header"];
const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

/// `count` distinct alerts (told apart by `count` = first_count + i) with
/// every severity and category, IPv4 and IPv6, and names that need care.
fn alerts(first_count: u64, count: usize) -> Vec<Alert> {
    let now_ns = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    (0..count)
        .map(|i| {
            let rule = RuleMeta {
                id: 100_000 + i as u32,
                gid: 1,
                rev: 1 + i as u32 % 3,
                name: match i % 3 {
                    0 => "TCP SYN and FIN set".to_owned(),
                    1 => r#"pipe | "quoted" \ back"#.to_owned(),
                    _ => "Überlappende Fragmente – RFC 1858".to_owned(),
                },
                severity: SEVERITIES[i % SEVERITIES.len()],
                category: CATEGORIES[i % CATEGORIES.len()],
                drop: false,
                origin: "test.yaml:1".to_owned(),
            };
            let mut packet = PacketMeta {
                frame_len: 60 + i as u32,
                ip_id: 1234,
                src_port: 40_000 + i as u16,
                dst_port: 80,
                ttl: 64,
                ..PacketMeta::default()
            };
            if i % 2 == 0 {
                packet.ip_version = 4;
                packet.proto = PROTO_TCP;
                packet.tcp_flags = tcp::SYN | tcp::FIN;
                packet.flags = flag::HAS_PORTS | flag::HAS_TCP_FLAGS;
                packet.src_addr[..4].copy_from_slice(&[10, 1, 2, i as u8]);
                packet.dst_addr[..4].copy_from_slice(&[192, 0, 2, 10]);
            } else {
                packet.ip_version = 6;
                packet.proto = if i % 4 == 1 { PROTO_UDP } else { PROTO_ICMPV6 };
                packet.flags = if packet.proto == PROTO_UDP {
                    flag::HAS_PORTS
                } else {
                    0
                };
                let src: Ipv6Addr = format!("2001:db8::{i:x}").parse().unwrap();
                packet.src_addr = src.octets();
                packet.dst_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
            }
            let record = AlertRecord {
                sig_id: rule.id,
                action: if i % 5 == 4 {
                    outcome::BLOCKED
                } else {
                    outcome::ALLOWED
                },
                packet,
                ..AlertRecord::default()
            };
            // The JSON carries microseconds; so must the alert to compare.
            let timestamp = unix_ns_to_datetime(now_ns / 1_000 * 1_000 + i as u64 * 1_000);
            let frame = CapturedPacket::ethernet(&[i as u8; 60]);
            Alert::new(&record, &frame, &rule, first_count + i as u64, timestamp, 0)
                .with_iface("eth0")
        })
        .collect()
}

/// Checks every received line against the alert whose JSON it carries, and
/// that the lines are exactly `sent` (same count, none twice, none missing).
/// What rsyslogd should report about each message besides its MSG.
struct Expected<'a> {
    format: SyslogFormat,
    input: &'a str,
    hostname: &'a str,
    /// false where rsyslogd stamps its own receive time (stock imuxsock).
    time_from_header: bool,
}

fn assert_received_exactly(received: &[Received], sent: &[Alert], expected: &Expected) {
    let mut received_json: Vec<&str> = received.iter().map(|r| r.msg.as_str()).collect();
    let mut sent_json: Vec<String> = sent.iter().map(Alert::to_json_line).collect();
    received_json.sort_unstable();
    sent_json.sort_unstable();
    assert_eq!(
        received_json, sent_json,
        "received alert lines differ from those sent"
    );

    let pid = std::process::id().to_string();
    for line in received {
        support::eve::check_alert_text(&line.msg);
        let alert = Alert::from_json(&line.msg)
            .unwrap_or_else(|err| panic!("MSG is not an alert line ({err}): {}", line.msg));
        assert!(sent.contains(&alert), "{alert:?} was never sent");
        let context = format!("{line:?}");
        assert_eq!(line.input, expected.input, "{context}");
        assert_eq!(line.facility, 16, "local0: {context}");
        // JSON severity 1..4 (critical..low) is syslog 2..5 (crit..notice).
        assert_eq!(line.severity, alert.alert.severity + 1, "{context}");
        assert_eq!(line.app_name, "sensor", "{context}");
        assert_eq!(line.procid, pid, "{context}");
        assert_eq!(line.hostname, expected.hostname, "{context}");
        match expected.format {
            SyslogFormat::Rfc5424 => {
                assert_eq!(line.protocol_version, "1", "{context}");
                assert_eq!(line.msgid, alert.alert.category, "{context}");
                assert_eq!(line.structured_data, "-", "{context}");
                if expected.time_from_header {
                    assert_eq!(line.time_reported, alert.timestamp, "{context}");
                }
            }
            SyslogFormat::Rfc3164 => {
                assert_eq!(line.protocol_version, "0", "{context}");
                // RFC 3164 times have whole seconds (and no year).
                let whole_seconds = alert.timestamp.replace_nanosecond(0).unwrap();
                if expected.time_from_header {
                    assert_eq!(line.time_reported, whole_seconds, "{context}");
                }
            }
        }
    }
}

/// Polls the sink's counters until `done` holds (bounded by [`WAIT`]).
async fn wait_for_stats(handle: &SyslogHandle, done: impl Fn(&SyslogStats) -> bool) -> SyslogStats {
    let started = Instant::now();
    loop {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        assert!(started.elapsed() < WAIT, "still {stats:?} after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn localhost(port: u16) -> HostPort {
    HostPort {
        host: "127.0.0.1".to_owned(),
        port,
    }
}

async fn close(handle: SyslogHandle) -> SyslogStats {
    handle.close(WAIT).await
}

// ---------------------------------------------------------------------------
// Formats and transports

enum Transport {
    Udp,
    Tcp,
    /// The imuxsock set up to parse what the sink sends as is.
    TunedUnix,
    /// imuxsock with rsyslog's defaults (a stock `/dev/log`).
    StockUnix,
}

async fn send_and_receive(test: &str, format: SyslogFormat, transport: Transport) {
    let Some(binary) = rsyslogd(test) else {
        return;
    };
    let rsyslog = Rsyslog::start(binary);
    let (target, input) = match transport {
        Transport::Udp => (SyslogTarget::Udp(localhost(rsyslog.udp_port)), "imudp"),
        Transport::Tcp => (SyslogTarget::Tcp(localhost(rsyslog.tcp_port)), "imtcp"),
        Transport::TunedUnix => (SyslogTarget::Unix(rsyslog.tuned_socket()), "imuxsock"),
        Transport::StockUnix => (SyslogTarget::Unix(rsyslog.stock_socket()), "imuxsock"),
    };
    let sent = alerts(1, 12);
    let handle = SyslogSink::spawn(target, format, 100);
    for alert in &sent {
        assert!(handle.send(alert));
    }
    let received = rsyslog.wait_for_lines(sent.len()).await;
    let stats = close(handle).await;
    assert_eq!(
        (stats.sent, stats.dropped(), stats.queued),
        (12, 0, 0),
        "{stats:?}"
    );
    // The stock listener names the local host and stamps its receive time
    // itself; elsewhere both come from the message header.
    let expected = Expected {
        format,
        input,
        hostname: &machine_hostname().unwrap(),
        time_from_header: !matches!(transport, Transport::StockUnix),
    };
    assert_received_exactly(&received, &sent, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_udp() {
    send_and_receive("rfc5424_over_udp", SyslogFormat::Rfc5424, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_tcp() {
    send_and_receive("rfc5424_over_tcp", SyslogFormat::Rfc5424, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_unix() {
    send_and_receive(
        "rfc5424_over_unix",
        SyslogFormat::Rfc5424,
        Transport::TunedUnix,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_over_udp() {
    send_and_receive("rfc3164_over_udp", SyslogFormat::Rfc3164, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_over_tcp() {
    send_and_receive("rfc3164_over_tcp", SyslogFormat::Rfc3164, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_over_unix() {
    send_and_receive(
        "rfc3164_over_unix",
        SyslogFormat::Rfc3164,
        Transport::TunedUnix,
    )
    .await;
}

/// RFC 3164 on a local socket leaves the host name out, as syslog(3) does,
/// so a default `/dev/log` listener reads `sensor[PID]` as the tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_over_a_stock_dev_log_listener() {
    send_and_receive(
        "rfc3164_over_a_stock_dev_log_listener",
        SyslogFormat::Rfc3164,
        Transport::StockUnix,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Peer down

/// Alerts sent while rsyslogd is down arrive once it is back; past the
/// queue bound they are counted as dropped, and every alert is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_peer_restart_loses_nothing_and_counts_overflow() {
    let Some(binary) = rsyslogd("tcp_peer_restart_loses_nothing_and_counts_overflow") else {
        return;
    };
    let mut rsyslog = Rsyslog::start(binary);
    let target = SyslogTarget::Tcp(localhost(rsyslog.tcp_port));
    let hostname = machine_hostname().unwrap();
    let expected_lines = Expected {
        format: SyslogFormat::Rfc5424,
        input: "imtcp",
        hostname: &hostname,
        time_from_header: true,
    };

    // Phase 1: default capacity; everything sent while down is delivered.
    let handle = SyslogSink::spawn(target.clone(), SyslogFormat::Rfc5424, 10_000);
    let before = alerts(1, 5);
    for alert in &before {
        assert!(handle.send(alert));
    }
    rsyslog.wait_for_lines(before.len()).await;

    rsyslog.stop();
    let while_down = alerts(101, 40);
    for alert in &while_down {
        assert!(handle.send(alert), "within the bound, nothing is refused");
    }
    // The sink finds the peer gone and fails to reconnect.
    let stats = wait_for_stats(&handle, |stats| stats.connect_errors >= 2).await;
    assert_eq!(stats.queued, 40, "{stats:?}");
    assert_eq!(stats.sent, 5, "{stats:?}");

    rsyslog.restart();
    let everything: Vec<Alert> = before.iter().chain(&while_down).cloned().collect();
    let received = rsyslog.wait_for_lines(everything.len()).await;
    assert_received_exactly(&received, &everything, &expected_lines);
    let stats = close(handle).await;
    assert_eq!(
        (stats.sent, stats.dropped(), stats.queued),
        (45, 0, 0),
        "{stats:?}"
    );
    assert!(stats.reconnects >= 1, "{stats:?}");

    // Phase 2: capacity 4; a connection is open when the peer goes away.
    let handle = SyslogSink::spawn(target, SyslogFormat::Rfc5424, 4);
    let first = alerts(1001, 1);
    assert!(handle.send(&first[0]));
    rsyslog.wait_for_lines(everything.len() + 1).await;

    rsyslog.stop();
    let burst = alerts(2001, 10);
    let accepted: Vec<Alert> = burst
        .iter()
        .filter(|alert| handle.send(alert))
        .cloned()
        .collect();
    assert_eq!(
        accepted,
        burst[..4],
        "the first 4 fit, the rest are refused"
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.queued, stats.dropped_queue_full),
        (4, 6),
        "{stats:?}"
    );

    rsyslog.restart();
    let expected: Vec<Alert> = everything
        .iter()
        .chain(&first)
        .chain(&accepted)
        .cloned()
        .collect();
    let received = rsyslog.wait_for_lines(expected.len()).await;
    assert_received_exactly(&received, &expected, &expected_lines);
    let stats = close(handle).await;
    assert_eq!(stats.sent, 1 + 4, "{stats:?}");
    assert_eq!(stats.dropped_queue_full, 6, "{stats:?}");
    assert_eq!(
        stats.sent + stats.dropped(),
        1 + burst.len() as u64,
        "every alert is either delivered or counted as dropped: {stats:?}"
    );
}

/// The unix socket sink resends after the listener is replaced (a daemon
/// restart makes a new socket at the same path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_listener_restart_loses_nothing() {
    let Some(binary) = rsyslogd("unix_listener_restart_loses_nothing") else {
        return;
    };
    let mut rsyslog = Rsyslog::start(binary);
    let handle = SyslogSink::spawn(
        SyslogTarget::Unix(rsyslog.tuned_socket()),
        SyslogFormat::Rfc5424,
        100,
    );
    let before = alerts(1, 3);
    for alert in &before {
        assert!(handle.send(alert));
    }
    rsyslog.wait_for_lines(before.len()).await;
    rsyslog.stop();
    let while_down = alerts(101, 5);
    for alert in &while_down {
        assert!(handle.send(alert));
    }
    wait_for_stats(&handle, |stats| {
        stats.write_errors + stats.connect_errors >= 1
    })
    .await;
    rsyslog.restart();
    let everything: Vec<Alert> = before.iter().chain(&while_down).cloned().collect();
    let received = rsyslog.wait_for_lines(everything.len()).await;
    let expected = Expected {
        format: SyslogFormat::Rfc5424,
        input: "imuxsock",
        hostname: &machine_hostname().unwrap(),
        time_from_header: true,
    };
    assert_received_exactly(&received, &everything, &expected);
    let stats = close(handle).await;
    assert_eq!((stats.sent, stats.dropped()), (8, 0), "{stats:?}");
}
