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
//! Over TLS (RFC 5425, rsyslog's gtls driver, certificates made by the test
//! with openssl): delivery, the exact octet-counted bytes (read by a rustls
//! server in the test), a server the CA does not vouch for refused and
//! counted, a restart recovered, client certificates accepted and refused;
//! and the binary's refusals of bad TLS usage (exit 2).
//!
//! Without rsyslogd the tests print SKIP and pass, except with CI=true.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sensor::alert::{Alert, CapturedPacket, unix_ns_to_datetime};
use sensor::rules::RuleMeta;
use sensor::settings::{Severity, SyslogFormat};
use sensor::sinks::syslog::{
    HostPort, SyslogHandle, SyslogOptions, SyslogSink, SyslogStats, SyslogTarget, machine_hostname,
};
use sensor::sinks::tls::{Roles, TlsFiles, client_config};
use sensor_common::alert::{AlertRecord, outcome};
use sensor_common::packet::{PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, flag, tcp};
use time::OffsetDateTime;

mod support;

use support::certs::TestPki;
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

// ---------------------------------------------------------------------------
// TLS (RFC 5425)

fn roles() -> Roles {
    Roles {
        ca: "--syslog-ca".into(),
        cert: "--syslog-cert".into(),
        key: "--syslog-key".into(),
    }
}

/// A TLS sink to `port` trusting `ca`, with an optional client certificate.
fn tls_sink(port: u16, ca: &Path, client: Option<(&Path, &Path)>, capacity: usize) -> SyslogHandle {
    let files = TlsFiles {
        ca: ca.to_owned(),
        client: client.map(|(cert, key)| (cert.to_owned(), key.to_owned())),
    };
    let options = SyslogOptions {
        capacity,
        tls: Some(client_config(&files, &roles()).expect("the test's files are usable")),
        ..SyslogOptions::default()
    };
    SyslogSink::spawn_with(SyslogTarget::Tls(localhost(port)), options)
}

/// rsyslogd with its two TLS inputs, and the certificates they use.
fn tls_rsyslog(test: &str) -> Option<(Rsyslog, TestPki, tempfile::TempDir)> {
    let binary = rsyslogd(test)?;
    let certs_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(certs_dir.path());
    let options = Options {
        tls: Some(TlsServer {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
        }),
        netns: None,
    };
    Some((Rsyslog::start_with(binary, options), pki, certs_dir))
}

fn expected_over<'a>(input: &'a str, hostname: &'a str) -> Expected<'a> {
    Expected {
        format: SyslogFormat::Rfc5424,
        input,
        hostname,
        time_from_header: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_tls_arrives_intact() {
    let Some((rsyslog, pki, _certs)) = tls_rsyslog("rfc5424_over_tls_arrives_intact") else {
        return;
    };
    let sent = alerts(1, 12);
    let handle = tls_sink(rsyslog.tls_port, &pki.ca, None, 100);
    for alert in &sent {
        assert!(handle.send(alert));
    }
    let received = rsyslog.wait_for_lines(sent.len()).await;
    let stats = close(handle).await;
    assert_eq!(
        (
            stats.sent,
            stats.dropped(),
            stats.queued,
            stats.tls_failures
        ),
        (12, 0, 0, 0),
        "{stats:?}"
    );
    let hostname = machine_hostname().unwrap();
    assert_received_exactly(&received, &sent, &expected_over("imtcp-tls", &hostname));
}

/// The bytes inside the TLS stream are exactly `LEN SP MSG` per message
/// (RFC 5425 section 4.3), read by a rustls server in the test; and the
/// sink ends with close_notify, so the server reads a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_stream_is_octet_counted_rfc5424() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(dir.path());
    let chain = CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = acceptor.accept(tcp).await.unwrap();
        let mut bytes = Vec::new();
        // Ends at the sink's close_notify; an abrupt end would be an error.
        stream.read_to_end(&mut bytes).await.map(|_| bytes)
    });

    let sent = alerts(1, 3);
    let handle = tls_sink(port, &pki.ca, None, 10);
    for alert in &sent {
        assert!(handle.send(alert));
    }
    let expected: Vec<u8> = sent
        .iter()
        .flat_map(|alert| {
            let message = handle.formatter().format(alert);
            assert!(message.starts_with("<"), "{message}");
            format!("{} {message}", message.len()).into_bytes()
        })
        .collect();
    let stats = close(handle).await;
    assert_eq!((stats.sent, stats.dropped()), (3, 0), "{stats:?}");
    let bytes = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the server reads within the wait")
        .unwrap()
        .expect("a clean TLS close");
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

/// A server whose certificate does not chain to `--syslog-ca` is refused:
/// every attempt is a counted TLS failure, retried with backoff, and
/// nothing reaches it; the alerts stay queued (or are counted at shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_outside_the_ca_is_refused_and_counted() {
    let Some((rsyslog, pki, _certs)) =
        tls_rsyslog("tls_server_outside_the_ca_is_refused_and_counted")
    else {
        return;
    };
    let handle = tls_sink(rsyslog.tls_port, &pki.other_ca, None, 100);
    for alert in &alerts(1, 3) {
        assert!(handle.send(alert));
    }
    let stats = wait_for_stats(&handle, |stats| stats.tls_failures >= 3).await;
    assert_eq!((stats.sent, stats.queued), (0, 3), "{stats:?}");
    assert!(stats.connect_errors >= stats.tls_failures, "{stats:?}");
    let stats = handle.close(Duration::from_millis(100)).await;
    assert_eq!((stats.sent, stats.dropped_on_close), (0, 3), "{stats:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        read_received(&rsyslog.received_path()).is_empty(),
        "nothing may reach a server the CA does not vouch for"
    );
}

/// Alerts sent while rsyslogd is down arrive over a new TLS connection
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_restart_loses_nothing() {
    let Some((mut rsyslog, pki, _certs)) = tls_rsyslog("tls_peer_restart_loses_nothing") else {
        return;
    };
    let handle = tls_sink(rsyslog.tls_port, &pki.ca, None, 100);
    let before = alerts(1, 5);
    for alert in &before {
        assert!(handle.send(alert));
    }
    rsyslog.wait_for_lines(before.len()).await;

    rsyslog.stop();
    let while_down = alerts(101, 10);
    for alert in &while_down {
        assert!(handle.send(alert));
    }
    let stats = wait_for_stats(&handle, |stats| stats.connect_errors >= 2).await;
    assert_eq!((stats.sent, stats.queued), (5, 10), "{stats:?}");

    rsyslog.restart();
    let everything: Vec<Alert> = before.iter().chain(&while_down).cloned().collect();
    let received = rsyslog.wait_for_lines(everything.len()).await;
    let hostname = machine_hostname().unwrap();
    assert_received_exactly(
        &received,
        &everything,
        &expected_over("imtcp-tls", &hostname),
    );
    let stats = close(handle).await;
    assert_eq!((stats.sent, stats.dropped()), (15, 0), "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(
        stats.tls_failures, 0,
        "a refused connection is not a TLS failure"
    );
}

/// An input that requires client certificates takes the sensor's when the
/// test CA signed it, and refuses none or a stranger's (counted, nothing
/// delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_accepted_and_refused() {
    let Some((rsyslog, pki, _certs)) = tls_rsyslog("tls_client_certificates_accepted_and_refused")
    else {
        return;
    };
    let sent = alerts(1, 4);
    let handle = tls_sink(
        rsyslog.mtls_port,
        &pki.ca,
        Some((&pki.client_cert, &pki.client_key)),
        100,
    );
    for alert in &sent {
        assert!(handle.send(alert));
    }
    let received = rsyslog.wait_for_lines(sent.len()).await;
    let stats = close(handle).await;
    assert_eq!((stats.sent, stats.tls_failures), (4, 0), "{stats:?}");
    let hostname = machine_hostname().unwrap();
    assert_received_exactly(&received, &sent, &expected_over("imtcp-mtls", &hostname));

    let stranger = (pki.stranger_cert.as_path(), pki.stranger_key.as_path());
    for client in [None, Some(stranger)] {
        let handle = tls_sink(rsyslog.mtls_port, &pki.ca, client, 100);
        for alert in &alerts(1001, 2) {
            assert!(handle.send(alert));
        }
        let stats = wait_for_stats(&handle, |stats| stats.tls_failures >= 2).await;
        assert_eq!((stats.sent, stats.queued), (0, 2), "{client:?}: {stats:?}");
        handle.close(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        read_received(&rsyslog.received_path()).len(),
        sent.len(),
        "the refused clients delivered nothing"
    );
}

// ---------------------------------------------------------------------------
// Bad TLS usage: exit 2 with a message, before anything is attached

/// Runs `sensor run` (rules given, an interface that is never reached) and
/// returns its exit code and stderr.
fn run_sensor(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: 1\n    name: x\n    severity: low\n    match: { tcp_flags: { set: [SYN, FIN] } }\n",
    )
    .unwrap();
    let out = support::netns::sensor_run_unattached(&rules)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_tls_usage_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = TestPki::create(dir);
    let path = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let missing = dir.join("missing.pem").display().to_string();
    let not_pem = dir.join("rules.yaml").display().to_string();
    let url = "tls://127.0.0.1:6514";
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--syslog".into(), url.into()],
            "needs the CA certificates",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                missing.clone(),
            ],
            "cannot read --syslog-ca",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                not_pem.clone(),
            ],
            "no PEM `CERTIFICATE` block",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                path(&pki.ca),
                "--syslog-format".into(),
                "rfc3164".into(),
            ],
            "rfc3164 cannot be used",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                path(&pki.ca),
                "--syslog-cert".into(),
                path(&pki.client_cert),
            ],
            "--syslog-cert needs its key",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                path(&pki.ca),
                "--syslog-cert".into(),
                path(&pki.client_cert),
                "--syslog-key".into(),
                missing.clone(),
            ],
            "cannot read --syslog-key",
        ),
        (
            vec![
                "--syslog".into(),
                url.into(),
                "--syslog-ca".into(),
                path(&pki.ca),
                "--syslog-cert".into(),
                path(&pki.client_cert),
                "--syslog-key".into(),
                path(&pki.stranger_key),
            ],
            "does not go with --syslog-cert",
        ),
        (
            vec![
                "--syslog".into(),
                "tcp://127.0.0.1:514".into(),
                "--syslog-ca".into(),
                path(&pki.ca),
            ],
            "--syslog-ca is only for tls://",
        ),
        (
            vec!["--syslog".into(), "tls://127.0.0.1".into()],
            "missing port",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run_sensor(dir, &args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Usable files pass every check: the run goes on to attach, and fails
    // there (exit 1) on the interface that does not exist.
    let (code, stderr) = run_sensor(
        dir,
        &[
            "--syslog",
            url,
            "--syslog-ca",
            &path(&pki.ca),
            "--syslog-cert",
            &path(&pki.client_cert),
            "--syslog-key",
            &path(&pki.client_key),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sensor-none0"), "{stderr}");

    // Files named in the config file: errors point at the key's value.
    let config = dir.join("sensor.yaml");
    std::fs::write(
        &config,
        "syslog: tls://127.0.0.1:6514\nsyslog_ca: ca.pem\nsyslog_cert: client.pem\nsyslog_key: nowhere.key\n",
    )
    .unwrap();
    let (code, stderr) = run_sensor(dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!("{}:4:13: cannot read `syslog_key`", config.display());
    assert!(stderr.contains(&expected), "{expected} in: {stderr}");

    std::fs::write(&config, "syslog: tls://127.0.0.1:6514\n").unwrap();
    let (code, stderr) = run_sensor(dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`syslog_ca` in --config"), "{stderr}");

    std::fs::write(&config, "syslog: udp://127.0.0.1:514\nsyslog_ca: ca.pem\n").unwrap();
    let (code, stderr) = run_sensor(dir, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!("`syslog_ca` ({}:2:12) is only for tls://", config.display());
    assert!(stderr.contains(&expected), "{expected} in: {stderr}");
}
