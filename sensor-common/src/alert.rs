//! The record the XDP program sends to userspace for each alert.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::packet::PacketMeta;

/// `AlertRecord::aggregate` values: whose matches the record's `count`
/// totals.
pub mod aggregate {
    /// One (rule, source): the per-source rate limiter's running total.
    pub const SOURCE: u8 = 0;
    /// The rule's storm account ([`crate::tables::RateKey::rule_wide`]):
    /// matches from many sources once the CPU's alert budget was spent.
    pub const RULE: u8 = 1;
}

/// `AlertRecord::action` values.
pub mod outcome {
    /// The packet was passed (ids mode, or an alert-only rule).
    pub const ALLOWED: u8 = 0;
    /// The packet was dropped / its source blocked.
    pub const BLOCKED: u8 = 1;
}

/// `AlertRecord::block` values: what a `drop` rule's match did to the
/// packet's source (the alert's `sensor.block`).
pub mod block {
    /// Not a `drop` rule enforced on this packet: no `sensor.block`.
    pub const NONE: u8 = 0;
    pub const BLOCKED: u8 = 1;
    /// `block_when: proven` and the source is not proven.
    pub const NOT_PROVEN: u8 = 2;
    /// `block_when: repeated` and too few matches yet.
    pub const NOT_REPEATED: u8 = 3;
    /// A dry run: it would have been blocked.
    pub const DRY_RUN: u8 = 4;
    /// The rule drops and never blocks.
    pub const DROP_ONLY: u8 = 5;
}

#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
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
    /// Bytes of the frame that follow this record in its perf sample (the
    /// frame's first bytes, Suricata EVE's `packet`): at most
    /// [`MAX_ALERT_PACKET_BYTES`], 0 when capture is off.
    pub captured_len: u16,
    /// [`aggregate`].
    pub aggregate: u8,
    /// [`block`] value.
    pub block: u8,
    pub _pad: [u8; 2],
    pub packet: PacketMeta,
    /// Index of the interface the packet arrived on (XDP's ingress
    /// ifindex); 0 in replay. Userspace maps it to the interface's name.
    pub ifindex: u32,
    /// Explicit tail padding (the record is 8-byte aligned).
    pub _pad_tail: [u8; 4],
}

/// Interfaces one `sensor run` watches at most: the size of the kernel's
/// per-interface packet counters (`IFACE_PACKETS`, by slot).
pub const MAX_IFACES: u32 = 64;

/// Interface indexes below this find their counter slot in an array
/// (`IFACE_SLOTS`, by ifindex: two inlined array reads per packet); higher
/// ones in a hash map (`IFACE_PACKETS_WIDE`, keyed by ifindex), which costs
/// a helper call and a hash per packet.
pub const IFINDEX_DIRECT: u32 = 4_096;

/// Upper bound of `alert_packet_bytes`: what one alert may carry of its frame.
pub const MAX_ALERT_PACKET_BYTES: u16 = 1024;
/// The default: Ethernet, VLAN tags, IP and transport headers with room to spare.
pub const DEFAULT_ALERT_PACKET_BYTES: u16 = 128;

/// How many of a `frame_len`-byte frame's bytes an alert carries when the
/// configured cap is `cap`.
#[inline(always)]
pub const fn captured_len(frame_len: u32, cap: u16) -> u16 {
    let cap = if cap > MAX_ALERT_PACKET_BYTES {
        MAX_ALERT_PACKET_BYTES
    } else {
        cap
    };
    if frame_len < cap as u32 {
        frame_len as u16
    } else {
        cap
    }
}

// The kernel and userspace share this layout: no implicit padding.
const _: () =
    assert!(core::mem::size_of::<AlertRecord>() == 40 + core::mem::size_of::<PacketMeta>());
const _: () = assert!(core::mem::align_of::<AlertRecord>() == 8);

// SAFETY: AlertRecord derives zerocopy's IntoBytes and FromBytes: no padding
// (checked at compile time) and every bit pattern valid, as Pod asks.
#[cfg(feature = "user")]
unsafe impl aya::Pod for AlertRecord {}
