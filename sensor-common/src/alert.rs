//! The record the XDP program sends to userspace for each alert.

use crate::packet::PacketMeta;

/// `AlertRecord::action` values.
pub mod outcome {
    /// The packet was passed (ids mode, or an alert-only rule).
    pub const ALLOWED: u8 = 0;
    /// The packet was dropped / its source blocked.
    pub const BLOCKED: u8 = 1;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertRecord {
    /// Kernel monotonic clock (`bpf_ktime_get_ns`), or capture time in replay.
    pub timestamp_ns: u64,
    /// For `syn_flood`: SYNs counted in the window. For every other kind:
    /// the (rule, source) running total of matched packets on the CPU that
    /// sent it ([`crate::tables::RateState::matched_total`]); userspace turns
    /// it into the line's `count`.
    pub count: u64,
    /// The rule's `id`.
    pub sig_id: u32,
    /// CPU the record came from (the rate-limit totals are per CPU).
    pub cpu: u32,
    /// [`crate::tables::kind`] of the rule.
    pub kind: u8,
    /// [`outcome`].
    pub action: u8,
    pub _pad: [u8; 6],
    pub packet: PacketMeta,
}

#[cfg(feature = "user")]
// SAFETY: plain #[repr(C)] data with explicit padding.
unsafe impl aya::Pod for AlertRecord {}
