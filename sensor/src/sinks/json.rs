//! JSON lines to stdout or a file: [`JsonSink`] writes (and reopens after
//! rotation); [`JsonHandle`] runs it on a writer thread behind a bounded
//! queue, so the engine never waits on the disk. Nothing is dropped
//! silently: write errors and lines dropped at a full queue are counted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::sinks::queue::Overflow;

/// `--json PATH|-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonTarget {
    Stdout,
    File(PathBuf),
}

impl JsonTarget {
    pub fn parse(spec: &str) -> JsonTarget {
        if spec == "-" {
            JsonTarget::Stdout
        } else {
            JsonTarget::File(PathBuf::from(spec))
        }
    }
}

/// Alert lines as JSON, one object per line.
pub struct JsonSink {
    target: JsonTarget,
    out: BufWriter<Box<dyn Write + Send>>,
    pub lines: u64,
    pub errors: u64,
}

impl JsonSink {
    /// Opens the target (a file is appended to, and created if missing).
    pub fn open(target: JsonTarget) -> io::Result<JsonSink> {
        let out = Self::writer(&target)?;
        Ok(JsonSink {
            target,
            out,
            lines: 0,
            errors: 0,
        })
    }

    fn writer(target: &JsonTarget) -> io::Result<BufWriter<Box<dyn Write + Send>>> {
        let inner: Box<dyn Write + Send> = match target {
            JsonTarget::Stdout => Box::new(io::stdout()),
            JsonTarget::File(path) => Box::new(append(path)?),
        };
        Ok(BufWriter::new(inner))
    }

    pub fn write_line(&mut self, line: &str) {
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        match result {
            Ok(()) => self.lines += 1,
            Err(err) => {
                self.errors += 1;
                tracing::error!(target_path = ?self.target, error = %err, "cannot write alert line");
            }
        }
    }

    /// Pushes buffered lines out (done after each batch, and at shutdown).
    pub fn flush(&mut self) {
        if let Err(err) = self.out.flush() {
            self.errors += 1;
            tracing::error!(target_path = ?self.target, error = %err, "cannot flush alert lines");
        }
    }

    /// Closes and reopens a file target (after logrotate moved it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush();
        if matches!(self.target, JsonTarget::File(_)) {
            self.out = Self::writer(&self.target)?;
        }
        Ok(())
    }
}

fn append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Lines waiting for the JSON writer; beyond it lines are dropped and
/// counted (as the syslog and Redis queues do).
pub const DEFAULT_CAPACITY: usize = 10_000;

/// What the JSON sink did, for metrics and the exit summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonStats {
    /// Lines written.
    pub lines: u64,
    /// Failed writes and flushes.
    pub errors: u64,
    /// Lines dropped because `capacity` lines were already waiting.
    pub dropped_queue_full: u64,
}

enum Command {
    Line(String),
    Reopen,
}

#[derive(Default)]
struct Shared {
    lines: AtomicU64,
    errors: AtomicU64,
    /// Lines dropped at a full queue.
    full: Overflow,
    /// A reopen asked for while the queue was full.
    reopen_pending: AtomicBool,
}

/// The engine's side of the JSON sink: lines go to a writer thread through
/// a bounded queue, so a slow disk or a blocked stdout never stalls the
/// task that drains alert records.
pub struct JsonHandle {
    target: JsonTarget,
    queue: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    writer: JoinHandle<()>,
}

impl JsonHandle {
    /// Starts the writer (a blocking thread of the current tokio runtime).
    pub fn spawn(sink: JsonSink, capacity: usize) -> JsonHandle {
        let (queue, commands) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared::default());
        let target = sink.target.clone();
        let writer = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || write_lines(sink, commands, &shared))
        };
        JsonHandle {
            target,
            queue,
            shared,
            writer,
        }
    }

    /// Queues a line without waiting; false when it was dropped (and
    /// counted) because the queue is full.
    pub fn send(&self, line: &str) -> bool {
        match self.queue.try_send(Command::Line(line.to_owned())) {
            Ok(()) => {
                self.shared.full.accepted();
                true
            }
            Err(err) => {
                let log = || {
                    tracing::warn!(
                        target_path = ?self.target,
                        "JSON writer behind (or gone): dropping alert lines until it catches up"
                    );
                };
                let mut logged = false;
                self.shared.full.refused(|| {
                    log();
                    logged = true;
                });
                // A writer that is gone is logged at every line.
                if matches!(err, mpsc::error::TrySendError::Closed(_)) && !logged {
                    log();
                }
                false
            }
        }
    }

    /// Closes and reopens a file target once the lines queued before it are
    /// written (after logrotate moved the file).
    pub fn reopen(&self) {
        if self.queue.try_send(Command::Reopen).is_err() {
            // Full: the writer picks the request up after its next batch.
            self.shared.reopen_pending.store(true, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> JsonStats {
        JsonStats {
            lines: self.shared.lines.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            dropped_queue_full: self.shared.full.dropped(),
        }
    }

    /// Writes every queued line, flushes, and stops the writer.
    pub async fn close(self) -> JsonStats {
        let JsonHandle {
            queue,
            shared,
            writer,
            ..
        } = self;
        drop(queue);
        if let Err(err) = writer.await {
            tracing::error!(error = %err, "the JSON writer failed");
        }
        JsonStats {
            lines: shared.lines.load(Ordering::Relaxed),
            errors: shared.errors.load(Ordering::Relaxed),
            dropped_queue_full: shared.full.dropped(),
        }
    }
}

/// The writer: takes whatever is queued, writes it, flushes once per
/// batch, and publishes its counts.
fn write_lines(mut sink: JsonSink, mut commands: mpsc::Receiver<Command>, shared: &Shared) {
    let apply = |sink: &mut JsonSink, command: Command| match command {
        Command::Line(line) => sink.write_line(&line),
        Command::Reopen => reopen_logged(sink),
    };
    while let Some(command) = commands.blocking_recv() {
        apply(&mut sink, command);
        while let Ok(command) = commands.try_recv() {
            apply(&mut sink, command);
        }
        sink.flush();
        if shared.reopen_pending.swap(false, Ordering::Relaxed) {
            reopen_logged(&mut sink);
        }
        shared.lines.store(sink.lines, Ordering::Relaxed);
        shared.errors.store(sink.errors, Ordering::Relaxed);
    }
    sink.flush();
    shared.lines.store(sink.lines, Ordering::Relaxed);
    shared.errors.store(sink.errors, Ordering::Relaxed);
}

fn reopen_logged(sink: &mut JsonSink) {
    if let Err(err) = sink.reopen() {
        tracing::error!(error = %err, "cannot reopen the JSON file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_appends_lines_and_reopens_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let mut sink = JsonSink::open(JsonTarget::File(path.clone())).unwrap();
        sink.write_line("{\"a\":1}");
        sink.flush();
        std::fs::rename(&path, dir.path().join("alerts.json.1")).unwrap();
        sink.reopen().unwrap();
        sink.write_line("{\"a\":2}");
        sink.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alerts.json.1")).unwrap(),
            "{\"a\":1}\n"
        );
        assert_eq!((sink.lines, sink.errors), (2, 0));
    }

    #[tokio::test]
    async fn the_writer_writes_every_queued_line_and_reopens_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let sink = JsonSink::open(JsonTarget::File(path.clone())).unwrap();
        let handle = JsonHandle::spawn(sink, 1_000);
        for n in 0..100 {
            assert!(handle.send(&format!("{{\"n\":{n}}}")));
        }
        let rotated = dir.path().join("alerts.json.1");
        // Rotate once the first lines are out, then reopen: later lines
        // land in the new file.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while handle.stats().lines < 100 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        handle.reopen();
        assert!(handle.send("{\"n\":100}"));
        let stats = handle.close().await;
        assert_eq!(
            stats,
            JsonStats {
                lines: 101,
                errors: 0,
                dropped_queue_full: 0
            }
        );
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap().lines().count(),
            100
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":100}\n");
    }

    /// A writer that never finishes its first write: the queue fills, and
    /// every line past it is dropped and counted, none waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.0.recv();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let sink = JsonSink {
            target: JsonTarget::Stdout,
            // Unbuffered, so the first line reaches the stuck writer.
            out: BufWriter::with_capacity(0, Box::new(Stuck(stuck))),
            lines: 0,
            errors: 0,
        };
        let handle = JsonHandle::spawn(sink, 4);
        let started = std::time::Instant::now();
        let sent = (0..50).filter(|n| handle.send(&format!("{n}"))).count() as u64;
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let dropped = handle.stats().dropped_queue_full;
        assert!(dropped >= 50 - 5, "dropped {dropped}");
        assert_eq!(sent + dropped, 50);
        drop(release);
        let stats = handle.close().await;
        assert_eq!(stats.dropped_queue_full, dropped);
        assert_eq!(stats.lines, sent);
    }
}
