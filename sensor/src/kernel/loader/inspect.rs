//! The inspect session's maps as `sensor inspect` drives them: the filter
//! program and its configuration, the session counters, the summary maps,
//! and the perf array inspect records arrive on.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerfEventArray};
use sensor_common::filter::{
    FilterProgram, InspectBudget, InspectConfig, TalkerStats, inspect_counter, summary,
};
use sensor_common::packet::AddrKey;

use super::readings::sum_over_cpus;
use super::{
    Kernel, LoaderError, all_keys, map_err, per_cpu_zeros, possible_cpus, removed_or_gone,
};

/// An inspect session's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InspectCounters {
    /// Packets the filter matched.
    pub matched: u64,
    /// Records sent to userspace.
    pub sent: u64,
    /// Matched but not sent: over the per-second budget.
    pub skipped_rate: u64,
    /// Records the perf buffer refused.
    pub output_errors: u64,
}

/// The inspect summary maps, summed over CPUs (cumulative since the
/// session started).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InspectSummary {
    pub talkers: Vec<(AddrKey, TalkerStats)>,
    /// Packets by IP protocol number (256 entries).
    pub protocols: Vec<u64>,
    /// Packets by TCP flags value (512 entries).
    pub tcp_flags: Vec<u64>,
    /// Packets by TTL / hop limit (256 entries).
    pub ttl: Vec<u64>,
    /// Drop mode: the sources blocked now (empty in a program of its own).
    pub blocked: Vec<crate::kernel::drop_policy::BlockedNow>,
}

impl Kernel {
    /// Starts an inspect session: the filter, the per-CPU record budget per
    /// second, and whether to count the summary maps. The session's
    /// counters, rate budget and summary maps start from zero, so a
    /// long-lived program (`sensor run`) can host one session after another.
    /// It sees the packets of interface `ifindex` only (an interface's
    /// index: 0 would see nothing).
    pub fn start_inspect(
        &mut self,
        filter: &FilterProgram,
        max_per_sec: u32,
        summary: bool,
        ifindex: u32,
    ) -> Result<(), LoaderError> {
        // Off while the maps are reset (a no-op for a fresh program).
        self.stop_inspect()?;
        self.reset_inspect_maps()?;
        let mut program: Array<_, FilterProgram> = self.map_mut("INSPECT_FILTER")?;
        program
            .set(0, filter, 0)
            .map_err(map_err("INSPECT_FILTER"))?;
        self.set_inspect_config(InspectConfig {
            enabled: 1,
            max_per_sec,
            summary: summary as u32,
            ifindex,
        })
    }

    /// Ends the inspect session: the program stops filtering and sending.
    pub fn stop_inspect(&mut self) -> Result<(), LoaderError> {
        self.set_inspect_config(InspectConfig::default())
    }

    /// Zeroes what an inspect session counts: its counters, the per-CPU
    /// rate budget, and the summary maps.
    fn reset_inspect_maps(&mut self) -> Result<(), LoaderError> {
        let cpus = possible_cpus("INSPECT_COUNTERS")?;
        for (name, len) in [
            ("INSPECT_COUNTERS", inspect_counter::COUNT),
            ("SUMMARY_PROTO", summary::PROTO_SLOTS),
            ("SUMMARY_FLAGS", summary::FLAG_SLOTS),
            ("SUMMARY_TTL", summary::TTL_SLOTS),
        ] {
            let mut array: PerCpuArray<_, u64> = self.map_mut(name)?;
            for index in 0..len {
                array
                    .set(index, per_cpu_zeros(name, cpus)?, 0)
                    .map_err(map_err(name))?;
            }
        }
        let mut budget: PerCpuArray<_, InspectBudget> = self.map_mut("INSPECT_BUDGET")?;
        budget
            .set(0, per_cpu_zeros("INSPECT_BUDGET", cpus)?, 0)
            .map_err(map_err("INSPECT_BUDGET"))?;
        let mut talkers: PerCpuHashMap<_, AddrKey, TalkerStats> =
            self.map_mut("SUMMARY_TALKERS")?;
        for key in all_keys("SUMMARY_TALKERS", talkers.keys())? {
            // Gone already (LRU eviction): fine.
            removed_or_gone("SUMMARY_TALKERS", talkers.remove(&key))?;
        }
        Ok(())
    }

    fn set_inspect_config(&mut self, config: InspectConfig) -> Result<(), LoaderError> {
        let mut array: Array<_, InspectConfig> = self.map_mut("INSPECT_CONFIG")?;
        array.set(0, config, 0).map_err(map_err("INSPECT_CONFIG"))
    }

    /// Takes the perf event array inspect records arrive on.
    pub fn take_inspect_events(&mut self) -> Result<PerfEventArray<MapData>, LoaderError> {
        let map = self
            .ebpf
            .take_map("INSPECT_EVENTS")
            .ok_or(LoaderError::MissingMap("INSPECT_EVENTS"))?;
        PerfEventArray::try_from(map).map_err(map_err("INSPECT_EVENTS"))
    }

    /// The session's counters, summed over CPUs.
    pub fn inspect_counters(&self) -> Result<InspectCounters, LoaderError> {
        let sums = self.per_cpu_sums("INSPECT_COUNTERS", inspect_counter::COUNT)?;
        Ok(InspectCounters {
            matched: sums[inspect_counter::MATCHED as usize],
            sent: sums[inspect_counter::SENT as usize],
            skipped_rate: sums[inspect_counter::SKIPPED_RATE as usize],
            output_errors: sums[inspect_counter::OUTPUT_ERRORS as usize],
        })
    }

    /// What the summary maps hold now, summed over CPUs, and the blocks
    /// that have not ended at `now_ns` (the kernel's monotonic clock).
    pub fn inspect_summary(&self, now_ns: u64) -> Result<InspectSummary, LoaderError> {
        let map = self
            .ebpf
            .map("SUMMARY_TALKERS")
            .ok_or(LoaderError::MissingMap("SUMMARY_TALKERS"))?;
        let talkers: PerCpuHashMap<_, AddrKey, TalkerStats> =
            PerCpuHashMap::try_from(map).map_err(map_err("SUMMARY_TALKERS"))?;
        let talkers = talkers
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("SUMMARY_TALKERS"))?
            .into_iter()
            .map(|(key, values)| {
                let total = sum_over_cpus(&values, |acc, v| TalkerStats {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                });
                (key, total)
            })
            .collect();
        Ok(InspectSummary {
            talkers,
            protocols: self.per_cpu_sums("SUMMARY_PROTO", summary::PROTO_SLOTS)?,
            tcp_flags: self.per_cpu_sums("SUMMARY_FLAGS", summary::FLAG_SLOTS)?,
            ttl: self.per_cpu_sums("SUMMARY_TTL", summary::TTL_SLOTS)?,
            blocked: crate::kernel::drop_policy::blocked_now(&self.blocked_sources()?, now_ns),
        })
    }
}
