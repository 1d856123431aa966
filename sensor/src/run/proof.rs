//! Drop mode's proof metrics: the kernel's proof and block counters, and
//! the proven sources counted now and then (`readings::ProvenSample`).
//!
//! May use: `kernel`, `metrics`.

use crate::kernel::loader::Counters;
use crate::metrics::ProofMetrics;

/// The proof and blocking metrics from the kernel's counters and the last
/// count of proven sources.
pub fn proof_metrics(counters: &Counters, proven_sources: u64) -> ProofMetrics {
    ProofMetrics {
        proven_sources,
        proofs: counters.proofs,
        refused_not_proven: counters.refused_not_proven,
        refused_not_repeated: counters.refused_not_repeated,
        blocks: counters.blocks,
    }
}
