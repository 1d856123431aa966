//! Drains the kernel's inspect perf buffers like `crate::perf` does for
//! alerts: one tokio task per online CPU, woken by its ring's fd.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use aya::maps::{MapData, PerfEventArray};
use sensor_common::filter::InspectRecord;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Pages per CPU ring (a power of two): 256 KiB with 4 KiB pages, about
/// 2,500 records of burst per CPU.
pub const PAGES_PER_CPU: usize = 64;

#[derive(Debug, Default)]
pub struct ReaderStats {
    /// Samples the kernel could not write because a ring was full.
    pub lost: AtomicU64,
    /// Samples whose size did not match [`InspectRecord`].
    pub malformed: AtomicU64,
}

/// Starts one reader per online CPU. When `shutdown` turns true each reader
/// forwards what its ring still holds and ends.
pub fn spawn_readers(
    events: &mut PerfEventArray<MapData>,
    tx: mpsc::Sender<InspectRecord>,
    stats: Arc<ReaderStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let cpus = aya::util::online_cpus()
        .map_err(|(what, err)| format!("listing online CPUs ({what}): {err}"))?;
    let mut tasks = Vec::with_capacity(cpus.len());
    for cpu in cpus {
        let buffer = events
            .open(cpu, Some(PAGES_PER_CPU))
            .map_err(|err| format!("opening the inspect perf buffer of CPU {cpu}: {err}"))?;
        // SAFETY: the fd belongs to `buffer`, which the AsyncFd owns.
        let buffer = unsafe { AsyncFd::register_with_interest(buffer, Interest::READABLE) }
            .map_err(|err| {
                format!(
                    "registering the perf buffer of CPU {cpu} with tokio: {}",
                    err.into_parts().1
                )
            })?;
        let reader = CpuReader {
            buffer,
            tx: tx.clone(),
            stats: stats.clone(),
        };
        tasks.push(tokio::spawn(reader.run(shutdown.clone())));
    }
    Ok(tasks)
}

struct CpuReader {
    buffer: AsyncFd<PerfEventArrayBuffer<MapData>>,
    tx: mpsc::Sender<InspectRecord>,
    stats: Arc<ReaderStats>,
}

impl CpuReader {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                ready = self.buffer.readable_mut() => {
                    let Ok(mut guard) = ready else { return };
                    guard.clear_ready();
                }
                _ = shutdown.changed() => {
                    let rest = self.take();
                    self.forward(rest).await;
                    return;
                }
            }
            let batch = self.take();
            if !self.forward(batch).await {
                return;
            }
        }
    }

    fn take(&mut self) -> Vec<InspectRecord> {
        let mut batch = Vec::new();
        let stats = &self.stats;
        self.buffer.get_mut().for_each(|event| match event {
            PerfEvent::Sample { head, tail } => match decode(head, tail) {
                Some(record) => batch.push(record),
                None => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            },
            PerfEvent::Lost { count } => {
                stats.lost.fetch_add(count, Ordering::Relaxed);
            }
        });
        batch
    }

    async fn forward(&self, batch: Vec<InspectRecord>) -> bool {
        for record in batch {
            if self.tx.send(record).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// One sample's bytes (possibly wrapped around the ring) as a record.
pub fn decode(head: &[u8], tail: &[u8]) -> Option<InspectRecord> {
    const SIZE: usize = std::mem::size_of::<InspectRecord>();
    if head.len() + tail.len() < SIZE {
        return None;
    }
    let mut bytes = [0u8; SIZE];
    let from_head = head.len().min(SIZE);
    bytes[..from_head].copy_from_slice(&head[..from_head]);
    bytes[from_head..].copy_from_slice(&tail[..SIZE - from_head]);
    // SAFETY: InspectRecord is plain #[repr(C)] data; every bit pattern is valid.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<InspectRecord>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_joins_a_sample_wrapped_around_the_ring() {
        let mut record = InspectRecord {
            timestamp_ns: 42,
            ..InspectRecord::default()
        };
        record.packet.src_port = 41000;
        record.packet.ttl = 64;
        let size = std::mem::size_of::<InspectRecord>();
        // SAFETY: reading the bytes of a plain #[repr(C)] value.
        let bytes = unsafe {
            std::slice::from_raw_parts((&record as *const InspectRecord).cast::<u8>(), size)
        };
        for split in 0..=size {
            let (head, tail) = bytes.split_at(split);
            assert_eq!(decode(head, tail), Some(record), "split at {split}");
        }
        assert_eq!(decode(&bytes[..size - 1], &[]), None);
    }
}
