//! The `sensor inspect` packet filter, as the kernel runs it: a small
//! stack machine over a [`PacketMeta`]. Userspace compiles a pcap-filter
//! style expression into [`FilterProgram`]; the XDP program steps through
//! it with [`FilterVm::step`] (one op per `bpf_loop` iteration), and tests
//! run the same code in memory with [`FilterProgram::matches`].
//!
//! The stack holds booleans as bits of a u64, so its depth is bounded by
//! [`MAX_STACK`]; a program is at most [`MAX_FILTER_OPS`] ops. An empty
//! program matches every packet.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::packet::{AddrKey, PacketMeta, flag};

pub const MAX_FILTER_OPS: usize = 32;
/// Booleans the machine can hold at once.
pub const MAX_STACK: u32 = 64;

/// [`FilterOp::code`] values. Tests push a boolean; `AND`/`OR` pop two and
/// push one; `NOT` flips the top.
pub mod op {
    /// Push `ip_version == value` (4 or 6).
    pub const IP_VERSION: u8 = 1;
    /// Push `proto == value` (upper-layer protocol number).
    pub const PROTO: u8 = 2;
    /// Push: source address inside `addr`/`prefix_len`.
    pub const SRC_NET: u8 = 3;
    /// Push: destination address inside `addr`/`prefix_len`.
    pub const DST_NET: u8 = 4;
    /// Push: the packet has ports and `src_port == value`.
    pub const SRC_PORT: u8 = 5;
    /// Push: the packet has ports and `dst_port == value`.
    pub const DST_PORT: u8 = 6;
    /// Push: the packet has VLAN tags and the outermost id `== value`
    /// (`value == VLAN_ANY`: any tag).
    pub const VLAN: u8 = 7;
    /// Push: the packet has TCP flags and `flags & mask == value`
    /// (`mask` in [`super::FilterOp::mask`]).
    pub const TCP_FLAGS: u8 = 8;
    pub const AND: u8 = 20;
    pub const OR: u8 = 21;
    pub const NOT: u8 = 22;
}

/// `op::VLAN` value meaning "any VLAN tag".
pub const VLAN_ANY: u32 = u32::MAX;

#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct FilterOp {
    pub code: u8,
    pub _pad0: u8,
    /// For `TCP_FLAGS`: the bits tested.
    pub mask: u16,
    pub value: u32,
    /// For `SRC_NET` / `DST_NET`: the network (its version always compared).
    pub addr: AddrKey,
    /// For `SRC_NET` / `DST_NET`: the prefix as a byte mask (see [`net_mask`]).
    pub net_mask: [u8; 16],
}

/// The byte mask of a `prefix_len`-bit prefix.
pub const fn net_mask(prefix_len: u8) -> [u8; 16] {
    let mut mask = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let covered = (prefix_len as i32) - (i as i32) * 8;
        mask[i] = if covered >= 8 {
            0xff
        } else if covered <= 0 {
            0
        } else {
            0xffu8 << (8 - covered)
        };
        i += 1;
    }
    mask
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct FilterProgram {
    /// Ops in use (0: match everything).
    pub len: u32,
    pub _pad: u32,
    pub ops: [FilterOp; MAX_FILTER_OPS],
}

impl Default for FilterProgram {
    fn default() -> Self {
        FilterProgram {
            len: 0,
            _pad: 0,
            ops: [FilterOp::default(); MAX_FILTER_OPS],
        }
    }
}

/// The machine's state between steps. The kernel keeps it in a per-CPU
/// map rather than on the stack: the verifier then sees unknown values at
/// every step and checks the step once, instead of once per stack depth.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct FilterVm {
    stack: u64,
    depth: u32,
    /// Set when the program was malformed (stack under/overflow, unknown
    /// op): the packet does not match.
    broken: u32,
}

/// Whether `addr` is inside the op's network. Branch-free over the 16
/// bytes: the verifier checks every path of a filter step, so each branch
/// here would multiply its work.
#[inline(always)]
fn in_net(addr: &[u8; 16], op: &FilterOp, version: u8) -> bool {
    // Four bytes at a time: unrolled byte by byte, the comparison spilled
    // enough registers to overflow the kernel's shared 512-byte stack.
    let word = |bytes: &[u8; 16], i: usize| {
        u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
    };
    let mut diff = 0u32;
    let mut i = 0;
    while i < 16 {
        diff |= (word(addr, i) ^ word(&op.addr.addr, i)) & word(&op.net_mask, i);
        i += 4;
    }
    diff == 0 && version == op.addr.version
}

impl FilterVm {
    #[inline(always)]
    fn push(&mut self, value: bool) {
        if self.depth >= MAX_STACK {
            self.broken = 1;
            return;
        }
        self.stack = (self.stack << 1) | value as u64;
        self.depth += 1;
    }

    #[inline(always)]
    fn pop(&mut self) -> bool {
        if self.depth == 0 {
            self.broken = 1;
            return false;
        }
        let value = self.stack & 1 != 0;
        self.stack >>= 1;
        self.depth -= 1;
        value
    }

    /// Runs one op on `meta`.
    #[inline(always)]
    pub fn step(&mut self, op: &FilterOp, meta: &PacketMeta) {
        let has_ports = meta.has(flag::HAS_PORTS);
        match op.code {
            op::IP_VERSION => self.push(meta.ip_version as u32 == op.value),
            op::PROTO => self.push(meta.proto as u32 == op.value),
            op::SRC_NET => self.push(in_net(&meta.src_addr, op, meta.ip_version)),
            op::DST_NET => self.push(in_net(&meta.dst_addr, op, meta.ip_version)),
            op::SRC_PORT => self.push(has_ports && meta.src_port as u32 == op.value),
            op::DST_PORT => self.push(has_ports && meta.dst_port as u32 == op.value),
            op::VLAN => self.push(
                meta.vlan_count > 0 && (op.value == VLAN_ANY || meta.vlan[0] as u32 == op.value),
            ),
            op::TCP_FLAGS => self.push(
                meta.has(flag::HAS_TCP_FLAGS) && (meta.tcp_flags & op.mask) as u32 == op.value,
            ),
            op::AND => {
                let (a, b) = (self.pop(), self.pop());
                self.push(a && b);
            }
            op::OR => {
                let (a, b) = (self.pop(), self.pop());
                self.push(a || b);
            }
            op::NOT => {
                let a = self.pop();
                self.push(!a);
            }
            _ => self.broken = 1,
        }
    }

    /// The verdict after the last op: exactly one boolean must be left.
    #[inline(always)]
    pub fn verdict(&self, program_len: u32) -> bool {
        if program_len == 0 {
            return true;
        }
        self.broken == 0 && self.depth == 1 && self.stack & 1 != 0
    }
}

impl FilterProgram {
    /// Runs the whole program (userspace and tests; the kernel steps it
    /// with `bpf_loop`).
    pub fn matches(&self, meta: &PacketMeta) -> bool {
        let mut vm = FilterVm::default();
        let len = (self.len as usize).min(MAX_FILTER_OPS);
        for op in &self.ops[..len] {
            vm.step(op, meta);
        }
        vm.verdict(self.len)
    }
}

/// The record the kernel sends per inspected packet.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct InspectRecord {
    /// Kernel monotonic clock, precise: when the record was sent.
    pub timestamp_ns: u64,
    /// The coarse clock the packet's rules were judged at (what a test that
    /// replays the packet must judge it at).
    pub clock_ns: u64,
    pub packet: PacketMeta,
}

/// `sensor inspect` settings (the `INSPECT_CONFIG` array's single entry).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct InspectConfig {
    /// 1 while an inspect session is running (userspace's record: the
    /// program keys on `ifindex`).
    pub enabled: u32,
    /// Records per second the kernel may send, per CPU (0: none, summary only).
    pub max_per_sec: u32,
    /// 1: count the summary maps.
    pub summary: u32,
    /// The session sees the packets that arrived on this interface index
    /// and no other (0, no interface's index, while no session runs):
    /// `sensor run` watching several interfaces hosts a session for one.
    pub ifindex: u32,
}

/// Per-CPU token bucket of the inspect rate limit.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct InspectBudget {
    pub window_start_ns: u64,
    pub sent_in_window: u32,
    pub _pad: u32,
}

/// Counters of an inspect session (per-CPU array), by index.
pub mod inspect_counter {
    /// Packets the filter matched.
    pub const MATCHED: u32 = 0;
    /// Records sent to userspace.
    pub const SENT: u32 = 1;
    /// Matched packets not sent: over `max_per_sec`.
    pub const SKIPPED_RATE: u32 = 2;
    /// Records the perf buffer refused.
    pub const OUTPUT_ERRORS: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Summary view maps (per-CPU, filled only when `InspectConfig::summary`).
pub mod summary {
    /// Per-CPU LRU hash: source [`crate::packet::AddrKey`] → [`super::TalkerStats`].
    pub const TALKER_ENTRIES: u32 = 4_096;
    /// Per-CPU array by `proto` (256 entries): packets.
    pub const PROTO_SLOTS: u32 = 256;
    /// Per-CPU array by TCP flags value (512 entries): packets.
    pub const FLAG_SLOTS: u32 = 512;
    /// Per-CPU array by TTL (256 entries): packets.
    pub const TTL_SLOTS: u32 = 256;
}

#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TalkerStats {
    pub packets: u64,
    pub bytes: u64,
}

/// Sends at most `max_per_sec` records per second (per CPU).
#[inline(always)]
pub fn inspect_budget_step(budget: &mut InspectBudget, now_ns: u64, max_per_sec: u32) -> bool {
    if now_ns.wrapping_sub(budget.window_start_ns) >= 1_000_000_000 {
        budget.window_start_ns = now_ns;
        budget.sent_in_window = 0;
    }
    if budget.sent_in_window < max_per_sec {
        budget.sent_in_window += 1;
        true
    } else {
        false
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: FilterProgram derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::FilterProgram {}
    // SAFETY: InspectRecord derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::InspectRecord {}
    // SAFETY: InspectConfig derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::InspectConfig {}
    // SAFETY: InspectBudget derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::InspectBudget {}
    // SAFETY: TalkerStats derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::TalkerStats {}
}
