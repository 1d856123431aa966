//! The kernel's per-second readings, taken on a blocking thread so that
//! the engine's task only drains records: the rate map (for the sweep), the
//! counters and per-rule stats (for the metrics), drop mode's blocks (ended
//! ones lifted, new ones logged, the state file written) and, now and then,
//! the proven sources. One job at a time owns [`KernelSide`] and hands it
//! back with its [`Readings`] through the job's handle: a queue of one. A
//! tick that finds the job still running starts none; nothing is lost, the
//! next job reads the maps' whole state.

use std::collections::HashMap;
use std::path::PathBuf;

use sensor_common::packet::AddrKey;
use sensor_common::proof::proof_holds;
use sensor_common::tables::{BlockEntry, RuleStats};

use crate::alert::ip_addr;
use crate::engine::clock::Clock;
use crate::kernel::blockstate;
use crate::kernel::loader::{Counters, Kernel, KernelReader, LoaderError};
use crate::kernel::rate::{RateEntries, RateReader};
use crate::settings::DropPolicy;

/// How often the proven sources are counted: a walk of a map of up to
/// 65,536 entries, two system calls each.
const PROVEN_SAMPLE_NS: u64 = 10_000_000_000;

/// What the readings job owns between two jobs.
pub(super) struct KernelSide {
    pub(super) rate: RateReader,
    pub(super) reader: KernelReader,
    /// Drop mode's blocks; `None` in IDS mode.
    pub(super) blocks: Option<BlockTracker>,
    /// Drop mode: the proven sources counted at a time.
    pub(super) proven: ProvenSample,
    pub(super) policy: DropPolicy,
}

/// One job's results, with the side it borrowed.
pub(super) struct Readings {
    pub(super) side: KernelSide,
    /// The rate map, and when it was read (monotonic).
    pub(super) rate: Result<RateEntries, LoaderError>,
    pub(super) now: u64,
    /// The counters and both generations' rule stats, when metrics are served.
    pub(super) figures: Option<Result<KernelFigures, LoaderError>>,
    /// The engine's rule-set installs when the job started: figures read
    /// across an install may mix the old slots with the new.
    pub(super) installs: u64,
}

/// The kernel's side of a metrics snapshot.
pub(super) struct KernelFigures {
    pub(super) counters: Counters,
    pub(super) rule_stats: Vec<RuleStats>,
    /// Packets seen per watched interface index, this life of each.
    pub(super) iface_packets: HashMap<u32, u64>,
}

impl KernelSide {
    /// The job: everything read once, in the order the engine did it.
    /// `ifindexes`: the watched interfaces attached now.
    pub(super) fn read(
        mut self,
        with_figures: bool,
        installs: u64,
        ifindexes: Vec<u32>,
    ) -> Readings {
        let rate = self.rate.entries();
        let now = Clock::monotonic_now();
        if let Some(tracker) = self.blocks.as_mut() {
            let expired = self.reader.expire_blocks(now);
            let current = self.reader.blocked_sources();
            tracker.track(now, expired, current);
        }
        let figures = with_figures.then(|| {
            let counters = self.reader.counters()?;
            let rule_stats = self.reader.rule_stats_all()?;
            let iface_packets = ifindexes
                .iter()
                .map(|ifindex| Ok((*ifindex, self.reader.iface_packets(*ifindex)?)))
                .collect::<Result<_, LoaderError>>()?;
            let reader = &self.reader;
            self.proven
                .update(now, self.policy.block.proof_ns, || reader.proven_sources());
            Ok(KernelFigures {
                counters,
                rule_stats,
                iface_packets,
            })
        });
        Readings {
            side: self,
            rate,
            now,
            figures,
            installs,
        }
    }
}

/// Drop mode's blocked sources as reported and saved.
pub(super) struct BlockTracker {
    clock: Clock,
    /// Blocked sources already reported, with the end of their block.
    pub(super) blocks: HashMap<AddrKey, BlockEntry>,
    /// `drop.state_file`.
    state_file: Option<PathBuf>,
    /// The last save failed: try again at the next tick.
    unsaved: bool,
}

impl BlockTracker {
    pub(super) fn new(clock: Clock, state_file: Option<PathBuf>) -> BlockTracker {
        BlockTracker {
            clock,
            blocks: HashMap::new(),
            state_file,
            unsaved: false,
        }
    }

    /// Logs new blocks and lifted ones (`expired`, removed from the map),
    /// keeps the map's `current` blocks, and saves them when they changed.
    pub(super) fn track(
        &mut self,
        now: u64,
        expired: Result<Vec<(AddrKey, BlockEntry)>, LoaderError>,
        current: Result<Vec<(AddrKey, BlockEntry)>, LoaderError>,
    ) {
        match expired {
            Ok(expired) => {
                for (key, entry) in expired {
                    self.blocks.remove(&key);
                    tracing::info!(src = %ip_addr(key.version, &key.addr), rule = entry.sig_id, "source unblocked");
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot expire blocks"),
        }
        let current = match current {
            Ok(current) => current,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the blocked sources");
                return;
            }
        };
        // The kernel's map is the truth (its LRU may have forgotten a block).
        let current: HashMap<AddrKey, BlockEntry> = current.into_iter().collect();
        let mut changed = current.len() != self.blocks.len();
        for (key, entry) in &current {
            if self.blocks.get(key) != Some(entry) {
                changed = true;
                let seconds = entry.until_ns.saturating_sub(now) / 1_000_000_000;
                tracing::warn!(
                    src = %ip_addr(key.version, &key.addr),
                    rule = entry.sig_id,
                    seconds_left = seconds,
                    "source blocked"
                );
            }
        }
        self.blocks = current;
        if changed || self.unsaved {
            self.save();
        }
    }

    /// Keeps the blocks for the next start (`drop.state_file`); a failure
    /// is logged and retried at the next tick.
    pub(super) fn save(&mut self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let clock = self.clock;
        let blocks = self.blocks.iter().map(|(key, entry)| (*key, *entry));
        match blockstate::save(path, blocks, |mono| clock.to_unix_ns(mono)) {
            Ok(()) => self.unsaved = false,
            Err(err) => {
                self.unsaved = true;
                tracing::error!("cannot save the blocked sources: {err}");
            }
        }
    }

    /// Puts back the blocks saved by the previous run (before attaching).
    pub(super) fn restore(&mut self, kernel: &mut Kernel) -> Result<(), LoaderError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let clock = self.clock;
        let now_unix = clock.to_unix_ns(Clock::monotonic_now());
        let saved = match blockstate::load(path, now_unix, |unix| clock.to_monotonic_ns(unix)) {
            Ok(saved) => saved,
            Err(err) => {
                // Fail open: no block is restored, none is half-restored.
                tracing::error!("{err}");
                return Ok(());
            }
        };
        for (key, entry) in &saved {
            kernel.restore_block(key, entry)?;
            self.blocks.insert(*key, *entry);
        }
        tracing::info!(
            blocks = saved.len(),
            file = %path.display(),
            "blocked sources restored"
        );
        Ok(())
    }
}

/// The last count of proven sources and when it was taken (kernel clock).
#[derive(Debug, Default)]
pub(super) struct ProvenSample(Option<(u64, u64)>);

impl ProvenSample {
    /// Counts the proven sources whose proof holds at `now` when the last
    /// count is older than [`PROVEN_SAMPLE_NS`]; a failed walk is logged
    /// and keeps the previous count.
    pub(super) fn update(
        &mut self,
        now: u64,
        proof_ns: u64,
        walk: impl FnOnce() -> Result<Vec<(AddrKey, u64)>, LoaderError>,
    ) {
        let due = self
            .0
            .is_none_or(|(_, at)| now.saturating_sub(at) >= PROVEN_SAMPLE_NS);
        if !due {
            return;
        }
        match walk() {
            Ok(sources) => {
                let holding = sources
                    .iter()
                    .filter(|(_, at)| proof_holds(*at, now, proof_ns))
                    .count();
                self.0 = Some((holding as u64, now));
            }
            Err(err) => tracing::error!(error = %err, "cannot count the proven sources"),
        }
    }

    /// The last count (0 before the first).
    pub(super) fn count(&self) -> u64 {
        self.0.map_or(0, |(count, _)| count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(name: &'static str) -> LoaderError {
        LoaderError::Map {
            name,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_get_next_key",
                io_error: std::io::Error::from_raw_os_error(libc::EFAULT),
            }),
        }
    }

    fn source(last: u8) -> AddrKey {
        crate::rules::compile::addr_key([198, 51, 100, last].into())
    }

    /// A blocked-sources read that fails keeps the blocks known so far
    /// (never an empty list, which would read as "everyone unblocked").
    #[test]
    fn a_failed_read_of_the_blocks_keeps_the_known_ones() {
        let mut tracker = BlockTracker::new(Clock::with_offset(0), None);
        let entry = BlockEntry {
            until_ns: 50,
            sig_id: 7,
            ..BlockEntry::default()
        };
        tracker.track(10, Ok(vec![]), Ok(vec![(source(1), entry)]));
        assert_eq!(tracker.blocks.len(), 1);
        tracker.track(20, Err(failed("BLOCKED")), Err(failed("BLOCKED")));
        assert_eq!(tracker.blocks.get(&source(1)), Some(&entry));
        tracker.track(60, Ok(vec![(source(1), entry)]), Ok(vec![]));
        assert!(tracker.blocks.is_empty(), "lifted once ended");
    }

    /// A proven-sources walk that fails keeps the last count; a count is
    /// taken again only when the last is old enough.
    #[test]
    fn a_failed_walk_of_the_proven_sources_keeps_the_last_count() {
        let mut sample = ProvenSample::default();
        let proof_ns = 600 * 1_000_000_000;
        sample.update(1_000, proof_ns, || {
            Ok(vec![(source(1), 900), (source(2), 950)])
        });
        assert_eq!(sample.count(), 2);
        sample.update(1_000 + PROVEN_SAMPLE_NS, proof_ns, || Err(failed("PROVEN")));
        assert_eq!(sample.count(), 2, "the last count stays");
        sample.update(1_000 + PROVEN_SAMPLE_NS + 1, proof_ns, || {
            Ok(vec![(source(1), 900)])
        });
        assert_eq!(sample.count(), 1, "the failed walk did not count as taken");
    }
}
