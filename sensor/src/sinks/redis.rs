//! The Redis sink (`--redis`): every alert line, exactly as the JSON sink
//! writes it, pushed to a list (RPUSH), published on a channel (PUBLISH) or
//! appended to a stream (XADD with an approximate MAXLEN cap, one field
//! `alert`), as Suricata's EVE Redis output does.
//!
//! It never blocks detection: lines wait in a bounded queue (losses past
//! the bound are counted) for a task that owns the connection, writes what
//! is queued as one pipeline, and on a failure reconnects with backoff and
//! writes the same batch again (so a peer that fails mid-pipeline may see a
//! line twice: at least once, never silently lost within the bound).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::settings::RedisMode;
use crate::sinks::queue::QueueAccount;
use crate::sinks::syslog::backoff_delay;

/// Lines waiting for Redis at most (the bound, as syslog's).
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Lines written in one pipeline at most.
const BATCH: usize = 512;
/// Longest wait for a connection or a pipeline's answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` or `rediss://...` (TLS).
    pub url: String,
    pub key: String,
    pub mode: RedisMode,
    /// Stream mode: `MAXLEN ~` of the stream.
    pub stream_maxlen: u64,
    /// `rediss://` with `--redis-ca`: the PEM CA certificates the server's
    /// must chain to (otherwise the system's roots).
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisTarget {
    pub const DEFAULT_KEY: &'static str = "sensor";
    pub const DEFAULT_STREAM_MAXLEN: u64 = 100_000;

    /// Checks the URL: `redis://` or `rediss://`, with a host.
    pub fn check_url(url: &str) -> Result<(), String> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(format!(
                "invalid Redis URL `{url}`: expected redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]"
            ));
        }
        redis::Client::open(url)
            .map(|_| ())
            .map_err(|err| format!("invalid Redis URL `{url}`: {err}"))
    }

    /// Reads `--redis-ca` (`role` names it in messages): only with
    /// `rediss://`, and only a file of usable CA certificates.
    pub fn read_ca(url: &str, ca: Option<(PathBuf, String)>) -> Result<Option<Vec<u8>>, String> {
        let Some((path, role)) = ca else {
            return Ok(None);
        };
        if !url.starts_with("rediss://") {
            return Err(format!(
                "{role} is only for rediss:// (TLS) Redis URLs, not `{}`",
                url.split_once("://").map_or(url, |(scheme, _)| scheme)
            ));
        }
        crate::sinks::tls::read_ca_pem(&role, &path)
            .map(Some)
            .map_err(|err| err.to_string())
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        match &self.ca_pem {
            None => redis::Client::open(self.url.as_str()),
            Some(pem) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
    }
}

impl fmt::Display for RedisTarget {
    /// The URL without its password, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}***{}", &self.url[..scheme + 3], &self.url[at..])
            }
            _ => self.url.clone(),
        };
        write!(f, "{shown} ({} {})", self.mode.name(), self.key)
    }
}

/// What the sink has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Lines Redis acknowledged.
    pub sent: u64,
    /// Refused because `capacity` lines were already waiting.
    pub dropped_queue_full: u64,
    /// Still waiting when shutdown ran out of time.
    pub dropped_on_close: u64,
    /// Failed connection attempts and failed pipelines (each retried).
    pub errors: u64,
    /// Connections opened again after one was lost or failed.
    pub reconnects: u64,
    /// Accepted and not yet acknowledged.
    pub queued: u64,
}

impl RedisStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_on_close
    }
}

#[derive(Default)]
struct Counters {
    queue: QueueAccount,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RedisStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
        let queue = self.queue.figures();
        RedisStats {
            sent: queue.sent,
            dropped_queue_full: queue.dropped_queue_full,
            dropped_on_close: queue.dropped_on_close,
            errors: get(&self.errors),
            reconnects: get(&self.reconnects),
            queued: queue.queued,
        }
    }
}

/// The engine's side of the sink.
pub struct RedisHandle {
    target: RedisTarget,
    capacity: u64,
    queue: mpsc::Sender<String>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl RedisHandle {
    /// Starts the writer task. The URL must have passed
    /// [`RedisTarget::check_url`].
    pub fn spawn(target: RedisTarget, capacity: usize) -> RedisHandle {
        let capacity = capacity.max(1);
        let (queue, lines) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            target: target.clone(),
            lines,
            counters: counters.clone(),
            failures_in_a_row: 0,
            connected_before: false,
        };
        RedisHandle {
            target,
            capacity: capacity as u64,
            queue,
            counters,
            task: tokio::spawn(writer.run()),
        }
    }

    /// Queues one JSON line without waiting; false when it was dropped
    /// (and counted) because the queue is full.
    pub fn send(&self, line: &str) -> bool {
        let counters = &self.counters;
        if !counters.queue.reserve(self.capacity, || {
            tracing::warn!(target = %self.target, capacity = self.capacity,
                "Redis queue full: dropping alerts until Redis catches up");
        }) {
            return false;
        }
        if self.queue.try_send(line.to_owned()).is_err() {
            counters.queue.lost_to_a_closed_writer();
            tracing::error!(target = %self.target, "Redis writer task is gone; alert dropped");
            return false;
        }
        true
    }

    pub fn stats(&self) -> RedisStats {
        self.counters.snapshot()
    }

    /// Stops taking lines and writes what is queued until `deadline`; the
    /// rest is counted in `dropped_on_close`.
    pub async fn close(self, deadline: Duration) -> RedisStats {
        let RedisHandle {
            target,
            queue,
            counters,
            mut task,
            ..
        } = self;
        drop(queue);
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let left = counters.queue.drop_the_rest();
        if left > 0 {
            tracing::error!(target = %target, dropped = left,
                "Redis did not take every alert before shutdown; the rest are dropped");
        }
        let stats = counters.snapshot();
        tracing::info!(target = %target, sent = stats.sent, dropped = stats.dropped(),
            reconnects = stats.reconnects, "Redis sink closed");
        stats
    }
}

/// The writer task: owns the connection.
struct Writer {
    target: RedisTarget,
    lines: mpsc::Receiver<String>,
    counters: Arc<Counters>,
    failures_in_a_row: u32,
    connected_before: bool,
}

impl Writer {
    async fn run(mut self) {
        let client = match self.target.client() {
            Ok(client) => client,
            Err(err) => {
                // check_url passed, so this does not happen; never silent.
                tracing::error!(target = %self.target, error = %err, "Redis URL refused");
                return;
            }
        };
        let mut connection = None;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(line) = self.lines.recv().await {
            batch.push(line);
            while batch.len() < BATCH {
                match self.lines.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(_) => break,
                }
            }
            self.deliver(&client, &mut connection, &batch).await;
            batch.clear();
        }
    }

    /// Returns once Redis has acknowledged the whole batch.
    async fn deliver(
        &mut self,
        client: &redis::Client,
        connection: &mut Option<redis::aio::MultiplexedConnection>,
        batch: &[String],
    ) {
        let pipeline = self.pipeline(batch);
        loop {
            if self.failures_in_a_row > 0 {
                tokio::time::sleep(backoff_delay(self.failures_in_a_row)).await;
            }
            if connection.is_none() {
                let opened =
                    tokio::time::timeout(IO_TIMEOUT, client.get_multiplexed_async_connection())
                        .await;
                match opened {
                    Ok(Ok(opened)) => {
                        if self.connected_before {
                            self.counters.reconnects.fetch_add(1, Ordering::AcqRel);
                            tracing::info!(target = %self.target, "Redis reconnected");
                        }
                        self.connected_before = true;
                        *connection = Some(opened);
                    }
                    Ok(Err(err)) => {
                        self.failed("cannot connect to Redis", &err.to_string());
                        continue;
                    }
                    Err(_) => {
                        self.failed("cannot connect to Redis", "timed out");
                        continue;
                    }
                }
            }
            let open = connection.as_mut().expect("connected above");
            let written = tokio::time::timeout(IO_TIMEOUT, pipeline.query_async::<()>(open)).await;
            match written {
                Ok(Ok(())) => {
                    let n = batch.len() as u64;
                    self.counters.queue.sent(n);
                    self.failures_in_a_row = 0;
                    return;
                }
                Ok(Err(err)) => {
                    *connection = None;
                    self.failed("cannot write to Redis", &err.to_string());
                }
                Err(_) => {
                    *connection = None;
                    self.failed("cannot write to Redis", "timed out");
                }
            }
        }
    }

    fn pipeline(&self, batch: &[String]) -> redis::Pipeline {
        let key = self.target.key.as_str();
        let mut pipeline = redis::pipe();
        match self.target.mode {
            RedisMode::List => {
                pipeline.rpush(key, batch).ignore();
            }
            RedisMode::Channel => {
                for line in batch {
                    pipeline.publish(key, line).ignore();
                }
            }
            RedisMode::Stream => {
                let cap = redis::streams::StreamMaxlen::Approx(self.target.stream_maxlen as usize);
                for line in batch {
                    pipeline
                        .xadd_maxlen(key, cap, "*", &[("alert", line)])
                        .ignore();
                }
            }
        }
        pipeline
    }

    fn failed(&mut self, what: &str, error: &str) {
        self.counters.errors.fetch_add(1, Ordering::AcqRel);
        if self.failures_in_a_row == 0 || self.failures_in_a_row.is_power_of_two() {
            tracing::warn!(target = %self.target, error, failures = self.failures_in_a_row + 1,
                queued = self.counters.queue.figures().queued,
                "{what}; alerts stay queued and are retried");
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(RedisTarget::check_url("redis://127.0.0.1:6379").is_ok());
        assert!(RedisTarget::check_url("redis://:secret@127.0.0.1:6379/2").is_ok());
        assert!(RedisTarget::check_url("rediss://127.0.0.1:6380").is_ok());
        let err = RedisTarget::check_url("http://127.0.0.1:6379").unwrap_err();
        assert!(err.contains("expected redis://"), "{err}");
        let target = RedisTarget {
            url: "redis://:secret@127.0.0.1:6379/2".into(),
            key: "sensor".into(),
            mode: RedisMode::Stream,
            stream_maxlen: 10,
            ca_pem: None,
        };
        let shown = target.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(shown, "redis://***@127.0.0.1:6379/2 (stream sensor)");
    }
}
