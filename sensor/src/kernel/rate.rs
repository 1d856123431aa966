//! Reading the kernel's alert rate map (`RATE`) for the engine's sweeps.
//! [`RateReader`] owns the map, so `sensor run` can read it on a blocking
//! thread while the engine keeps draining records: a full map is 65,536
//! keys, each a syscall or two.

use std::borrow::Borrow;

use aya::maps::{MapData, PerCpuHashMap};
use sensor_common::tables::{RateKey, RateState};

use crate::kernel::loader::LoaderError;

/// `(key, CPU, state)` for every CPU's entry that counted a match.
pub type RateEntries = Vec<(RateKey, u32, RateState)>;

/// The rate map, taken out of the loaded program.
pub struct RateReader {
    map: PerCpuHashMap<MapData, RateKey, RateState>,
}

impl RateReader {
    pub(crate) fn new(map: PerCpuHashMap<MapData, RateKey, RateState>) -> RateReader {
        RateReader { map }
    }

    pub fn entries(&self) -> Result<RateEntries, LoaderError> {
        read_entries(&self.map)
    }
}

/// Every entry of a rate map with a non-zero total, per CPU. An iteration
/// error is an error, never an early end (a sweep would take missing keys
/// for evicted ones).
pub(crate) fn read_entries<T: Borrow<MapData>>(
    hash: &PerCpuHashMap<T, RateKey, RateState>,
) -> Result<RateEntries, LoaderError> {
    let mut out = Vec::new();
    for entry in hash.iter() {
        let (key, values) = entry.map_err(|source| LoaderError::Map {
            name: "RATE",
            source,
        })?;
        for (cpu, state) in values.iter().enumerate() {
            if state.matched_total > 0 {
                out.push((key, cpu as u32, *state));
            }
        }
    }
    Ok(out)
}
