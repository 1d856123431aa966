//! The compiled form of a rule set: what userspace writes into the BPF maps
//! and what [`crate::detect`] reads per packet. Every lookup is O(1) in the
//! number of rules: a rule's membership is a bit in a [`RuleMask`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// 64-bit words in a [`RuleMask`].
pub const MASK_WORDS: usize = 16;

/// Rules one rule set may hold: the width of [`RuleMask`].
pub const MAX_RULES: u32 = 64 * MASK_WORDS as u32;

/// One bit per loaded rule (its *slot*): slot `s` is bit `s % 64` of
/// `words[s / 64]`. `summary` has bit `w` set exactly when `words[w]` is not
/// zero, so evaluation combines the summaries of a packet's rows first and
/// reads only the words where a rule can still match: the cost of a packet
/// that matches nothing does not grow with the number of rules.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RuleMask {
    /// Bit `w`: `words[w] != 0`.
    pub summary: u32,
    /// Set only in the `ANY_BASE + any::ENABLED` row and the protocol rows
    /// (`PROTO_BASE + proto_class`): the [`uses`] bits, which scope tables
    /// (and flood classes) any enabled rule, or any enabled rule of that
    /// protocol, consults; the others are not looked up at all. 0 in every
    /// other row.
    pub uses: u32,
    pub words: [u64; MASK_WORDS],
}

impl RuleMask {
    /// The empty set.
    pub const EMPTY: RuleMask = RuleMask {
        summary: 0,
        uses: 0,
        words: [0; MASK_WORDS],
    };

    /// Word `w` (taken modulo [`MASK_WORDS`], which bounds the index for the
    /// verifier).
    #[inline(always)]
    pub fn word(&self, w: u32) -> u64 {
        self.words[(w as usize) & (MASK_WORDS - 1)]
    }

    /// Adds `slot` (ignored beyond [`MAX_RULES`]).
    pub fn insert(&mut self, slot: u32) {
        if slot < MAX_RULES {
            self.words[(slot / 64) as usize] |= 1 << (slot % 64);
            self.summary |= 1 << (slot / 64);
        }
    }

    pub fn contains(&self, slot: u32) -> bool {
        slot < MAX_RULES && self.words[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    /// Adds every slot of `other` (not its `uses`).
    pub fn union_with(&mut self, other: &RuleMask) {
        for w in 0..MASK_WORDS {
            self.words[w] |= other.words[w];
        }
        self.summary |= other.summary;
    }

    pub fn is_empty(&self) -> bool {
        self.summary == 0
    }

    /// The slots in the set, lowest first.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        (0..MAX_RULES).filter(|slot| self.contains(*slot))
    }
}

/// [`RuleMask::uses`] bits: scope tables some enabled rule consults.
pub mod uses {
    pub const SRC: u32 = 1 << 0;
    pub const DST: u32 = 1 << 1;
    pub const PORT: u32 = 1 << 2;
    pub const VLAN: u32 = 1 << 3;
    pub const SRC_PORT: u32 = 1 << 4;
    /// Bits `FLOOD_CLASSES ..` hold the [`super::flood_class`] bits some
    /// enabled `flood` rule counts: a packet of none of them skips the
    /// flood row's lookup.
    pub const FLOOD_CLASSES: u32 = 8;
}

/// `tiny_first_below` thresholds go up to this many bytes.
pub const MAX_TINY_THRESHOLD: u32 = 256;

// ---- the mask table: one array, several regions --------------------------
//
// masks[FLAGS_BASE + tcp_flags]       rules whose tcp_flags match holds
// masks[TTL_BASE + ttl]               ttl below/above rules matching that TTL
// masks[TINY_BASE + min(len, 256)]    tiny_first_below rules with N > len
// masks[DEVIATION_BASE + diff]        ttl deviation rules with N < diff
// masks[EVENT_BASE + event]           fragment/header/syn rules keyed by event
// masks[PROTO_BASE + proto class]     rules whose scope allows that protocol
// masks[ANY_BASE + any::*]            rules with no constraint of that kind
// masks[EVENT_SET_BASE + events]      the union of the EVENT_BASE rows of
//                                     each event set in `events & 0x7ff`:
//                                     one lookup per packet, not one per event
// masks[OPTION_EVENT_SET_BASE + set]  the same for the option and
//                                     extension-header events (bits 13..18):
//                                     a second region rather than a wider
//                                     first one, which would need 2^17 rows;
//                                     looked up only when one of them is set
// masks[FLOOD_SET_BASE + classes]     `flood` (and `syn_flood`) rules counting
//                                     a packet class in `classes` (the
//                                     packet's `flood_class` bits): one
//                                     lookup selects every flood rule

pub const FLAGS_BASE: u32 = 0;
pub const TTL_BASE: u32 = FLAGS_BASE + crate::packet::tcp::FLAG_VALUES;
pub const TINY_BASE: u32 = TTL_BASE + 256;
pub const DEVIATION_BASE: u32 = TINY_BASE + MAX_TINY_THRESHOLD + 1;
pub const EVENT_BASE: u32 = DEVIATION_BASE + 256;
pub const PROTO_BASE: u32 = EVENT_BASE + crate::packet::event::COUNT;
pub const ANY_BASE: u32 = PROTO_BASE + proto_class::COUNT;
pub const EVENT_SET_BASE: u32 = ANY_BASE + any::COUNT;
/// Rows of the `EVENT_SET_BASE` region: one per combination of the events
/// below [`crate::packet::event::FIRST_FRAGMENT`].
pub const EVENT_SETS: u32 = 1 << crate::packet::event::FIRST_FRAGMENT;
/// The first event of the `OPTION_EVENT_SET_BASE` region; it and every
/// later event up to [`crate::packet::event::COUNT`] are in it.
pub const OPTION_EVENT_FIRST: u8 = crate::packet::event::IPV6_ROUTING_TYPE0;
pub const OPTION_EVENT_SET_BASE: u32 = EVENT_SET_BASE + EVENT_SETS;
/// Rows of the `OPTION_EVENT_SET_BASE` region: one per combination.
pub const OPTION_EVENT_SETS: u32 = 1 << (crate::packet::event::COUNT - OPTION_EVENT_FIRST as u32);
pub const FLOOD_SET_BASE: u32 = OPTION_EVENT_SET_BASE + OPTION_EVENT_SETS;
/// Rows of the `FLOOD_SET_BASE` region: one per combination of classes.
pub const FLOOD_SETS: u32 = 1 << flood_class::COUNT;
pub const MASK_TABLE_LEN: u32 = FLOOD_SET_BASE + FLOOD_SETS;

/// The packet classes `flood` rules count (docs/CONTRACT.md section 2),
/// one bit each; a packet may be of several.
pub mod flood_class {
    /// TCP, SYN set and ACK clear.
    pub const SYN: u32 = 0;
    /// TCP, ACK set, SYN, RST and FIN clear, no payload.
    pub const ACK: u32 = 1;
    /// TCP, RST set.
    pub const RST: u32 = 2;
    /// TCP, FIN set, SYN and RST clear.
    pub const FIN: u32 = 3;
    /// Upper-layer protocol UDP.
    pub const UDP: u32 = 4;
    /// ICMP or ICMPv6.
    pub const ICMP: u32 = 5;
    /// Any IPv4 or IPv6 fragment.
    pub const FRAGMENT: u32 = 6;
    /// Every IP packet.
    pub const ANY: u32 = 7;
    pub const COUNT: u32 = 8;

    #[inline(always)]
    pub const fn bit(class: u32) -> u32 {
        1 << class
    }
}

/// Rows of the `ANY_BASE` region.
pub mod any {
    /// Rules without `scope.src`.
    pub const SRC: u32 = 0;
    /// Rules without `scope.dst`.
    pub const DST: u32 = 1;
    /// Rules without `scope.dst_ports`.
    pub const PORT: u32 = 2;
    /// Rules without `scope.vlan`.
    pub const VLAN: u32 = 3;
    /// Every `ttl: deviation` rule (skip the per-source lookup when 0).
    pub const DEVIATION: u32 = 4;
    /// Every enabled rule.
    pub const ENABLED: u32 = 5;
    /// Rules whose action is `drop`.
    pub const DROP: u32 = 6;
    /// Rules without `scope.src_ports`.
    pub const SRC_PORT: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// `scope.protocol` classes.
pub mod proto_class {
    pub const OTHER: u32 = 0;
    pub const TCP: u32 = 1;
    pub const UDP: u32 = 2;
    pub const ICMP: u32 = 3;
    pub const ICMPV6: u32 = 4;
    pub const COUNT: u32 = 5;

    #[inline(always)]
    pub const fn of(proto: u8) -> u32 {
        match proto {
            crate::packet::PROTO_TCP => TCP,
            crate::packet::PROTO_UDP => UDP,
            crate::packet::PROTO_ICMP => ICMP,
            crate::packet::PROTO_ICMPV6 => ICMPV6,
            _ => OTHER,
        }
    }
}

/// A rule's match kind: the alert's `category`.
pub mod kind {
    pub const TCP_FLAGS: u8 = 0;
    pub const TTL: u8 = 1;
    pub const FRAGMENT: u8 = 2;
    pub const SYN_FLOOD: u8 = 3;
    pub const HEADER: u8 = 4;
    pub const FLOOD: u8 = 5;
    pub const SCAN: u8 = 6;

    /// Kinds whose alert counts a window (not rate-limited per source).
    #[inline(always)]
    pub const fn is_window(kind: u8) -> bool {
        kind == SYN_FLOOD || kind == FLOOD || kind == SCAN
    }
}

pub mod action {
    pub const ALERT: u8 = 0;
    pub const DROP: u8 = 1;
}

/// Which address a `flood` / `syn_flood` window is kept for.
pub mod flood_track {
    pub const BY_DST: u8 = 0;
    pub const BY_SRC: u8 = 1;
}

/// Per-slot facts the kernel needs beyond the masks (the `RULES` array).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RuleInfo {
    /// The rule's `id` (alert `signature_id`).
    pub sig_id: u32,
    /// `flood` / `syn_flood` packets per window that alert; 0: no packet
    /// threshold (and for other kinds). `scan`: the set bits of the
    /// window's map that alert (`sensor`'s `rules::compile::scan_bits_for`).
    pub flood_threshold: u32,
    /// `flood` / `syn_flood` window in nanoseconds.
    pub flood_window_ns: u64,
    /// `flood` bytes (frame lengths) per window that alert; 0: none.
    pub flood_bytes: u64,
    /// Block length for `drop` rules in drop mode, in nanoseconds.
    pub block_ns: u64,
    pub kind: u8,
    pub action: u8,
    /// [`flood_track`] value.
    pub flood_track: u8,
    /// `scan`: 1 counts distinct destination addresses, 0 ports.
    pub scan_hosts: u8,
    /// `flood` `adaptive`: the factor × 256 (`flood_threshold` is `min`).
    pub adaptive_factor: u16,
    /// `flood` `adaptive`: `learn_windows`; 0: not adaptive.
    pub adaptive_windows: u16,
}

/// Sensor-wide settings (the `CONFIG` array's single entry).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SensorConfig {
    /// [`mode`] value.
    pub mode: u8,
    /// 1: drop mode reports what it would drop and block, and drops nothing.
    pub dry_run: u8,
    /// Which of the [`RULE_GENERATIONS`] rule tables is in force.
    pub generation: u8,
    pub _pad: u8,
    /// Bytes of the frame each alert record carries (capped at
    /// [`crate::alert::MAX_ALERT_PACKET_BYTES`]); 0: none.
    pub alert_packet_bytes: u16,
    pub _pad2: [u8; 2],
    /// The secret of the hash that places per-address state
    /// ([`crate::sketch::addr_hash`]); random per run, 0 in replay.
    pub hash_seed: u32,
    /// Which tunnels are decapsulated (`decap:`).
    pub decap: crate::decap::DecapConfig,
    pub _pad3: [u8; 2],
}

/// Rule tables the kernel holds: userspace fills the one not in force,
/// then flips [`SensorConfig::generation`], so a reload is atomic for every
/// packet. Generation `g` uses `MASKS[g * MASK_TABLE_LEN ..]`,
/// `RULES[g * MAX_RULES ..]`, scope trie keys whose version byte carries
/// `g` in its top bit; port and VLAN entries by [`scope_index`].
pub const RULE_GENERATIONS: u32 = 2;

/// The version byte of a scope trie key in generation `generation`.
#[inline(always)]
pub const fn scope_key_version(ip_version: u8, generation: u8) -> u8 {
    ip_version | (generation << 7)
}

/// The value scope tables (`scope.dst_ports`, `scope.src_ports`,
/// `scope.vlan`) are two arrays: `SCOPE_INDEX` maps a value to a row of
/// `SCOPE_ROWS` (0: no enabled rule names the value), and rows with equal
/// masks are stored once. A lookup is two array reads, which the verifier
/// inlines; a hash map cost a helper call and a hash per lookup (about
/// 25 ns on this project's machine, several times per packet: BENCHMARKS.md).
pub mod value_scope {
    /// First index of the `scope.dst_ports` entries, by port.
    pub const DST_PORTS: u32 = 0;
    /// First index of the `scope.src_ports` entries, by port.
    pub const SRC_PORTS: u32 = 1 << 16;
    /// First index of the `scope.vlan` entries, by VLAN ID (12 bits).
    pub const VLANS: u32 = 2 << 16;
}

/// `SCOPE_INDEX` entries of one generation.
pub const SCOPE_INDEX_LEN: u32 = value_scope::VLANS + 4_096;
/// `SCOPE_ROWS` entries of one generation: row 0 is never used, and
/// distinct masks are at most the distinct values the limits allow.
pub const SCOPE_ROWS_LEN: u32 = 1 + PORT_SCOPE_ENTRIES + VLAN_SCOPE_ENTRIES;

/// The `SCOPE_INDEX` entry of `value` in the table starting at `table`
/// ([`value_scope`]) of generation `generation`. A VLAN ID is 12 bits.
#[inline(always)]
pub const fn scope_index(generation: u8, table: u32, value: u16) -> u32 {
    let value = if table == value_scope::VLANS {
        value & 0x0fff
    } else {
        value
    };
    generation as u32 * SCOPE_INDEX_LEN + table + value as u32
}

/// The `SCOPE_ROWS` entry of row `row` of generation `generation`.
#[inline(always)]
pub const fn scope_row(generation: u8, row: u32) -> u32 {
    generation as u32 * SCOPE_ROWS_LEN + row
}

/// A blocked source (the `BLOCKED` LRU map's value).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct BlockEntry {
    /// Kernel monotonic time the block ends; checked per packet, so expiry
    /// does not wait for userspace's clean-up.
    pub until_ns: u64,
    /// The rule that blocked it.
    pub sig_id: u32,
    /// The [`block_when`] in force when it was blocked, or
    /// [`BLOCK_RESTORED`] for a block put back from the state file.
    pub block_when: u8,
    pub _pad: [u8; 3],
}

/// [`BlockEntry::block_when`] of a block restored from `drop.state_file`.
pub const BLOCK_RESTORED: u8 = 0xff;

pub mod mode {
    pub const IDS: u8 = 0;
    pub const DROP: u8 = 1;
}

/// `drop.block_when`: when a `drop` rule's match blocks its source.
pub mod block_when {
    /// Only a source that proved its address (a TCP handshake seen on the
    /// link within `proof_seconds`). 0, so a policy never written is the
    /// safe one.
    pub const PROVEN: u8 = 0;
    /// On the source's `count`-th match within a window.
    pub const REPEATED: u8 = 1;
    /// On the first match.
    pub const FIRST_MATCH: u8 = 2;
    pub const COUNT: u8 = 3;
}

/// Drop mode's blocking policy (the `DROP_POLICY` array's single entry),
/// read only in drop mode.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlockPolicy {
    /// [`block_when`] value.
    pub block_when: u8,
    pub _pad: [u8; 3],
    /// `repeated`: matches within the window that block.
    pub repeat_count: u32,
    /// `repeated`: the window, opened by a source's first match.
    pub repeat_window_ns: u64,
    /// `proven`: how long a completed handshake proves its source.
    pub proof_ns: u64,
}

impl BlockPolicy {
    /// The configuration's defaults: `proven`, 600 s proofs, 3 matches in 10 s.
    pub const DEFAULT: BlockPolicy = BlockPolicy {
        block_when: block_when::PROVEN,
        _pad: [0; 3],
        repeat_count: 3,
        repeat_window_ns: 10_000_000_000,
        proof_ns: 600_000_000_000,
    };
}

impl Default for BlockPolicy {
    fn default() -> Self {
        BlockPolicy::DEFAULT
    }
}

const _: () = assert!(core::mem::size_of::<BlockPolicy>() == 24);

/// Key of a TCP handshake being watched (the `HANDSHAKES` LRU map): the
/// connection as its initiator (the *client*, whose address it may prove)
/// sent its SYN.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HandshakeKey {
    pub client: crate::packet::AddrKey,
    pub server: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
}

const _: () = assert!(core::mem::size_of::<HandshakeKey>() == 40);

/// [`Handshake::stage`] values.
pub mod stage {
    /// The client's SYN was seen.
    pub const SYN: u8 = 1;
    /// The server's SYN-ACK acknowledging it was seen.
    pub const SYN_ACK: u8 = 2;
    /// Two SYN-ACKs with different sequence numbers: one was forged, and
    /// which one is unknown, so this handshake proves nothing.
    pub const CONFLICT: u8 = 3;
}

/// A handshake's progress (the `HANDSHAKES` map's value).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Handshake {
    /// When the client's SYN was seen.
    pub syn_ns: u64,
    pub client_isn: u32,
    /// The SYN-ACK's sequence number (stage `SYN_ACK` on).
    pub server_isn: u32,
    /// [`stage`] value.
    pub stage: u8,
    pub _pad: [u8; 7],
}

/// A source's `repeated` window (the `REPEATS` LRU map's value).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RepeatWindow {
    pub start_ns: u64,
    pub count: u32,
    pub _pad: u32,
}

/// A tumbling `flood` / `syn_flood` window for one tracked address.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SynWindow {
    pub start_ns: u64,
    /// Packets counted in the window.
    pub count: u32,
    /// 1 once this window has raised its alert.
    pub alerted: u32,
    /// Bytes (frame lengths) counted in the window.
    pub bytes: u64,
    /// `adaptive`: the key's learned normal, in 1/256 packets per window.
    pub normal: u32,
    /// `adaptive`: windows that taught `normal` (at most `learn_windows`).
    pub taught: u32,
}

/// One way of a [`SynBucket`]: a window and whose it is.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SynSlot {
    pub window: SynWindow,
    /// The length of the owner rule's window, to tell when it has ended.
    pub window_ns: u64,
    /// [`crate::sketch::fingerprint_of`] the owner's hash; 0: never used.
    pub fingerprint: u32,
    /// The owner rule's global slot (`slot_base() + slot`): the fingerprint
    /// is computed from the slot within its generation, so this tells the
    /// generations apart and lets a reload clear the one it recycles.
    pub slot: u32,
}

/// A bucket of the `syn_flood` window table ([`crate::sketch`]).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SynBucket {
    pub ways: [SynSlot; 2],
}

/// Bits in a [`ScanWindow`]'s map.
pub const SCAN_MAP_BITS: u32 = 1_024;

/// Words in a `scan` window's map.
pub const SCAN_MAP_WORDS: usize = (SCAN_MAP_BITS / 64) as usize;

/// A tumbling `scan` window for one (rule, source), but for its map (which
/// of [`SCAN_MAP_BITS`] hashed ports or addresses it reached, in
/// [`ScanBucket::maps`]). 32 bytes, so that a bucket's two windows share
/// one cache line: a spoofed source's packet reads both to choose a way,
/// then touches one word of one map.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ScanWindow {
    pub start_ns: u64,
    /// The length of the owner rule's window, to tell when it has ended.
    pub window_ns: u64,
    /// Packets counted in the window.
    pub count: u32,
    /// [`crate::sketch::fingerprint_of`] the owner's hash; 0: never used.
    pub fingerprint: u32,
    /// Bits set in the map: distinct values seen (collisions aside).
    pub bits: u16,
    /// Bit `w`: word `w` of the map belongs to this window; the others are
    /// left over from an earlier one and read as 0. A new window clears
    /// this word instead of the whole map: under a flood of spoofed
    /// sources every packet opens one.
    pub words_used: u16,
    /// The owner rule's global slot.
    pub slot: u16,
    /// 1 once this window has raised its alert.
    pub alerted: u16,
}

const _: () = assert!(SCAN_MAP_WORDS <= u16::BITS as usize);
const _: () = assert!(SCAN_MAP_BITS <= u16::MAX as u32);
// Global slots: two generations of MAX_RULES.
const _: () = assert!(2 * MAX_RULES <= u16::MAX as u32);

/// A bucket of the `scan` window table ([`crate::sketch`]): two windows,
/// then their maps (`maps[w]` is `ways[w]`'s).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ScanBucket {
    pub ways: [ScanWindow; 2],
    pub maps: [[u64; SCAN_MAP_WORDS]; 2],
}

/// A page of per-address state ([`crate::sketch`]): the TTL slots and
/// window buckets of the addresses [`crate::sketch::page_of`] puts in it.
/// Its size is the kernel's page size, and the map's pages are
/// page-aligned, so that one address's state is in one page.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AddrStatePage {
    pub ttl: [u64; crate::sketch::TTL_PER_PAGE as usize],
    pub syn: [SynBucket; crate::sketch::SYN_PER_PAGE as usize],
    pub scan: [ScanBucket; crate::sketch::SCAN_PER_PAGE as usize],
    pub _pad: [u8; ADDR_STATE_PAD],
}

const ADDR_STATE_PAD: usize = crate::sketch::STATE_PAGE_BYTES
    - 8 * crate::sketch::TTL_PER_PAGE as usize
    - core::mem::size_of::<SynBucket>() * crate::sketch::SYN_PER_PAGE as usize
    - core::mem::size_of::<ScanBucket>() * crate::sketch::SCAN_PER_PAGE as usize;

const _: () = assert!(core::mem::size_of::<AddrStatePage>() == crate::sketch::STATE_PAGE_BYTES);

/// Key of the per-(rule, source) alert rate limiter. Keyed by the rule's
/// id, not its slot: a reload that keeps a rule keeps its account, so the
/// running totals userspace turns into line counts never split in two.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RateKey {
    pub sig_id: u32,
    pub addr: crate::packet::AddrKey,
}

impl RateKey {
    /// The key of `sig_id`'s storm account: matches from sources not
    /// tracked on their own, counted once the CPU's [`ALERT_BUDGET`] is
    /// spent. Its address (version 0) is no packet's.
    pub const fn rule_wide(sig_id: u32) -> RateKey {
        RateKey {
            sig_id,
            addr: crate::packet::AddrKey::new(0, [0; 16]),
        }
    }
}

const _: () = assert!(core::mem::size_of::<RateKey>() == 24);

/// Alert rate limiting state for one (rule, source), per CPU in the kernel.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RateState {
    pub window_start_ns: u64,
    /// Packets matched by this (rule, source) since the entry was created.
    /// Only ever grows; userspace turns differences into alert `count`s.
    pub matched_total: u64,
    pub emitted_in_window: u32,
    /// The [`track_tick`] of the latest match counted here: past the alert
    /// budget the source is tracked while it is the current tick or the
    /// one before ([`tracked_recently`]).
    pub last_tick: u32,
}

/// A tick of the tracked-source rule (contract §3, alert storms): 2^30 ns.
pub const TRACK_TICK_SHIFT: u32 = 30;

/// The tick of `now_ns` (wraps after 2^62 ns: compared by difference).
#[inline(always)]
pub const fn track_tick(now_ns: u64) -> u32 {
    (now_ns >> TRACK_TICK_SHIFT) as u32
}

/// Whether a (rule, source) whose latest counted match was at tick `last`
/// is still tracked at tick `now`: the same tick or the next one.
#[inline(always)]
pub const fn tracked_recently(last: u32, now: u32) -> bool {
    now.wrapping_sub(last) <= 1
}

/// Slots of each CPU's filter in front of the tracked check (the kernel's
/// `TRACK_FILTER`): one byte per slot, the low byte of the latest tick a
/// (rule, source) hashing there counted a match on its own account. A slot
/// whose byte is neither the current tick's nor the one before cannot hold
/// a tracked source, so the limiter is not looked up (a source of a spoofed
/// storm costs a byte's read, not a hash map's miss). Replay has no filter
/// and looks up every time: the filter saves work, it decides nothing.
pub const TRACK_SLOTS: u32 = 65_536;
/// Filter slots per entry of `TRACK_FILTER` (a cache line).
pub const TRACK_LINE: u32 = 64;

/// Whether a filter slot holding `stamp` may hold a source tracked at tick
/// `now` (the clock never goes back in the kernel, so a later stamp of
/// another key can only be as recent).
#[inline(always)]
pub const fn track_stamp_may_hold(stamp: u8, now: u32) -> bool {
    (now as u8).wrapping_sub(stamp) <= 1
}

/// Per-(rule, source) alert lines allowed per [`RATE_WINDOW_NS`]; matches
/// beyond it are counted in [`RateState::matched_total`] and reported by
/// userspace as aggregated lines.
pub const RATE_BURST: u32 = 5;
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// Alert records one CPU may send per [`RATE_WINDOW_NS`], all rules and
/// sources together (`syn_flood` records aside). Past it, a storm from many
/// sources costs a counter update per packet instead of a record each; the
/// matches are reported by per-rule lines ([`RateKey::rule_wide`]).
pub const ALERT_BUDGET: u32 = 2_000;

/// One CPU's [`ALERT_BUDGET`] window (the per-CPU `ALERT_BUDGET` map).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct AlertBudget {
    pub window_start_ns: u64,
    /// Records sent in the window.
    pub spent: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<AlertBudget>() == 16);

/// Entries in the per-source / per-key LRU maps.
pub const RATE_ENTRIES: u32 = 65_536;
pub const PORT_SCOPE_ENTRIES: u32 = 4_096;
pub const VLAN_SCOPE_ENTRIES: u32 = 4_096;
pub const ADDR_SCOPE_ENTRIES: u32 = 16_384;
/// Sources blocked at once in drop mode; beyond it the least recently
/// used block is forgotten (the source is then judged afresh).
pub const BLOCKED_ENTRIES: u32 = 65_536;
/// Prefixes in the drop-mode allowlist and static blocklist tries.
pub const DROP_LIST_ENTRIES: u32 = 16_384;
/// Drop mode: TCP handshakes watched at once (SYN seen, final ACK not
/// yet). A SYN flood evicts them: clients then fail to prove themselves
/// until it ends, which can refuse a block but never cause one.
pub const HANDSHAKE_ENTRIES: u32 = 65_536;
/// Drop mode: proven source addresses. Beyond it the least recently
/// proven is forgotten and must complete a handshake again.
pub const PROVEN_ENTRIES: u32 = 65_536;
/// Drop mode, `repeated`: sources whose matches are being counted.
pub const REPEAT_ENTRIES: u32 = 65_536;

/// Per-rule counters (the per-CPU `RULE_STATS` array, one entry per slot).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RuleStats {
    /// Packets the rule matched (for `syn_flood`: SYNs counted in scope).
    pub hits: u64,
    /// Alert records sent to userspace.
    pub alerts: u64,
}

/// Global counters (the per-CPU `COUNTERS` array), by index.
pub mod counter {
    pub const PACKETS: u32 = 0;
    pub const PASSED: u32 = 1;
    pub const DROPPED: u32 = 2;
    /// Frames without a readable IP header (non-IP, truncated).
    pub const NOT_IP: u32 = 3;
    /// Alert records the perf buffer refused (the kernel could not send).
    pub const ALERT_OUTPUT_ERRORS: u32 = 4;
    /// Drop mode: packets dropped because their source is blocked.
    pub const DROPPED_BLOCKED_SOURCE: u32 = 5;
    /// Drop mode: packets dropped by the static blocklist.
    pub const DROPPED_STATIC_BLOCKLIST: u32 = 6;
    /// Drop mode: packets dropped by a matching `drop` rule.
    pub const DROPPED_BY_RULE: u32 = 7;
    /// Dry run: packets that would have been dropped.
    pub const WOULD_DROP: u32 = 8;
    /// Drop mode: blocks the kernel could not record (the `BLOCKED` map
    /// refused the entry): the packet was dropped, its source not blocked.
    pub const BLOCK_ERRORS: u32 = 9;
    /// Drop mode: handshakes that proved their client's address.
    pub const PROOFS: u32 = 10;
    /// Drop mode: matches that did not block their source because it was
    /// not proven (`proven`) ...
    pub const REFUSED_NOT_PROVEN: u32 = 11;
    /// ... or not yet repeated enough (`repeated`); dry runs count too.
    pub const REFUSED_NOT_REPEATED: u32 = 12;
    /// Drop mode: sources blocked, by `block_when` (`BLOCKS + block_when`).
    pub const BLOCKS: u32 = 13;
    /// Tunnels whose inner packet went unjudged: the tail call to the
    /// program that judges it failed (not loaded).
    pub const TUNNEL_LOST: u32 = BLOCKS + super::block_when::COUNT as u32;
    /// Frames judged on a tunnel's inner packet (decapsulated).
    pub const TUNNEL_PACKETS: u32 = TUNNEL_LOST + 1;
    pub const COUNT: u32 = TUNNEL_PACKETS + 1;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: RuleInfo derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RuleInfo {}
    // SAFETY: AlertBudget derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::AlertBudget {}
    // SAFETY: RuleMask derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RuleMask {}
    // SAFETY: SensorConfig derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::SensorConfig {}
    // SAFETY: RateKey derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RateKey {}
    // SAFETY: AddrStatePage derives zerocopy's IntoBytes and FromBytes: no
    // padding (checked at compile time) and every bit pattern valid, as Pod
    // asks.
    unsafe impl aya::Pod for super::AddrStatePage {}
    // SAFETY: RateState derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RateState {}
    // SAFETY: RuleStats derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RuleStats {}
    // SAFETY: BlockEntry derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::BlockEntry {}
    // SAFETY: BlockPolicy derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::BlockPolicy {}
    // SAFETY: HandshakeKey derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::HandshakeKey {}
    // SAFETY: Handshake derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::Handshake {}
    // SAFETY: RepeatWindow derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for super::RepeatWindow {}
    // SAFETY: AddrKey derives zerocopy's IntoBytes and FromBytes: no padding
    // (checked at compile time) and every bit pattern valid, as Pod asks.
    unsafe impl aya::Pod for crate::packet::AddrKey {}
}
