//! `--metrics ADDR:PORT`: the sensor's counters in the Prometheus text
//! exposition format (0.0.4) at `http://ADDR:PORT/metrics`.
//!
//! The engine keeps a [`MetricsSnapshot`] up to date behind a lock; each
//! scrape renders whatever it holds at that moment, so a scrape never
//! touches the kernel maps or the sinks.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::sinks::redis::RedisStats;
use crate::sinks::syslog::SyslogStats;

/// The exposition format's media type, as Prometheus asks for it.
pub const CONTENT_TYPE_TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A client that sends no complete request head within this is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; a connection past this is closed at once (a
/// scraper retries; a flood of idle connections cannot pin memory).
const MAX_CONNECTIONS: usize = 64;

/// Everything `/metrics` shows. Counters are totals since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Packets the XDP program saw, passed, dropped, and saw without an
    /// IP header; summed over CPUs.
    pub packets_seen: u64,
    pub packets_passed: u64,
    pub packets_dropped: u64,
    pub packets_not_ip: u64,
    /// One entry per loaded rule.
    pub rules: Vec<RuleMetrics>,
    /// The JSON lines sink (file or stdout).
    pub json: SinkCounters,
    /// The syslog sink, as [`crate::sinks::syslog::SyslogHandle::stats`] reports it.
    pub syslog: SyslogStats,
    /// The Redis sink, as [`crate::sinks::redis::RedisHandle::stats`] reports it.
    pub redis: RedisStats,
    /// Perf ring samples the kernel could not deliver (ring full).
    pub perf_lost_samples: u64,
    /// Alert records the XDP program failed to output.
    pub kernel_alert_output_errors: u64,
    pub rules_loaded: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Drop mode: packets dropped because their source was blocked, by the
    /// static blocklist, and by a `drop` rule; and (dry run) would-be drops.
    pub dropped_blocked_source: u64,
    pub dropped_static_blocklist: u64,
    pub dropped_by_rule: u64,
    pub would_drop: u64,
    /// Each watched interface, in the order given.
    pub ifaces: Vec<IfaceMetrics>,
    /// Blocks the kernel could not record (map insert failed).
    pub block_errors: u64,
    /// Frames that may carry a tunnel and went unjudged (the kernel's tail
    /// call to its decapsulating programs failed).
    pub tunnel_lost: u64,
    /// Frames judged on a tunnel's inner packet (decapsulated).
    pub tunnel_packets: u64,
    /// Drop mode: the sources blocked now.
    pub blocked: Vec<BlockedSource>,
    /// Drop mode: proof of address and `block_when`.
    pub proof: ProofMetrics,
}

/// The figures of one watched interface (label `iface`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceMetrics {
    pub name: String,
    /// The program is attached to it now.
    pub attached: bool,
    /// Times it disappeared, and times it was attached again.
    pub lost: u64,
    pub reattached: u64,
    /// Packets the XDP program saw on it, over all its lives.
    pub packets: u64,
}

/// Drop mode's proof of address and blocking decisions (`block_when`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofMetrics {
    /// Addresses whose proof holds now (sampled every few seconds).
    pub proven_sources: u64,
    /// Handshakes that proved their client's address.
    pub proofs: u64,
    /// Matches of blocking `drop` rules that did not block, by reason.
    pub refused_not_proven: u64,
    pub refused_not_repeated: u64,
    /// Sources blocked, by `block_when` (proven, repeated, first_match).
    pub blocks: [u64; 3],
}

/// A source blocked in drop mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockedSource {
    pub src: String,
    /// The rule that blocked it.
    pub sig_id: u32,
    pub seconds_left: u64,
}

/// One rule's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleMetrics {
    pub sig_id: u32,
    pub name: String,
    /// Packets the rule matched (the kernel's count).
    pub hits: u64,
    /// Alert lines written for it.
    pub alerts: u64,
}

/// A sink's lines written and write errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounters {
    pub lines: u64,
    pub errors: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Builds the exposition text one metric family at a time.
struct Exposition {
    text: String,
}

impl Exposition {
    /// `name` without `_total`: it is added to counter samples.
    fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(&[(&str, &str)], u64)]) {
        // In format 0.0.4 a counter's family name keeps the `_total`.
        let (type_name, metric) = match kind {
            Kind::Counter => ("counter", format!("{name}_total")),
            Kind::Gauge => ("gauge", name.to_owned()),
        };
        let _ = writeln!(self.text, "# HELP {metric} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {metric} {type_name}");
        for (labels, value) in samples {
            self.text.push_str(&metric);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (label, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{label}=\"{}\"", escape_label_value(value));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help, &[(&[], value)]);
    }
}

/// HELP text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and newline escaped.
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot as Prometheus text (format 0.0.4).
pub fn render(snapshot: &MetricsSnapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut out = Exposition {
        text: String::with_capacity(4096 + 256 * snapshot.rules.len()),
    };
    let s = snapshot;

    out.single(
        "sensor_packets",
        Counter,
        "Packets seen by the XDP program.",
        s.packets_seen,
    );
    out.single(
        "sensor_packets_passed",
        Counter,
        "Packets passed to the network stack.",
        s.packets_passed,
    );
    out.single(
        "sensor_packets_dropped",
        Counter,
        "Packets dropped (drop mode).",
        s.packets_dropped,
    );
    out.single(
        "sensor_packets_not_ip",
        Counter,
        "Packets without an IPv4 or IPv6 header.",
        s.packets_not_ip,
    );

    let ids: Vec<String> = s.rules.iter().map(|rule| rule.sig_id.to_string()).collect();
    let labels: Vec<[(&str, &str); 2]> = s
        .rules
        .iter()
        .zip(&ids)
        .map(|(rule, id)| [("sig_id", id.as_str()), ("name", rule.name.as_str())])
        .collect();
    let per_rule = |value: fn(&RuleMetrics) -> u64| -> Vec<(&[(&str, &str)], u64)> {
        labels
            .iter()
            .zip(&s.rules)
            .map(|(labels, rule)| (labels.as_slice(), value(rule)))
            .collect()
    };
    out.family(
        "sensor_rule_hits",
        Counter,
        "Packets matched, by rule.",
        &per_rule(|r| r.hits),
    );
    out.family(
        "sensor_rule_alerts",
        Counter,
        "Alert lines written, by rule.",
        &per_rule(|r| r.alerts),
    );

    out.family(
        "sensor_alert_lines",
        Counter,
        "Alert lines written, by sink.",
        &[
            (&[("sink", "json")], s.json.lines),
            (&[("sink", "syslog")], s.syslog.sent),
            (&[("sink", "redis")], s.redis.sent),
        ],
    );
    out.family(
        "sensor_sink_errors",
        Counter,
        "Failed writes and connection attempts, by sink.",
        &[
            (&[("sink", "json")], s.json.errors),
            (
                &[("sink", "syslog")],
                s.syslog.write_errors + s.syslog.connect_errors,
            ),
            (&[("sink", "redis")], s.redis.errors),
        ],
    );
    out.single(
        "sensor_syslog_queue_depth",
        Gauge,
        "Alerts waiting for the syslog peer.",
        s.syslog.queued,
    );
    out.family(
        "sensor_syslog_dropped",
        Counter,
        "Alerts the syslog sink dropped, by reason.",
        &[
            (&[("reason", "queue_full")], s.syslog.dropped_queue_full),
            (&[("reason", "shutdown")], s.syslog.dropped_on_close),
            (&[("reason", "unsendable")], s.syslog.dropped_unsendable),
        ],
    );
    out.single(
        "sensor_syslog_reconnects",
        Counter,
        "Connections to the syslog peer opened again after a failure.",
        s.syslog.reconnects,
    );
    out.single(
        "sensor_syslog_tls_failures",
        Counter,
        "TLS handshakes with the syslog peer that failed (certificate refused either way).",
        s.syslog.tls_failures,
    );
    out.single(
        "sensor_redis_queue_depth",
        Gauge,
        "Alerts waiting for Redis.",
        s.redis.queued,
    );
    out.family(
        "sensor_redis_dropped",
        Counter,
        "Alerts the Redis sink dropped, by reason.",
        &[
            (&[("reason", "queue_full")], s.redis.dropped_queue_full),
            (&[("reason", "shutdown")], s.redis.dropped_on_close),
        ],
    );
    out.single(
        "sensor_redis_reconnects",
        Counter,
        "Connections to Redis opened again after a failure.",
        s.redis.reconnects,
    );
    out.single(
        "sensor_perf_lost_samples",
        Counter,
        "Alert records lost because a perf ring was full.",
        s.perf_lost_samples,
    );
    out.single(
        "sensor_kernel_alert_output_errors",
        Counter,
        "Alert records the XDP program could not output.",
        s.kernel_alert_output_errors,
    );
    out.single(
        "sensor_rules_loaded",
        Gauge,
        "Rules in force.",
        s.rules_loaded,
    );
    out.family(
        "sensor_rule_reloads",
        Counter,
        "Rule reloads (SIGHUP), by result.",
        &[
            (&[("result", "ok")], s.reloads_ok),
            (&[("result", "failed")], s.reloads_failed),
        ],
    );
    out.family(
        "sensor_drop_mode_dropped",
        Counter,
        "Drop mode: packets dropped, by reason.",
        &[
            (&[("reason", "blocked_source")], s.dropped_blocked_source),
            (
                &[("reason", "static_blocklist")],
                s.dropped_static_blocklist,
            ),
            (&[("reason", "rule")], s.dropped_by_rule),
        ],
    );
    out.single(
        "sensor_drop_mode_would_drop",
        Counter,
        "Dry run: packets drop mode would have dropped.",
        s.would_drop,
    );
    let iface_labels: Vec<[(&str, &str); 1]> = s
        .ifaces
        .iter()
        .map(|iface| [("iface", iface.name.as_str())])
        .collect();
    let per_iface = |value: fn(&IfaceMetrics) -> u64| -> Vec<(&[(&str, &str)], u64)> {
        iface_labels
            .iter()
            .zip(&s.ifaces)
            .map(|(labels, iface)| (&labels[..], value(iface)))
            .collect()
    };
    out.family(
        "sensor_interface_packets",
        Counter,
        "Packets seen by the XDP program on each watched interface.",
        &per_iface(|iface| iface.packets),
    );
    out.family(
        "sensor_interface_attached",
        Gauge,
        "1 while the program is attached to the watched interface, 0 while it is gone.",
        &per_iface(|iface| u64::from(iface.attached)),
    );
    out.family(
        "sensor_interface_lost",
        Counter,
        "Times the watched interface disappeared.",
        &per_iface(|iface| iface.lost),
    );
    out.family(
        "sensor_interface_reattached",
        Counter,
        "Times the sensor attached again to the returning interface.",
        &per_iface(|iface| iface.reattached),
    );
    out.single(
        "sensor_drop_mode_block_errors",
        Counter,
        "Drop mode: blocks the kernel could not record (the packet was dropped, its source not blocked).",
        s.block_errors,
    );
    out.single(
        "sensor_tunnel_lost",
        Counter,
        "Frames that may carry a tunnel and went unjudged (the program that decapsulates could not be called).",
        s.tunnel_lost,
    );
    out.single(
        "sensor_tunnel_packets",
        Counter,
        "Frames judged on a tunnel's inner packet (decapsulated).",
        s.tunnel_packets,
    );
    let blocked_ids: Vec<String> = s.blocked.iter().map(|b| b.sig_id.to_string()).collect();
    let blocked_labels: Vec<[(&str, &str); 2]> = s
        .blocked
        .iter()
        .zip(&blocked_ids)
        .map(|(b, id)| [("src", b.src.as_str()), ("sig_id", id.as_str())])
        .collect();
    let blocked: Vec<(&[(&str, &str)], u64)> = blocked_labels
        .iter()
        .zip(&s.blocked)
        .map(|(labels, b)| (labels.as_slice(), b.seconds_left))
        .collect();
    out.family(
        "sensor_blocked_source_seconds_left",
        Gauge,
        "Drop mode: sources blocked now, with the seconds their block has left.",
        &blocked,
    );
    let p = &s.proof;
    out.single(
        "sensor_proven_sources",
        Gauge,
        "Drop mode: source addresses proven by a TCP handshake whose proof holds now.",
        p.proven_sources,
    );
    out.single(
        "sensor_drop_mode_proofs",
        Counter,
        "Drop mode: TCP handshakes that proved their client's address.",
        p.proofs,
    );
    out.family(
        "sensor_drop_mode_blocks_refused",
        Counter,
        "Drop mode: matches of drop rules that did not block their source, by reason.",
        &[
            (&[("reason", "not_proven")], p.refused_not_proven),
            (&[("reason", "not_repeated")], p.refused_not_repeated),
        ],
    );
    out.family(
        "sensor_drop_mode_blocks",
        Counter,
        "Drop mode: sources blocked, by block_when.",
        &[
            (&[("block_when", "proven")], p.blocks[0]),
            (&[("block_when", "repeated")], p.blocks[1]),
            (&[("block_when", "first_match")], p.blocks[2]),
        ],
    );
    out.text
}

/// Puts new snapshots up for the endpoint. A snapshot that could not be
/// built (the kernel's counters unreadable) leaves the last one up:
/// publishing zeros would look like a counter reset to Prometheus. The
/// failure is logged once per episode, not at every tick.
#[derive(Debug)]
pub struct Publisher {
    snapshot: Arc<RwLock<MetricsSnapshot>>,
    failing: bool,
    /// Episodes of failure so far (each logged once).
    pub failure_episodes: u64,
}

impl Publisher {
    pub fn new(snapshot: Arc<RwLock<MetricsSnapshot>>) -> Publisher {
        Publisher {
            snapshot,
            failing: false,
            failure_episodes: 0,
        }
    }

    pub fn publish<E: std::fmt::Display>(&mut self, built: Result<MetricsSnapshot, E>) {
        match built {
            Ok(snapshot) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("the kernel's counters are readable again; metrics updated");
                }
                *self
                    .snapshot
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
            }
            Err(err) if !self.failing => {
                self.failing = true;
                self.failure_episodes += 1;
                tracing::error!(
                    error = %err,
                    "cannot read the kernel's counters; the metrics keep their last values"
                );
            }
            Err(_) => {}
        }
    }
}

/// Serves `GET /metrics` on `addr` (port 0 picks a free one). Returns the
/// bound address and the server task; aborting the task closes the
/// listener and every open connection.
pub async fn serve(
    addr: SocketAddr,
    snapshot: Arc<RwLock<MetricsSnapshot>>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving metrics at http://{bound}/metrics");
    Ok((bound, tokio::spawn(accept_loop(listener, snapshot))))
}

async fn accept_loop(listener: TcpListener, snapshot: Arc<RwLock<MetricsSnapshot>>) {
    // Owned here so that aborting this task aborts every connection too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(%peer, limit = MAX_CONNECTIONS, "metrics: too many connections, closing a new one");
                    drop(stream);
                }
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, snapshot.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: pause, not spin.
                    tracing::warn!(error = %err, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, snapshot: Arc<RwLock<MetricsSnapshot>>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&request, &snapshot);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = served {
        tracing::debug!(error = %err, "metrics: connection ended with an error");
    }
}

fn respond<B>(request: &Request<B>, snapshot: &RwLock<MetricsSnapshot>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n".to_owned(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".to_owned());
        response
            .headers_mut()
            .insert(ALLOW, "GET, HEAD".parse().unwrap());
        return response;
    }
    // A writer that panicked leaves counters that are still worth showing.
    let text = render(&snapshot.read().unwrap_or_else(PoisonError::into_inner));
    let mut response = reply(StatusCode::OK, text);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, CONTENT_TYPE_TEXT_0_0_4.parse().unwrap());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_snapshot() -> MetricsSnapshot {
        MetricsSnapshot {
            packets_seen: 1000,
            packets_passed: 990,
            packets_dropped: 10,
            packets_not_ip: 3,
            rules: vec![
                RuleMetrics {
                    sig_id: 100001,
                    name: "TCP SYN and FIN set".to_owned(),
                    hits: 12,
                    alerts: 2,
                },
                RuleMetrics {
                    sig_id: 7,
                    name: "say \"hi\" \\ bye\nnext".to_owned(),
                    hits: 0,
                    alerts: 0,
                },
            ],
            redis: RedisStats::default(),
            json: SinkCounters {
                lines: 2,
                errors: 1,
            },
            syslog: SyslogStats {
                sent: 1,
                dropped_queue_full: 4,
                dropped_on_close: 5,
                dropped_unsendable: 6,
                write_errors: 2,
                connect_errors: 3,
                reconnects: 1,
                tls_failures: 2,
                queued: 9,
            },
            perf_lost_samples: 11,
            kernel_alert_output_errors: 12,
            rules_loaded: 2,
            reloads_ok: 3,
            reloads_failed: 1,
            dropped_blocked_source: 6,
            dropped_static_blocklist: 3,
            dropped_by_rule: 1,
            would_drop: 0,
            ifaces: vec![
                IfaceMetrics {
                    name: "eth1".into(),
                    attached: true,
                    lost: 1,
                    reattached: 1,
                    packets: 600,
                },
                IfaceMetrics {
                    name: "eth2".into(),
                    attached: false,
                    lost: 2,
                    reattached: 1,
                    packets: 400,
                },
            ],
            block_errors: 0,
            tunnel_lost: 0,
            tunnel_packets: 0,
            blocked: vec![BlockedSource {
                src: "198.51.100.7".to_owned(),
                sig_id: 100001,
                seconds_left: 297,
            }],
            proof: ProofMetrics {
                proven_sources: 4,
                proofs: 9,
                refused_not_proven: 2,
                refused_not_repeated: 0,
                blocks: [1, 0, 5],
            },
        }
    }

    /// Counters that cannot be read keep the last snapshot up (never
    /// zeros), and one failing episode is logged once, not every second.
    #[test]
    fn unreadable_counters_keep_the_last_values() {
        let shared = Arc::new(RwLock::new(MetricsSnapshot::default()));
        let mut publisher = Publisher::new(shared.clone());
        let seen = |shared: &RwLock<MetricsSnapshot>| shared.read().unwrap().packets_seen;
        publisher.publish::<String>(Ok(MetricsSnapshot {
            packets_seen: 42,
            ..MetricsSnapshot::default()
        }));
        assert_eq!(seen(&shared), 42);
        for _ in 0..5 {
            publisher.publish::<String>(Err("map COUNTERS: EPERM".into()));
            assert_eq!(seen(&shared), 42, "the last values stay up");
        }
        assert_eq!(publisher.failure_episodes, 1, "one episode, logged once");
        publisher.publish::<String>(Ok(MetricsSnapshot {
            packets_seen: 50,
            ..MetricsSnapshot::default()
        }));
        assert_eq!(seen(&shared), 50);
        publisher.publish::<String>(Err("again".into()));
        assert_eq!((seen(&shared), publisher.failure_episodes), (50, 2));
    }

    #[test]
    fn renders_the_exact_exposition_text() {
        let expected = r#"# HELP sensor_packets_total Packets seen by the XDP program.
# TYPE sensor_packets_total counter
sensor_packets_total 1000
# HELP sensor_packets_passed_total Packets passed to the network stack.
# TYPE sensor_packets_passed_total counter
sensor_packets_passed_total 990
# HELP sensor_packets_dropped_total Packets dropped (drop mode).
# TYPE sensor_packets_dropped_total counter
sensor_packets_dropped_total 10
# HELP sensor_packets_not_ip_total Packets without an IPv4 or IPv6 header.
# TYPE sensor_packets_not_ip_total counter
sensor_packets_not_ip_total 3
# HELP sensor_rule_hits_total Packets matched, by rule.
# TYPE sensor_rule_hits_total counter
sensor_rule_hits_total{sig_id="100001",name="TCP SYN and FIN set"} 12
sensor_rule_hits_total{sig_id="7",name="say \"hi\" \\ bye\nnext"} 0
# HELP sensor_rule_alerts_total Alert lines written, by rule.
# TYPE sensor_rule_alerts_total counter
sensor_rule_alerts_total{sig_id="100001",name="TCP SYN and FIN set"} 2
sensor_rule_alerts_total{sig_id="7",name="say \"hi\" \\ bye\nnext"} 0
# HELP sensor_alert_lines_total Alert lines written, by sink.
# TYPE sensor_alert_lines_total counter
sensor_alert_lines_total{sink="json"} 2
sensor_alert_lines_total{sink="syslog"} 1
sensor_alert_lines_total{sink="redis"} 0
# HELP sensor_sink_errors_total Failed writes and connection attempts, by sink.
# TYPE sensor_sink_errors_total counter
sensor_sink_errors_total{sink="json"} 1
sensor_sink_errors_total{sink="syslog"} 5
sensor_sink_errors_total{sink="redis"} 0
# HELP sensor_syslog_queue_depth Alerts waiting for the syslog peer.
# TYPE sensor_syslog_queue_depth gauge
sensor_syslog_queue_depth 9
# HELP sensor_syslog_dropped_total Alerts the syslog sink dropped, by reason.
# TYPE sensor_syslog_dropped_total counter
sensor_syslog_dropped_total{reason="queue_full"} 4
sensor_syslog_dropped_total{reason="shutdown"} 5
sensor_syslog_dropped_total{reason="unsendable"} 6
# HELP sensor_syslog_reconnects_total Connections to the syslog peer opened again after a failure.
# TYPE sensor_syslog_reconnects_total counter
sensor_syslog_reconnects_total 1
# HELP sensor_syslog_tls_failures_total TLS handshakes with the syslog peer that failed (certificate refused either way).
# TYPE sensor_syslog_tls_failures_total counter
sensor_syslog_tls_failures_total 2
# HELP sensor_redis_queue_depth Alerts waiting for Redis.
# TYPE sensor_redis_queue_depth gauge
sensor_redis_queue_depth 0
# HELP sensor_redis_dropped_total Alerts the Redis sink dropped, by reason.
# TYPE sensor_redis_dropped_total counter
sensor_redis_dropped_total{reason="queue_full"} 0
sensor_redis_dropped_total{reason="shutdown"} 0
# HELP sensor_redis_reconnects_total Connections to Redis opened again after a failure.
# TYPE sensor_redis_reconnects_total counter
sensor_redis_reconnects_total 0
# HELP sensor_perf_lost_samples_total Alert records lost because a perf ring was full.
# TYPE sensor_perf_lost_samples_total counter
sensor_perf_lost_samples_total 11
# HELP sensor_kernel_alert_output_errors_total Alert records the XDP program could not output.
# TYPE sensor_kernel_alert_output_errors_total counter
sensor_kernel_alert_output_errors_total 12
# HELP sensor_rules_loaded Rules in force.
# TYPE sensor_rules_loaded gauge
sensor_rules_loaded 2
# HELP sensor_rule_reloads_total Rule reloads (SIGHUP), by result.
# TYPE sensor_rule_reloads_total counter
sensor_rule_reloads_total{result="ok"} 3
sensor_rule_reloads_total{result="failed"} 1
# HELP sensor_drop_mode_dropped_total Drop mode: packets dropped, by reason.
# TYPE sensor_drop_mode_dropped_total counter
sensor_drop_mode_dropped_total{reason="blocked_source"} 6
sensor_drop_mode_dropped_total{reason="static_blocklist"} 3
sensor_drop_mode_dropped_total{reason="rule"} 1
# HELP sensor_drop_mode_would_drop_total Dry run: packets drop mode would have dropped.
# TYPE sensor_drop_mode_would_drop_total counter
sensor_drop_mode_would_drop_total 0
# HELP sensor_interface_packets_total Packets seen by the XDP program on each watched interface.
# TYPE sensor_interface_packets_total counter
sensor_interface_packets_total{iface="eth1"} 600
sensor_interface_packets_total{iface="eth2"} 400
# HELP sensor_interface_attached 1 while the program is attached to the watched interface, 0 while it is gone.
# TYPE sensor_interface_attached gauge
sensor_interface_attached{iface="eth1"} 1
sensor_interface_attached{iface="eth2"} 0
# HELP sensor_interface_lost_total Times the watched interface disappeared.
# TYPE sensor_interface_lost_total counter
sensor_interface_lost_total{iface="eth1"} 1
sensor_interface_lost_total{iface="eth2"} 2
# HELP sensor_interface_reattached_total Times the sensor attached again to the returning interface.
# TYPE sensor_interface_reattached_total counter
sensor_interface_reattached_total{iface="eth1"} 1
sensor_interface_reattached_total{iface="eth2"} 1
# HELP sensor_drop_mode_block_errors_total Drop mode: blocks the kernel could not record (the packet was dropped, its source not blocked).
# TYPE sensor_drop_mode_block_errors_total counter
sensor_drop_mode_block_errors_total 0
# HELP sensor_tunnel_lost_total Frames that may carry a tunnel and went unjudged (the program that decapsulates could not be called).
# TYPE sensor_tunnel_lost_total counter
sensor_tunnel_lost_total 0
# HELP sensor_tunnel_packets_total Frames judged on a tunnel's inner packet (decapsulated).
# TYPE sensor_tunnel_packets_total counter
sensor_tunnel_packets_total 0
# HELP sensor_blocked_source_seconds_left Drop mode: sources blocked now, with the seconds their block has left.
# TYPE sensor_blocked_source_seconds_left gauge
sensor_blocked_source_seconds_left{src="198.51.100.7",sig_id="100001"} 297
# HELP sensor_proven_sources Drop mode: source addresses proven by a TCP handshake whose proof holds now.
# TYPE sensor_proven_sources gauge
sensor_proven_sources 4
# HELP sensor_drop_mode_proofs_total Drop mode: TCP handshakes that proved their client's address.
# TYPE sensor_drop_mode_proofs_total counter
sensor_drop_mode_proofs_total 9
# HELP sensor_drop_mode_blocks_refused_total Drop mode: matches of drop rules that did not block their source, by reason.
# TYPE sensor_drop_mode_blocks_refused_total counter
sensor_drop_mode_blocks_refused_total{reason="not_proven"} 2
sensor_drop_mode_blocks_refused_total{reason="not_repeated"} 0
# HELP sensor_drop_mode_blocks_total Drop mode: sources blocked, by block_when.
# TYPE sensor_drop_mode_blocks_total counter
sensor_drop_mode_blocks_total{block_when="proven"} 1
sensor_drop_mode_blocks_total{block_when="repeated"} 0
sensor_drop_mode_blocks_total{block_when="first_match"} 5
"#;
        assert_eq!(render(&small_snapshot()), expected);
    }

    #[test]
    fn escapes_label_values_and_help_text() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nnext"), r"line\nnext");
        assert_eq!(escape_help("a\\b\nc \"q\""), r#"a\\b\nc "q""#);
    }

    #[test]
    fn no_rules_still_declares_the_rule_families() {
        let text = render(&MetricsSnapshot::default());
        assert!(
            text.contains("# TYPE sensor_rule_hits_total counter\n# HELP sensor_rule_alerts_total")
        );
        assert!(!text.contains("sensor_rule_hits_total{"));
        // Every sample line is NAME[{labels}] VALUE, and names carry the prefix.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.starts_with("sensor_"), "{line}");
            assert!(
                line.rsplit_once(' ').unwrap().1.parse::<u64>().is_ok(),
                "{line}"
            );
        }
    }

    #[test]
    fn routes_requests() {
        let snapshot = RwLock::new(small_snapshot());
        let request = |method: Method, uri: &str| {
            Request::builder().method(method).uri(uri).body(()).unwrap()
        };
        let ok = respond(&request(Method::GET, "/metrics?x=1"), &snapshot);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE], CONTENT_TYPE_TEXT_0_0_4);
        assert_eq!(
            respond(&request(Method::GET, "/"), &snapshot).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&request(Method::GET, "/metrics/x"), &snapshot).status(),
            StatusCode::NOT_FOUND
        );
        let post = respond(&request(Method::POST, "/metrics"), &snapshot);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
    }
}
