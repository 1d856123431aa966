//! Drop mode's proof metrics: the kernel's proof and block counters, and
//! the proven sources counted now and then (a map walk).
//!
//! May use: `settings`, `kernel`, `metrics`.

use std::cell::Cell;

use sensor_common::proof::proof_holds;

use crate::kernel::loader::{Counters, Kernel};
use crate::metrics::ProofMetrics;
use crate::settings::DropPolicy;

/// How often the proven sources are counted: a walk of a map of up to
/// 65,536 entries, two system calls each.
const PROVEN_SAMPLE_NS: u64 = 10_000_000_000;

/// The last count of proven sources and when it was taken (kernel clock).
#[derive(Debug, Default)]
pub struct ProvenSample(Cell<Option<(u64, u64)>>);

/// The proof and blocking metrics from the kernel's counters, with the
/// proven sources counted at most every [`PROVEN_SAMPLE_NS`] (a failed
/// count is logged and keeps the previous one).
pub fn proof_metrics(
    kernel: &Kernel,
    counters: &Counters,
    policy: &DropPolicy,
    sample: &ProvenSample,
    now: u64,
) -> ProofMetrics {
    let due = sample
        .0
        .get()
        .is_none_or(|(_, at)| now.saturating_sub(at) >= PROVEN_SAMPLE_NS);
    if due {
        match kernel.proven_sources() {
            Ok(sources) => {
                let holding = sources
                    .iter()
                    .filter(|(_, at)| proof_holds(*at, now, policy.block.proof_ns))
                    .count();
                sample.0.set(Some((holding as u64, now)));
            }
            Err(err) => tracing::error!(error = %err, "cannot count the proven sources"),
        }
    }
    ProofMetrics {
        proven_sources: sample.0.get().map_or(0, |(count, _)| count),
        proofs: counters.proofs,
        refused_not_proven: counters.refused_not_proven,
        refused_not_repeated: counters.refused_not_repeated,
        blocks: counters.blocks,
    }
}
