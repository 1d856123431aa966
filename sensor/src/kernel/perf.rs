//! Drains the kernel's perf buffers (alert records with their frame bytes,
//! inspect records): one tokio task per online CPU, woken by the buffer's
//! fd (`AsyncFd`). Records go to a bounded channel; when it is full the
//! reader waits, the ring fills, and the kernel counts what it cannot write
//! (reported to us as lost samples, never hidden).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use aya::maps::{MapData, PerfEventArray};
use sensor_common::alert::{AlertRecord, MAX_ALERT_PACKET_BYTES};
use sensor_common::filter::InspectRecord;
use sensor_common::zerocopy::FromBytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Pages per CPU ring (a power of two): 512 KiB with 4 KiB pages, room for
/// about 2,000 alert records (256 bytes each with the sample header and the
/// default 128 frame bytes) or 5,000 inspect records of burst per CPU
/// before the kernel loses any.
pub const PAGES_PER_CPU: usize = 128;

/// Counters shared by every reader.
#[derive(Debug, Default)]
pub struct PerfStats {
    /// Samples the kernel could not write because a ring was full.
    pub lost: AtomicU64,
    /// Samples read whose size did not match the record type.
    pub malformed: AtomicU64,
    /// Records read.
    pub received: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error("listing online CPUs ({0}): {1}")]
    Cpus(&'static str, std::io::Error),
    #[error("opening the perf buffer of CPU {cpu}: {source}")]
    Open {
        cpu: u32,
        #[source]
        source: aya::maps::perf::PerfBufferError,
    },
    #[error("registering the perf buffer of CPU {cpu} with tokio: {source}")]
    Register {
        cpu: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting on the perf buffer of CPU {cpu}: {source}; its records can no longer be read")]
    Read {
        cpu: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A running reader: ends with an error when its buffer fails.
pub type Reader = JoinHandle<Result<(), PerfError>>;

/// Waits for `readers` after shutdown; every failure or panic is logged
/// and returned (none is dropped on the floor).
pub async fn join_readers(readers: Vec<Reader>) -> Vec<String> {
    let mut problems = Vec::new();
    for reader in readers {
        let problem = match reader.await {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => err.to_string(),
            Err(join) => format!("a perf reader task died: {join}"),
        };
        tracing::error!("{problem}");
        problems.push(problem);
    }
    problems
}

/// What one perf sample decodes to.
pub trait Sample: Sized + Send + 'static {
    /// The sample's bytes, possibly wrapped around the ring; `None` when
    /// they do not hold a well-formed sample.
    fn decode(head: &[u8], tail: &[u8]) -> Option<Self>;
}

impl Sample for InspectRecord {
    fn decode(head: &[u8], tail: &[u8]) -> Option<Self> {
        decode(head, tail)
    }
}

/// An alert record and the frame bytes the kernel appended to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSample {
    pub record: AlertRecord,
    /// The frame's first `record.captured_len` bytes.
    pub frame: Vec<u8>,
}

impl Sample for AlertSample {
    fn decode(head: &[u8], tail: &[u8]) -> Option<Self> {
        let record: AlertRecord = decode(head, tail)?;
        let captured = usize::from(record.captured_len);
        let start = std::mem::size_of::<AlertRecord>();
        // The sample is padded to 8 bytes after the frame: it may be longer.
        if record.captured_len > MAX_ALERT_PACKET_BYTES
            || head.len() + tail.len() < start + captured
        {
            return None;
        }
        let frame = head
            .iter()
            .chain(tail)
            .skip(start)
            .take(captured)
            .copied()
            .collect();
        Some(AlertSample { record, frame })
    }
}

/// Starts one reader task per online CPU. When `shutdown` turns true each
/// reader drains what its ring still holds, forwards it, and ends.
pub fn spawn_readers<T: Sample>(
    events: &mut PerfEventArray<MapData>,
    tx: mpsc::Sender<T>,
    stats: Arc<PerfStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<Reader>, PerfError> {
    let cpus = aya::util::online_cpus().map_err(|(what, err)| PerfError::Cpus(what, err))?;
    let mut tasks = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        let buffer = events
            .open(cpu, Some(PAGES_PER_CPU))
            .map_err(|source| PerfError::Open { cpu, source })?;
        // SAFETY: the fd belongs to `buffer`, which the AsyncFd owns, so it
        // stays open for as long as it is registered.
        let buffer = unsafe { AsyncFd::register_with_interest(buffer, Interest::READABLE) }
            .map_err(|err| PerfError::Register {
                cpu,
                source: err.into_parts().1,
            })?;
        tasks.push(spawn_reader(
            cpu,
            buffer,
            tx.clone(),
            stats.clone(),
            shutdown.clone(),
        ));
    }
    Ok(tasks)
}

/// A CPU's ring as its reader sees it: wait until it may hold samples,
/// then take them. The perf buffer's fd in production; a test's fake ring
/// makes the wait fail.
pub trait Ring: Send + Sync + 'static {
    /// Resolves when the ring may hold samples; an error when its fd failed.
    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send + '_;
    /// Calls `each` for every event the ring holds now.
    fn drain(&mut self, each: &mut dyn FnMut(PerfEvent<'_>));
}

impl Ring for AsyncFd<PerfEventArrayBuffer<MapData>> {
    async fn readable(&mut self) -> std::io::Result<()> {
        self.readable_mut().await?.clear_ready();
        Ok(())
    }

    fn drain(&mut self, each: &mut dyn FnMut(PerfEvent<'_>)) {
        self.get_mut().for_each(each);
    }
}

/// Starts the reader of one CPU's ring (see [`spawn_readers`]).
pub fn spawn_reader<T: Sample, R: Ring>(
    cpu: u32,
    ring: R,
    tx: mpsc::Sender<T>,
    stats: Arc<PerfStats>,
    shutdown: watch::Receiver<bool>,
) -> Reader {
    let reader = CpuReader {
        cpu,
        ring,
        tx,
        stats,
    };
    tokio::spawn(reader.run(shutdown))
}

/// The first reader that has ended while the sensor runs, as the reason to
/// stop: a reader ends early only when its ring failed, and that CPU's
/// alerts would stop for good.
pub fn stopped_reader(readers: &[Reader]) -> Option<String> {
    readers.iter().any(|reader| reader.is_finished()).then(|| {
        "a perf reader stopped (see the error above): alerts of its CPU can no longer be read"
            .to_owned()
    })
}

struct CpuReader<T, R> {
    cpu: u32,
    ring: R,
    tx: mpsc::Sender<T>,
    stats: Arc<PerfStats>,
}

impl<T: Sample, R: Ring> CpuReader<T, R> {
    /// Until shutdown (`Ok`), the engine going away (`Ok`), or a failed
    /// ring (`Err`, logged: the owner decides what to do about it).
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), PerfError> {
        loop {
            tokio::select! {
                ready = self.ring.readable() => match ready {
                    Ok(()) => {}
                    Err(source) => {
                        let err = PerfError::Read { cpu: self.cpu, source };
                        tracing::error!("{err}");
                        return Err(err);
                    }
                },
                // The only change ever sent is "stop".
                _ = shutdown.changed() => {
                    let rest = self.take();
                    self.forward(rest).await;
                    return Ok(());
                }
            }
            let batch = self.take();
            if !self.forward(batch).await {
                return Ok(());
            }
        }
    }

    /// Everything the ring holds now.
    fn take(&mut self) -> Vec<T> {
        let mut batch = Vec::new();
        let stats = &self.stats;
        self.ring.drain(&mut |event| match event {
            PerfEvent::Sample { head, tail } => match T::decode(head, tail) {
                Some(record) => batch.push(record),
                None => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            },
            PerfEvent::Lost { count } => {
                stats.lost.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(
                    lost = count,
                    "perf ring full: the kernel lost alert records"
                );
            }
        });
        stats
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch
    }

    /// Sends a batch on; false when the engine is gone.
    async fn forward(&self, batch: Vec<T>) -> bool {
        for record in batch {
            if self.tx.send(record).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// `first` and what else is queued behind it (up to `max` in all), in time
/// order: each CPU has its own ring, so records arrive interleaved.
pub fn time_ordered_batch(
    first: InspectRecord,
    rx: &mut mpsc::Receiver<InspectRecord>,
    max: usize,
) -> Vec<InspectRecord> {
    let mut batch = vec![first];
    while batch.len() < max {
        let Ok(record) = rx.try_recv() else { break };
        batch.push(record);
    }
    batch.sort_by_key(|record| record.timestamp_ns);
    batch
}

/// One sample's bytes (possibly wrapped around the ring) as a record.
pub fn decode<T: FromBytes>(head: &[u8], tail: &[u8]) -> Option<T> {
    let size = std::mem::size_of::<T>();
    if head.len() + tail.len() < size {
        return None;
    }
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&head[..head.len().min(size)]);
    bytes.extend_from_slice(&tail[..size - bytes.len()]);
    // FromBytes: every bit pattern is a T, checked by the type, not here.
    T::read_from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::zerocopy::IntoBytes;

    /// A ring that yields `samples` at its first wake-up, then fails as
    /// a broken perf fd would (or, without `fails`, waits forever).
    struct FakeRing {
        samples: Vec<Vec<u8>>,
        fails: Option<i32>,
        woken: u32,
    }

    impl Ring for FakeRing {
        fn readable(&mut self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
            self.woken += 1;
            let first = self.woken == 1;
            let fails = self.fails;
            async move {
                match (first, fails) {
                    (true, _) => Ok(()),
                    (false, Some(errno)) => Err(std::io::Error::from_raw_os_error(errno)),
                    (false, None) => std::future::pending().await,
                }
            }
        }

        fn drain(&mut self, each: &mut dyn FnMut(PerfEvent<'_>)) {
            for sample in std::mem::take(&mut self.samples) {
                each(PerfEvent::Sample {
                    head: &sample,
                    tail: &[],
                });
            }
        }
    }

    fn inspect_record_bytes(timestamp_ns: u64) -> Vec<u8> {
        InspectRecord {
            timestamp_ns,
            ..InspectRecord::default()
        }
        .as_bytes()
        .to_vec()
    }

    /// A failing ring ends its reader with an error naming the CPU, what it
    /// already read is delivered, `join_readers` reports it, and the run
    /// loop's check sees a stopped reader: the sensor stops (exit 1)
    /// instead of leaving a CPU silent.
    #[tokio::test]
    async fn a_failing_ring_stops_its_reader_loudly() {
        let (tx, mut rx) = mpsc::channel::<InspectRecord>(8);
        let stats = Arc::new(PerfStats::default());
        let (_stop, shutdown) = watch::channel(false);
        let ring = FakeRing {
            samples: vec![inspect_record_bytes(60)],
            fails: Some(libc::EBADF),
            woken: 0,
        };
        let reader = spawn_reader(3, ring, tx, stats.clone(), shutdown);
        assert_eq!(rx.recv().await.map(|record| record.timestamp_ns), Some(60));
        let readers = vec![reader];
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !readers[0].is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the reader of a failed ring ends");
        let reason = stopped_reader(&readers).expect("a stopped reader stops the run");
        assert!(reason.contains("a perf reader stopped"), "{reason}");
        let problems = join_readers(readers).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("CPU 3"), "{problems:?}");
        assert_eq!(stats.received.load(Ordering::Relaxed), 1);
    }

    /// A healthy ring's reader keeps running, and ends cleanly on shutdown.
    #[tokio::test]
    async fn a_healthy_reader_runs_until_shutdown() {
        let (tx, mut rx) = mpsc::channel::<InspectRecord>(8);
        let (stop, shutdown) = watch::channel(false);
        let ring = FakeRing {
            samples: vec![inspect_record_bytes(61)],
            fails: None,
            woken: 0,
        };
        let reader = spawn_reader(0, ring, tx, Arc::default(), shutdown);
        assert_eq!(rx.recv().await.map(|record| record.timestamp_ns), Some(61));
        let readers = vec![reader];
        assert_eq!(stopped_reader(&readers), None);
        stop.send(true).unwrap();
        assert!(join_readers(readers).await.is_empty());
    }

    #[test]
    fn decode_joins_a_sample_wrapped_around_the_ring() {
        let record = AlertRecord {
            sig_id: 100001,
            count: 7,
            ..AlertRecord::default()
        };
        let size = std::mem::size_of::<AlertRecord>();
        let bytes = record.as_bytes();
        for split in 0..=size {
            let (head, tail) = bytes.split_at(split);
            assert_eq!(decode(head, tail), Some(record), "split at {split}");
        }
        assert_eq!(decode::<AlertRecord>(&bytes[..size - 1], &[]), None);
    }

    #[test]
    fn alert_samples_carry_their_frame_bytes_wrapped_or_not() {
        let record = AlertRecord {
            sig_id: 100001,
            captured_len: 5,
            ..AlertRecord::default()
        };
        let size = std::mem::size_of::<AlertRecord>();
        let mut bytes = record.as_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]); // frame, then perf's padding
        for split in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(split);
            let sample = AlertSample::decode(head, tail).expect("well-formed");
            assert_eq!(sample.record, record);
            assert_eq!(sample.frame, [1, 2, 3, 4, 5], "split at {split}");
        }
        // Fewer bytes than the record says: malformed, not invented.
        assert_eq!(AlertSample::decode(&bytes[..size + 4], &[]), None);
    }
}
