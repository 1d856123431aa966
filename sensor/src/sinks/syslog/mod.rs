//! The SIEM feed (CONTRACT section 4): every alert line as a syslog message
//! over UDP, TCP, TLS (RFC 5425, in syslog_tls.rs) or a local datagram
//! socket such as `/dev/log`.
//!
//! Messages are formatted here by hand rather than with the `syslog` crate:
//! that crate stamps each message with the time of formatting (not the
//! alert's own timestamp), only takes a number as RFC 5424 MSGID (we need the
//! category), writes RFC 3164 times in local time, and its writers are
//! blocking sockets with newline framing only.
//!
//! URLs are parsed in `target`, messages built in `format`; this module is
//! the sender.
//!
//! Delivery: [`SyslogSink::spawn`] starts a tokio task fed by a bounded queue.
//! The engine's [`SyslogHandle::send`] never waits: when the queue is full the
//! alert is dropped and counted. The task keeps a message until it is written;
//! when the peer is gone it reconnects with exponential backoff and resends
//! the message whose write failed, so nothing is lost silently: every alert
//! ends up in `sent` or in one of the `dropped_*` counters of [`SyslogStats`].

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::settings::SyslogFormat;
use crate::sinks::queue::QueueAccount;

mod format;
mod target;

pub use self::format::{
    Facility, Framing, SyslogFormatter, machine_hostname, rfc3164_timestamp, syslog_severity,
};
pub use self::target::{HostPort, SyslogTarget, SyslogUrlError};

/// Messages waiting for the peer when no capacity is configured.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// APP-NAME (RFC 5424) and TAG (RFC 3164).
pub const APP_NAME: &str = "sensor";
/// First reconnection delay after a failure; doubled up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A TCP peer that does not answer (packets dropped on the way) would
/// otherwise hold a connection attempt for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Delivery

/// What the sink has done so far. Every alert given to [`SyslogHandle::send`]
/// is, at any moment, in exactly one of `sent`, `queued` or a `dropped_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogStats {
    /// Messages written to the peer (for TCP: accepted by the kernel on a
    /// connection that was open just before the write).
    pub sent: u64,
    /// Refused by `send` because `capacity` messages were already waiting.
    pub dropped_queue_full: u64,
    /// Still waiting when `close` ran out of time (or given to `send` after
    /// the sender task had died).
    pub dropped_on_close: u64,
    /// The peer can never take them (a datagram larger than it accepts).
    pub dropped_unsendable: u64,
    /// Failed writes (the message is kept and sent again).
    pub write_errors: u64,
    /// Failed connection attempts (each followed by a backoff).
    pub connect_errors: u64,
    /// Connections opened again after one was lost or failed.
    pub reconnects: u64,
    /// TLS handshakes that failed (also in `connect_errors`).
    pub tls_failures: u64,
    /// Accepted and not yet written (including one being retried).
    pub queued: u64,
}

impl SyslogStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_on_close + self.dropped_unsendable
    }
}

/// Counters shared by the handle and the task.
#[derive(Default)]
struct Counters {
    /// Sent, queued, dropped at a full queue or on close.
    queue: QueueAccount,
    dropped_unsendable: AtomicU64,
    write_errors: AtomicU64,
    connect_errors: AtomicU64,
    reconnects: AtomicU64,
    tls_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SyslogStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
        let queue = self.queue.figures();
        SyslogStats {
            sent: queue.sent,
            dropped_queue_full: queue.dropped_queue_full,
            dropped_on_close: queue.dropped_on_close,
            dropped_unsendable: get(&self.dropped_unsendable),
            write_errors: get(&self.write_errors),
            connect_errors: get(&self.connect_errors),
            reconnects: get(&self.reconnects),
            tls_failures: get(&self.tls_failures),
            queued: queue.queued,
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::AcqRel);
    }
}

/// Everything [`SyslogSink::spawn_with`] can be told.
#[derive(Clone, Debug)]
pub struct SyslogOptions {
    pub format: SyslogFormat,
    pub facility: Facility,
    /// Most messages waiting for the peer (at least 1).
    pub capacity: usize,
    /// `tls://` targets: the client configuration (crate::sinks::tls::client_config).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for SyslogOptions {
    fn default() -> Self {
        SyslogOptions {
            format: SyslogFormat::Rfc5424,
            facility: Facility::LOCAL0,
            capacity: DEFAULT_CAPACITY,
            tls: None,
        }
    }
}

/// The engine's side of the syslog sink.
pub struct SyslogHandle {
    target: SyslogTarget,
    formatter: SyslogFormatter,
    framing: Framing,
    capacity: u64,
    queue: mpsc::Sender<Vec<u8>>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl SyslogHandle {
    /// Queues the alert without waiting; returns false when it was dropped
    /// (and counted) because `capacity` messages are already waiting.
    pub fn send(&self, alert: &Alert) -> bool {
        // The `queued` counter is the bound (not the channel's own capacity),
        // so the message the task holds for a retry counts too.
        if !self.counters.queue.reserve(self.capacity, || {
            tracing::warn!(
                target_url = %self.target,
                capacity = self.capacity,
                "syslog queue full: dropping alerts until the peer catches up"
            );
        }) {
            return false;
        }
        let message = self.framing.frame(&self.formatter.format(alert));
        if self.queue.try_send(message).is_err() {
            // Only when the task has died (the channel never fills first).
            self.counters.queue.lost_to_a_closed_writer();
            tracing::error!(
                target_url = %self.target,
                "syslog sender task is gone; alert dropped"
            );
            return false;
        }
        true
    }

    pub fn stats(&self) -> SyslogStats {
        self.counters.snapshot()
    }

    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    pub fn formatter(&self) -> &SyslogFormatter {
        &self.formatter
    }

    /// Stops taking alerts and writes what is queued until `deadline` has
    /// passed; what is still waiting then is counted in `dropped_on_close`.
    pub async fn close(self, deadline: Duration) -> SyslogStats {
        let SyslogHandle {
            target,
            queue,
            counters,
            mut task,
            ..
        } = self;
        // Closing the channel lets the task finish once it is empty.
        drop(queue);
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let left = counters.queue.drop_the_rest();
        if left > 0 {
            tracing::error!(
                target_url = %target,
                dropped = left,
                "syslog peer did not take every alert before shutdown; the rest are dropped"
            );
        }
        let stats = counters.snapshot();
        tracing::info!(
            target_url = %target,
            sent = stats.sent,
            dropped = stats.dropped(),
            write_errors = stats.write_errors,
            reconnects = stats.reconnects,
            "syslog sink closed"
        );
        stats
    }
}

/// The sender task: owns the connection and retries until each message is
/// written.
pub struct SyslogSink {
    target: SyslogTarget,
    queue: mpsc::Receiver<Vec<u8>>,
    counters: Arc<Counters>,
    connection: Option<Connection>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// A connection was open once (so the next one is a reconnect).
    connected_before: bool,
    /// Failures since the last successful write: sets the backoff.
    failures_in_a_row: u32,
}

impl SyslogSink {
    /// Starts the sender task (on the current tokio runtime) with local0.
    pub fn spawn(target: SyslogTarget, format: SyslogFormat, capacity: usize) -> SyslogHandle {
        SyslogSink::spawn_with(
            target,
            SyslogOptions {
                format,
                capacity,
                ..SyslogOptions::default()
            },
        )
    }

    pub fn spawn_with(target: SyslogTarget, options: SyslogOptions) -> SyslogHandle {
        let mut formatter = SyslogFormatter::for_this_host(options.format, options.facility);
        if matches!(target, SyslogTarget::Unix(_)) && options.format == SyslogFormat::Rfc3164 {
            // syslog(3)'s local form: daemons on /dev/log read the word after
            // the time as the tag and add the host name themselves.
            formatter.hostname = None;
        }
        let capacity = options.capacity.max(1);
        let (queue_tx, queue_rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let sink = SyslogSink {
            target: target.clone(),
            queue: queue_rx,
            counters: counters.clone(),
            connection: None,
            tls: options.tls,
            connected_before: false,
            failures_in_a_row: 0,
        };
        let task = tokio::spawn(sink.run());
        SyslogHandle {
            framing: Framing::for_target(&target, options.format),
            target,
            formatter,
            capacity: capacity as u64,
            queue: queue_tx,
            counters,
            task,
        }
    }

    async fn run(mut self) {
        while let Some(message) = self.queue.recv().await {
            self.deliver(&message).await;
        }
        match self.connection.as_mut() {
            // A clean FIN, so the peer reads everything before the close.
            Some(Connection::Tcp(stream)) => {
                let _ = stream.shutdown().await;
            }
            Some(Connection::Tls(stream)) => crate::sinks::syslog_tls::close(stream).await,
            _ => {}
        }
    }

    /// Returns once the message is written or known to be unsendable.
    async fn deliver(&mut self, message: &[u8]) {
        loop {
            if self
                .connection
                .as_mut()
                .is_some_and(|c| !c.peer_still_open())
            {
                tracing::warn!(
                    target_url = %self.target,
                    "syslog peer closed the connection; reconnecting"
                );
                self.connection = None;
            }
            if self.connection.is_none() {
                self.wait_backoff().await;
                match Connection::open(&self.target, self.tls.as_ref()).await {
                    Ok(connection) => {
                        if self.connected_before {
                            Counters::add(&self.counters.reconnects, 1);
                            tracing::info!(target_url = %self.target, "syslog peer reconnected");
                        }
                        self.connected_before = true;
                        self.connection = Some(connection);
                    }
                    Err(err) => {
                        Counters::add(&self.counters.connect_errors, 1);
                        if crate::sinks::syslog_tls::is_handshake_failure(&err) {
                            Counters::add(&self.counters.tls_failures, 1);
                        }
                        self.note_failure("cannot connect to the syslog peer", &err);
                        continue;
                    }
                }
            }
            let connection = self.connection.as_mut().expect("connected above");
            match connection.send(message).await {
                Ok(()) => {
                    self.counters.queue.sent(1);
                    self.failures_in_a_row = 0;
                    return;
                }
                Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // Retrying would block every later message behind it.
                    Counters::add(&self.counters.dropped_unsendable, 1);
                    self.counters.queue.discarded();
                    tracing::error!(
                        target_url = %self.target,
                        bytes = message.len(),
                        error = %err,
                        "syslog message too large for the peer; dropped"
                    );
                    return;
                }
                Err(err) => {
                    Counters::add(&self.counters.write_errors, 1);
                    self.connection = None;
                    self.note_failure("cannot write to the syslog peer", &err);
                }
            }
        }
    }

    fn note_failure(&mut self, what: &str, err: &io::Error) {
        // Log the first failure of an outage, then only now and then.
        if self.failures_in_a_row == 0 || self.failures_in_a_row.is_power_of_two() {
            tracing::warn!(
                target_url = %self.target,
                error = %err,
                failures = self.failures_in_a_row + 1,
                queued = self.counters.queue.figures().queued,
                "{what}; alerts stay queued and are retried"
            );
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
    }

    async fn wait_backoff(&self) {
        if self.failures_in_a_row > 0 {
            tokio::time::sleep(backoff_delay(self.failures_in_a_row)).await;
        }
    }
}

/// Delay before the next attempt after `failures` failures in a row:
/// 100 ms, 200 ms, 400 ms, ... up to 5 s.
pub fn backoff_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<crate::sinks::syslog_tls::TlsSyslogStream>),
    Unix(UnixDatagram),
}

impl Connection {
    async fn open(
        target: &SyslogTarget,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Connection> {
        match target {
            SyslogTarget::Udp(peer) => {
                let mut last_err = no_address(peer);
                for addr in tokio::net::lookup_host((peer.host.as_str(), peer.port)).await? {
                    let local = if addr.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let socket = UdpSocket::bind(local).await?;
                    match socket.connect(addr).await {
                        Ok(()) => return Ok(Connection::Udp(socket)),
                        Err(err) => last_err = err,
                    }
                }
                Err(last_err)
            }
            SyslogTarget::Tcp(peer) => {
                let mut last_err = no_address(peer);
                for addr in tokio::net::lookup_host((peer.host.as_str(), peer.port)).await? {
                    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                        Ok(Ok(stream)) => return Ok(Connection::Tcp(stream)),
                        Ok(Err(err)) => last_err = err,
                        Err(_) => {
                            last_err = io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no answer from {addr} within {CONNECT_TIMEOUT:?}"),
                            );
                        }
                    }
                }
                Err(last_err)
            }
            SyslogTarget::Tls(peer) => {
                let config = tls.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "tls:// without a CA file")
                })?;
                let stream =
                    crate::sinks::syslog_tls::connect(peer, config, CONNECT_TIMEOUT).await?;
                Ok(Connection::Tls(Box::new(stream)))
            }
            SyslogTarget::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(path)?;
                Ok(Connection::Unix(socket))
            }
        }
    }

    async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(socket) => socket.send(message).await.map(drop),
            Connection::Unix(socket) => socket.send(message).await.map(drop),
            Connection::Tcp(stream) => stream.write_all(message).await,
            Connection::Tls(stream) => crate::sinks::syslog_tls::write(stream, message).await,
        }
    }

    /// For TCP and TLS: whether the peer has not closed or reset the
    /// connection. A write into a connection the peer already closed still
    /// succeeds locally and is lost, so this is checked before each write.
    /// Syslog receivers never send, so anything readable on TCP means the end.
    fn peer_still_open(&mut self) -> bool {
        let stream = match self {
            Connection::Tcp(stream) => stream,
            Connection::Tls(stream) => return crate::sinks::syslog_tls::peer_still_open(stream),
            Connection::Udp(_) | Connection::Unix(_) => return true,
        };
        let mut byte = 0u8;
        // SAFETY: a valid socket and a one-byte buffer; MSG_PEEK leaves the
        // data in place and MSG_DONTWAIT never blocks.
        let read = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        read < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

fn no_address(peer: &HostPort) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} resolves to no address", peer.host),
    )
}

#[cfg(test)]
mod tests {
    use super::format::header_field;
    use super::*;
    use crate::alert::{CapturedPacket, unix_ns_to_datetime};
    use crate::rules::RuleMeta;
    use crate::settings::Severity;
    use sensor_common::AlertRecord;
    use sensor_common::packet::{PROTO_TCP, PacketMeta, flag, tcp};
    use sensor_common::tables::kind;
    use std::path::PathBuf;

    fn alert(severity: Severity) -> Alert {
        let rule = RuleMeta {
            id: 100001,
            gid: 1,
            rev: 1,
            name: "TCP SYN and FIN set".to_owned(),
            severity,
            category: "tcp_flags",
            drop: false,
            origin: "test.yaml:3".to_owned(),
        };
        let mut packet = PacketMeta {
            frame_len: 60,
            ip_id: 1234,
            src_port: 4242,
            dst_port: 80,
            tcp_flags: tcp::SYN | tcp::FIN,
            flags: flag::HAS_PORTS | flag::HAS_TCP_FLAGS,
            ip_version: 4,
            ttl: 64,
            proto: PROTO_TCP,
            ..PacketMeta::default()
        };
        packet.src_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        packet.dst_addr[..4].copy_from_slice(&[192, 0, 2, 10]);
        let record = AlertRecord {
            sig_id: 100001,
            kind: kind::TCP_FLAGS,
            packet,
            ..AlertRecord::default()
        };
        // 2026-11-06T03:07:51.123456Z: a one-digit day shows the padding.
        let timestamp = unix_ns_to_datetime(1_793_934_471_123_456_789);
        let frame = CapturedPacket::ethernet(&[0xff; 6]);
        Alert::new(&record, &frame, &rule, 1, timestamp, 0).with_iface("eth0")
    }

    const JSON: &str = concat!(
        r#"{"timestamp":"2026-11-06T03:07:51.123456+0000","in_iface":"eth0","event_type":"alert","#,
        r#""src_ip":"10.1.2.3","src_port":4242,"dest_ip":"192.0.2.10","dest_port":80,"proto":"TCP","ip_v":4,"community_id":"1:b+sY6ndt4B8Zs9IgltPHTPiVvR4=","#,
        r#""alert":{"action":"allowed","gid":1,"signature_id":100001,"rev":1,"signature":"TCP SYN and FIN set","#,
        r#""category":"tcp_flags","severity":2},"tcp":{"tcp_flags":"03","syn":true,"fin":true},"#,
        r#""packet":"////////","packet_info":{"linktype":1},"#,
        r#""sensor":{"count":1,"length":60,"ttl":64,"ip_id":1234,"frag_offset":0,"#,
        r#""more_fragments":false,"tcp_flags":"FS"}}"#
    );

    fn formatter(format: SyslogFormat) -> SyslogFormatter {
        SyslogFormatter {
            format,
            facility: Facility::LOCAL0,
            hostname: Some("sensor-1".to_owned()),
            pid: 4321,
        }
    }

    #[test]
    fn rfc5424_message_exact_bytes() {
        let message = formatter(SyslogFormat::Rfc5424).format(&alert(Severity::High));
        // local0 (16) * 8 + err (3) = 131.
        let expected =
            format!("<131>1 2026-11-06T03:07:51.123456Z sensor-1 sensor 4321 tcp_flags - {JSON}");
        assert_eq!(message, expected);
        assert_eq!(
            Framing::OctetCounting.frame(&message),
            format!("{} {expected}", expected.len()).into_bytes()
        );
    }

    #[test]
    fn rfc3164_message_exact_bytes() {
        let message = formatter(SyslogFormat::Rfc3164).format(&alert(Severity::High));
        assert_eq!(
            message,
            format!("<131>Nov  6 03:07:51 sensor-1 sensor[4321]: {JSON}")
        );
        let local = SyslogFormatter {
            hostname: None,
            ..formatter(SyslogFormat::Rfc3164)
        };
        assert_eq!(
            local.format(&alert(Severity::High)),
            format!("<131>Nov  6 03:07:51 sensor[4321]: {JSON}")
        );
        assert_eq!(Framing::Newline.frame("x"), b"x\n");
        assert_eq!(Framing::Datagram.frame("x"), b"x");
    }

    #[test]
    fn severity_and_facility_set_the_priority() {
        let pri = |severity, facility| {
            let mut formatter = formatter(SyslogFormat::Rfc5424);
            formatter.facility = facility;
            let message = formatter.format(&alert(severity));
            message[1..message.find('>').unwrap()].to_owned()
        };
        assert_eq!(pri(Severity::Critical, Facility::LOCAL0), "130");
        assert_eq!(pri(Severity::High, Facility::LOCAL0), "131");
        assert_eq!(pri(Severity::Medium, Facility::LOCAL0), "132");
        assert_eq!(pri(Severity::Low, Facility::LOCAL0), "133");
        let local7 = Facility::from_name("LOCAL7").unwrap();
        assert_eq!(pri(Severity::Low, local7), "189");
        assert_eq!(Facility::from_name("daemon").unwrap().code(), 3);
        assert_eq!(Facility::from_name("local8"), None);
    }

    #[test]
    fn nil_hostname_and_header_field_cleaning() {
        let formatter = SyslogFormatter {
            hostname: None,
            ..formatter(SyslogFormat::Rfc5424)
        };
        assert!(
            formatter
                .format(&alert(Severity::Low))
                .starts_with("<133>1 2026-11-06T03:07:51.123456Z - sensor 4321 tcp_flags - {")
        );
        assert_eq!(header_field("a b\tc", 32), "abc");
        assert_eq!(header_field(" ", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        let host = machine_hostname().expect("this machine has a host name");
        assert!(!host.is_empty() && host.chars().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn parses_good_urls() {
        let tcp = |host: &str, port| {
            SyslogTarget::Tcp(HostPort {
                host: host.to_owned(),
                port,
            })
        };
        assert_eq!(
            SyslogTarget::parse("tcp://127.0.0.1:514").unwrap(),
            tcp("127.0.0.1", 514)
        );
        assert_eq!(
            SyslogTarget::parse("TCP://siem.example.net:6514").unwrap(),
            tcp("siem.example.net", 6514)
        );
        assert_eq!(
            SyslogTarget::parse("tls://siem.example.net:6514").unwrap(),
            SyslogTarget::Tls(HostPort {
                host: "siem.example.net".to_owned(),
                port: 6514
            })
        );
        assert_eq!(
            Framing::for_target(
                &SyslogTarget::parse("tls://[::1]:6514").unwrap(),
                SyslogFormat::Rfc5424
            ),
            Framing::OctetCounting
        );
        assert_eq!(
            SyslogTarget::parse("udp://[::1]:5514").unwrap(),
            SyslogTarget::Udp(HostPort {
                host: "::1".to_owned(),
                port: 5514
            })
        );
        assert_eq!(
            SyslogTarget::parse("unix:///dev/log").unwrap(),
            SyslogTarget::Unix(PathBuf::from("/dev/log"))
        );
        assert_eq!(
            "unix:///run/systemd/journal/syslog"
                .parse::<SyslogTarget>()
                .unwrap(),
            SyslogTarget::Unix(PathBuf::from("/run/systemd/journal/syslog"))
        );
        for url in [
            "udp://[::1]:5514",
            "tcp://10.0.0.1:514",
            "tls://[2001:db8::5]:6514",
            "unix:///dev/log",
        ] {
            assert_eq!(SyslogTarget::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for (url, reason) in [
            ("127.0.0.1:514", "no scheme"),
            ("http://host:514", "unknown scheme `http`"),
            ("tcp://host", "missing port"),
            ("udp://:514", "missing host"),
            ("tcp://host:0", "port must be a number"),
            ("tcp://host:65536", "port must be a number"),
            ("tcp://host:syslog", "port must be a number"),
            ("tcp://host:514/path", "only HOST:PORT"),
            ("udp://::1:514", "in brackets"),
            ("udp://[::1:514", "unclosed"),
            ("udp://[nope]:514", "not an IPv6 address"),
            ("udp://[::1]", "missing port"),
            ("tls://host", "missing port"),
            ("tls://host:6514/x", "only HOST:PORT"),
            (
                "ssl://host:6514",
                "unknown scheme `ssl` (udp, tcp, tls or unix)",
            ),
            ("unix://dev/log", "absolute"),
            ("unix:///", "directory"),
        ] {
            let err = SyslogTarget::parse(url).expect_err(url);
            assert_eq!(err.url, url);
            assert!(err.reason.contains(reason), "{url}: {}", err.reason);
            assert!(err.to_string().contains("expected udp://HOST:PORT"));
        }
    }

    #[test]
    fn backoff_doubles_from_100ms_to_5s() {
        let delays: Vec<u128> = (1..=9).map(|n| backoff_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff_delay(u32::MAX), MAX_BACKOFF);
    }

    /// A TCP port on loopback with nothing listening (bound, then freed).
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_then_close_counts_the_rest() {
        let target = SyslogTarget::Tcp(HostPort {
            host: "127.0.0.1".to_owned(),
            port: closed_port(),
        });
        let handle = SyslogSink::spawn(target, SyslogFormat::Rfc5424, 3);
        let accepted: Vec<bool> = (0..5)
            .map(|_| handle.send(&alert(Severity::High)))
            .collect();
        assert_eq!(accepted, [true, true, true, false, false]);
        // Once the task holds a message for a retry, the bound still holds.
        for _ in 0..500 {
            if handle.stats().connect_errors >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!handle.send(&alert(Severity::High)));
        let stats = handle.stats();
        assert_eq!(
            (stats.queued, stats.dropped_queue_full, stats.sent),
            (3, 3, 0)
        );
        assert!(stats.connect_errors >= 2, "{stats:?}");

        let stats = handle.close(Duration::from_millis(50)).await;
        assert_eq!(stats.dropped_on_close, 3);
        assert_eq!(stats.queued, 0);
        assert_eq!(stats.dropped(), 6);
    }

    #[tokio::test]
    async fn delivers_over_udp_and_drains_on_close() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = SyslogTarget::Udp(HostPort {
            host: "127.0.0.1".to_owned(),
            port: receiver.local_addr().unwrap().port(),
        });
        let handle = SyslogSink::spawn(target, SyslogFormat::Rfc5424, 10);
        for _ in 0..3 {
            assert!(handle.send(&alert(Severity::Medium)));
        }
        let expected = handle.formatter().format(&alert(Severity::Medium));
        let stats = handle.close(Duration::from_secs(5)).await;
        assert_eq!((stats.sent, stats.dropped(), stats.queued), (3, 0, 0));
        let mut buffer = [0u8; 2048];
        for _ in 0..3 {
            let len = tokio::time::timeout(Duration::from_secs(5), receiver.recv(&mut buffer))
                .await
                .expect("datagram within 5 s")
                .unwrap();
            assert_eq!(std::str::from_utf8(&buffer[..len]).unwrap(), expected);
        }
    }
}
