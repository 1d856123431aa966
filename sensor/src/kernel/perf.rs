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
        let reader = CpuReader {
            cpu,
            buffer,
            tx: tx.clone(),
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(reader.run(shutdown.clone())));
    }
    Ok(tasks)
}

struct CpuReader<T> {
    cpu: u32,
    buffer: AsyncFd<PerfEventArrayBuffer<MapData>>,
    tx: mpsc::Sender<T>,
    stats: Arc<PerfStats>,
}

impl<T: Sample> CpuReader<T> {
    /// Until shutdown (`Ok`), the engine going away (`Ok`), or a failed
    /// buffer (`Err`, logged: the owner decides what to do about it).
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), PerfError> {
        loop {
            tokio::select! {
                ready = self.buffer.readable_mut() => match ready {
                    Ok(mut guard) => guard.clear_ready(),
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
        self.buffer.get_mut().for_each(|event| match event {
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
