//! The kernel's counters and drop-mode maps as the metrics and block
//! tracking read them, over any handle of the map: the loaded program's own
//! ([`Kernel`]'s methods) or a second one ([`KernelReader`]), which `sensor
//! run` reads on a blocking thread, off the task that drains alert records.
//! One per-CPU sum ([`sum_over_cpus`]) for every per-CPU value read here.

use std::os::fd::AsFd;

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use sensor_common::alert::IFINDEX_DIRECT;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{
    BlockEntry, MAX_RULES, RULE_GENERATIONS, RuleStats, block_when, counter,
};

use super::{Counters, Kernel, LoaderError, map_err, removed_or_gone};

/// A per-CPU value summed over CPUs with `add`.
pub(super) fn sum_over_cpus<V: aya::Pod + Default>(
    values: &PerCpuValues<V>,
    add: impl Fn(V, V) -> V,
) -> V {
    values
        .iter()
        .fold(V::default(), |acc, value| add(acc, *value))
}

/// Entries `0..len` of the per-CPU `u64` array `name`, each summed over CPUs.
pub(super) fn per_cpu_sums(
    map: &Map,
    name: &'static str,
    len: u32,
) -> Result<Vec<u64>, LoaderError> {
    let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
    (0..len)
        .map(|index| {
            let values = array.get(&index, 0).map_err(map_err(name))?;
            Ok(sum_over_cpus(&values, |a, b| a + b))
        })
        .collect()
}

fn counters(map: &Map) -> Result<Counters, LoaderError> {
    let sums = per_cpu_sums(map, "COUNTERS", counter::COUNT)?;
    let sum = |index: u32| sums[index as usize];
    Ok(Counters {
        packets: sum(counter::PACKETS),
        passed: sum(counter::PASSED),
        dropped: sum(counter::DROPPED),
        not_ip: sum(counter::NOT_IP),
        alert_output_errors: sum(counter::ALERT_OUTPUT_ERRORS),
        dropped_blocked_source: sum(counter::DROPPED_BLOCKED_SOURCE),
        dropped_static_blocklist: sum(counter::DROPPED_STATIC_BLOCKLIST),
        dropped_by_rule: sum(counter::DROPPED_BY_RULE),
        would_drop: sum(counter::WOULD_DROP),
        block_errors: sum(counter::BLOCK_ERRORS),
        tunnel_lost: sum(counter::TUNNEL_LOST),
        tunnel_packets: sum(counter::TUNNEL_PACKETS),
        proofs: sum(counter::PROOFS),
        refused_not_proven: sum(counter::REFUSED_NOT_PROVEN),
        refused_not_repeated: sum(counter::REFUSED_NOT_REPEATED),
        blocks: [
            sum(counter::BLOCKS + block_when::PROVEN as u32),
            sum(counter::BLOCKS + block_when::REPEATED as u32),
            sum(counter::BLOCKS + block_when::FIRST_MATCH as u32),
        ],
    })
}

fn rule_stats_all(map: &Map) -> Result<Vec<RuleStats>, LoaderError> {
    let array: PerCpuArray<_, RuleStats> =
        PerCpuArray::try_from(map).map_err(map_err("RULE_STATS"))?;
    (0..MAX_RULES * RULE_GENERATIONS)
        .map(|slot| {
            let values = array.get(&slot, 0).map_err(map_err("RULE_STATS"))?;
            Ok(sum_over_cpus(&values, |acc, v| RuleStats {
                hits: acc.hits + v.hits,
                alerts: acc.alerts + v.alerts,
            }))
        })
        .collect()
}

/// Every entry of the hash map `name`: an iteration error is an error.
fn all_entries<V: aya::Pod>(
    map: &Map,
    name: &'static str,
) -> Result<Vec<(AddrKey, V)>, LoaderError> {
    let hash: HashMap<_, AddrKey, V> = HashMap::try_from(map).map_err(map_err(name))?;
    hash.iter().collect::<Result<_, _>>().map_err(map_err(name))
}

/// Removes the blocks of `blocked` that ended at `now_ns`; returns them.
fn expire_blocks(
    map: &mut Map,
    blocked: Vec<(AddrKey, BlockEntry)>,
    now_ns: u64,
) -> Result<Vec<(AddrKey, BlockEntry)>, LoaderError> {
    let expired: Vec<(AddrKey, BlockEntry)> = blocked
        .into_iter()
        .filter(|(_, entry)| entry.until_ns <= now_ns)
        .collect();
    let mut hash: HashMap<_, AddrKey, BlockEntry> =
        HashMap::try_from(map).map_err(map_err("BLOCKED"))?;
    for (key, _) in &expired {
        // Gone already (LRU eviction, or a race with a new block): fine.
        removed_or_gone("BLOCKED", hash.remove(key))?;
    }
    Ok(expired)
}

fn loaded<'a>(kernel: &'a Kernel, name: &'static str) -> Result<&'a Map, LoaderError> {
    kernel.ebpf.map(name).ok_or(LoaderError::MissingMap(name))
}

impl Kernel {
    /// Entries `0..len` of the per-CPU `u64` array `name`, summed over CPUs.
    pub(super) fn per_cpu_sums(
        &self,
        name: &'static str,
        len: u32,
    ) -> Result<Vec<u64>, LoaderError> {
        per_cpu_sums(loaded(self, name)?, name, len)
    }

    /// Global counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoaderError> {
        counters(loaded(self, "COUNTERS")?)
    }

    /// Per-slot counters of both rule generations, by global slot
    /// (`generation * MAX_RULES + slot`), summed over CPUs.
    pub fn rule_stats_all(&self) -> Result<Vec<RuleStats>, LoaderError> {
        rule_stats_all(loaded(self, "RULE_STATS")?)
    }

    /// Sources blocked now (drop mode), with the kernel-clock end of each block.
    pub fn blocked_sources(&self) -> Result<Vec<(AddrKey, BlockEntry)>, LoaderError> {
        all_entries(loaded(self, "BLOCKED")?, "BLOCKED")
    }

    /// Proven sources (drop mode) with the kernel-clock time of their last
    /// handshake, proofs that have ended included.
    pub fn proven_sources(&self) -> Result<Vec<(AddrKey, u64)>, LoaderError> {
        all_entries(loaded(self, "PROVEN")?, "PROVEN")
    }

    /// Removes blocks that ended before `now_ns` (the kernel already ignores
    /// them); returns what was removed.
    pub fn expire_blocks(
        &mut self,
        now_ns: u64,
    ) -> Result<Vec<(AddrKey, BlockEntry)>, LoaderError> {
        let blocked = self.blocked_sources()?;
        let map = self
            .ebpf
            .map_mut("BLOCKED")
            .ok_or(LoaderError::MissingMap("BLOCKED"))?;
        expire_blocks(map, blocked, now_ns)
    }

    /// Second handles on the maps [`KernelReader`] reads; the program keeps
    /// its own, so the `Kernel` reads and writes them as before.
    pub fn reader(&self) -> Result<KernelReader, LoaderError> {
        let second =
            |name: &'static str| -> Result<Map, LoaderError> {
                let fd = loaded(self, name)?;
                let data = match fd {
                    Map::PerCpuArray(data)
                    | Map::Array(data)
                    | Map::HashMap(data)
                    | Map::LruHashMap(data)
                    | Map::PerCpuHashMap(data) => data,
                    _ => return Err(LoaderError::MissingMap(name)),
                };
                let owned = data.fd().as_fd().try_clone_to_owned().map_err(|io_error| {
                    LoaderError::Map {
                        name,
                        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                            call: "dup",
                            io_error,
                        }),
                    }
                })?;
                let data = MapData::from_fd(owned).map_err(map_err(name))?;
                Map::from_map_data(data).map_err(map_err(name))
            };
        Ok(KernelReader {
            counters: second("COUNTERS")?,
            rule_stats: second("RULE_STATS")?,
            blocked: second("BLOCKED")?,
            proven: second("PROVEN")?,
            iface_slots: second("IFACE_SLOTS")?,
            iface_packets: second("IFACE_PACKETS")?,
            iface_wide: second("IFACE_PACKETS_WIDE")?,
        })
    }
}

/// The counters and drop-mode maps on handles of their own: `Send`, so
/// they can be read on a blocking thread while the engine keeps working.
pub struct KernelReader {
    counters: Map,
    rule_stats: Map,
    blocked: Map,
    proven: Map,
    iface_slots: Map,
    iface_packets: Map,
    iface_wide: Map,
}

impl KernelReader {
    /// As [`Kernel::counters`].
    pub fn counters(&self) -> Result<Counters, LoaderError> {
        counters(&self.counters)
    }

    /// As [`Kernel::rule_stats_all`].
    pub fn rule_stats_all(&self) -> Result<Vec<RuleStats>, LoaderError> {
        rule_stats_all(&self.rule_stats)
    }

    /// As [`Kernel::iface_packets`].
    pub fn iface_packets(&self, ifindex: u32) -> Result<u64, LoaderError> {
        IfaceMaps {
            slots: &self.iface_slots,
            packets: &self.iface_packets,
            wide: &self.iface_wide,
        }
        .packets(ifindex)
    }

    /// As [`Kernel::blocked_sources`].
    pub fn blocked_sources(&self) -> Result<Vec<(AddrKey, BlockEntry)>, LoaderError> {
        all_entries(&self.blocked, "BLOCKED")
    }

    /// As [`Kernel::proven_sources`].
    pub fn proven_sources(&self) -> Result<Vec<(AddrKey, u64)>, LoaderError> {
        all_entries(&self.proven, "PROVEN")
    }

    /// As [`Kernel::expire_blocks`].
    pub fn expire_blocks(
        &mut self,
        now_ns: u64,
    ) -> Result<Vec<(AddrKey, BlockEntry)>, LoaderError> {
        let blocked = self.blocked_sources()?;
        expire_blocks(&mut self.blocked, blocked, now_ns)
    }
}

/// The per-interface packet maps (`IFACE_SLOTS`, `IFACE_PACKETS`,
/// `IFACE_PACKETS_WIDE`), read together.
pub(super) struct IfaceMaps<'a> {
    slots: &'a Map,
    packets: &'a Map,
    wide: &'a Map,
}

impl<'a> IfaceMaps<'a> {
    pub(super) fn of(kernel: &'a Kernel) -> Result<IfaceMaps<'a>, LoaderError> {
        Ok(IfaceMaps {
            slots: loaded(kernel, "IFACE_SLOTS")?,
            packets: loaded(kernel, "IFACE_PACKETS")?,
            wide: loaded(kernel, "IFACE_PACKETS_WIDE")?,
        })
    }

    /// Packets seen on interface `ifindex`, summed over CPUs; 0 when it is
    /// not counted.
    pub(super) fn packets(&self, ifindex: u32) -> Result<u64, LoaderError> {
        if ifindex >= IFINDEX_DIRECT {
            let wide: PerCpuHashMap<_, u32, u64> =
                PerCpuHashMap::try_from(self.wide).map_err(map_err("IFACE_PACKETS_WIDE"))?;
            return match wide.get(&ifindex, 0) {
                Ok(values) => Ok(values.iter().sum()),
                Err(MapError::KeyNotFound) => Ok(0),
                Err(err) => Err(map_err("IFACE_PACKETS_WIDE")(err)),
            };
        }
        let slots: Array<_, u32> = Array::try_from(self.slots).map_err(map_err("IFACE_SLOTS"))?;
        let slot = slots.get(&ifindex, 0).map_err(map_err("IFACE_SLOTS"))?;
        if slot == 0 {
            return Ok(0);
        }
        let packets: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.packets).map_err(map_err("IFACE_PACKETS"))?;
        let values = packets.get(&slot, 0).map_err(map_err("IFACE_PACKETS"))?;
        Ok(values.iter().sum())
    }
}
