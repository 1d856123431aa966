//! Per-packet rule evaluation, written once for the kernel and for replay.
//!
//! The work per packet is a fixed number of table lookups whatever the
//! number of rules ([`kind_matches`], [`scope_mask`]), then one step per
//! *matching* rule: per-source state, counters and the alert record.

use crate::alert::{AlertRecord, aggregate, block, outcome};
use crate::packet::tcp::{ACK as TCP_ACK, FIN as TCP_FIN, RST as TCP_RST, SYN as TCP_SYN};
use crate::packet::{
    AddrKey, IP_VERSION_NONE, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP, PacketMeta, event, flag,
};
use crate::proof::judge_block;
use crate::sketch::{
    SCAN_PER_PAGE, SYN_BUCKETS, SYN_PER_PAGE, TTL_PER_PAGE, addr_hash, fingerprint_of, index_of,
    page_of, paged_index, rule_hash, scan_bit, scan_mark, scan_way, syn_way, track_slot, ttl_step,
};
use crate::tables::{
    ALERT_BUDGET, ANY_BASE, AlertBudget, BlockPolicy, DEVIATION_BASE, EVENT_SET_BASE, EVENT_SETS,
    FLAGS_BASE, FLOOD_SET_BASE, FLOOD_SETS, Handshake, HandshakeKey, MASK_WORDS,
    MAX_TINY_THRESHOLD, OPTION_EVENT_FIRST, OPTION_EVENT_SET_BASE, OPTION_EVENT_SETS, PROTO_BASE,
    RATE_BURST, RATE_WINDOW_NS, RateKey, RateState, RepeatWindow, RuleInfo, RuleMask, ScanBucket,
    SynBucket, SynWindow, TINY_BASE, TTL_BASE, action, any, counter, flood_class, flood_track,
    kind, proto_class, track_stamp_may_hold, track_tick, tracked_recently, uses,
};

/// Read access to the compiled rule set (BPF maps, or memory in replay).
pub trait RuleTables {
    /// `masks[index]`, `None` when absent.
    fn mask(&self, index: u32) -> Option<&RuleMask>;
    /// Longest-prefix match of the source address in the `scope.src` trie.
    fn src_scope(&self, addr: &AddrKey) -> Option<&RuleMask>;
    /// Longest-prefix match of the destination in the `scope.dst` trie.
    fn dst_scope(&self, addr: &AddrKey) -> Option<&RuleMask>;
    /// The rules whose `scope.dst_ports` holds `port`.
    fn port_scope(&self, port: u16) -> Option<&RuleMask>;
    /// The rules whose `scope.src_ports` holds `port`.
    fn src_port_scope(&self, port: u16) -> Option<&RuleMask>;
    fn vlan_scope(&self, vlan: u16) -> Option<&RuleMask>;
    /// The rule in `slot`, read where it lies (the kernel's rule walk has
    /// no stack to spare for a copy).
    fn rule(&self, slot: u32) -> Option<&RuleInfo>;
    /// The first slot of the rule set in force. The kernel keeps two
    /// generations of the rule tables so a reload switches atomically; state
    /// and counters are keyed by `slot_base() + slot` so the generations
    /// never share them.
    #[inline(always)]
    fn slot_base(&self) -> u32 {
        0
    }

    /// Whether `drop` rules are enforced on this packet: drop mode, not a
    /// dry run, and a source outside the allowlist.
    fn drop_mode(&self) -> bool;

    /// The secret keying [`addr_hash`] (the kernel's is random per run).
    #[inline(always)]
    fn hash_seed(&self) -> u32 {
        0
    }

    /// Calls `f` with each slot of the set whose word `w` is `word(w)`,
    /// for the words `w` set in `summary` (other words are empty), lowest
    /// slot first. The kernel overrides this with `bpf_loop` so the
    /// verifier checks the body once instead of once per possible rule.
    #[inline(always)]
    fn for_each_slot<W: FnMut(u32) -> u64, F: FnMut(u32)>(
        &self,
        summary: u32,
        mut word: W,
        mut f: F,
    ) {
        let mut words = summary & SUMMARY_BITS;
        let mut i = 0;
        while i < MASK_WORDS && words != 0 {
            i += 1;
            let w = words.trailing_zeros();
            words &= words - 1;
            let mut pending = word(w);
            let mut j = 0;
            while j < 64 && pending != 0 {
                j += 1;
                f(w * 64 + pending.trailing_zeros());
                pending &= pending - 1;
            }
        }
    }

    /// Whether `word(w)` is non-zero for some word `w` set in `summary`.
    #[inline(always)]
    fn any_slot<W: FnMut(u32) -> u64>(&self, summary: u32, mut word: W) -> bool {
        let summary = summary & SUMMARY_BITS;
        let mut w = 0;
        while w < MASK_WORDS as u32 {
            if summary & (1 << w) != 0 && word(w) != 0 {
                return true;
            }
            w += 1;
        }
        false
    }
}

/// The bits of [`RuleMask::summary`] that name a word.
pub const SUMMARY_BITS: u32 = ((1u64 << MASK_WORDS) - 1) as u32;

/// Per-address state and counters (LRU / per-CPU maps, or memory).
pub trait DetectState {
    /// Runs `step` on slot `index` (< [`TTL_SLOTS`]) of the TTL baseline
    /// table ([`crate::sketch`]); `None` when it cannot be read.
    fn ttl_slot<R, F: FnOnce(&mut u64) -> R>(&mut self, index: u32, step: F) -> Option<R>;
    /// Runs `step` on bucket `index` (< [`SYN_BUCKETS`]) of the `syn_flood`
    /// window table; `None` when it cannot be read.
    fn syn_bucket<R, F: FnOnce(&mut SynBucket) -> R>(&mut self, index: u32, step: F) -> Option<R>;
    /// Runs `step` on bucket `index` (< [`SCAN_BUCKETS`]) of the `scan`
    /// window table; `None` when it cannot be read.
    fn scan_bucket<R, F: FnOnce(&mut ScanBucket) -> R>(&mut self, index: u32, step: F)
    -> Option<R>;
    /// Runs `step` on the rate limiter of `key` (a new one is zeroed).
    fn rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R>;
    /// Runs `step` on the rate limiter of `key` if there is one; `None`
    /// when there is none (nothing is created).
    fn tracked_rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R>;
    /// Runs `step` on byte `slot` (< [`crate::tables::TRACK_SLOTS`]) of this CPU's
    /// tracked-source filter; `None` when there is no filter (replay), which
    /// the caller reads as "may be tracked": the filter only spares lookups.
    #[inline(always)]
    fn track_stamp<R, F: FnOnce(&mut u8) -> R>(&mut self, _slot: u32, _step: F) -> Option<R> {
        None
    }
    /// Runs `step` on this CPU's [`AlertBudget`]; `None` when it cannot be
    /// read (the caller then sends as if no budget applied).
    fn alert_budget<R, F: FnOnce(&mut AlertBudget) -> R>(&mut self, step: F) -> Option<R>;
    /// The time of the packet being evaluated, `given` as passed to
    /// [`process`]. Asked only once a rule may match, so the kernel, whose
    /// clock read is one of its dearer helper calls, reads it only then.
    #[inline(always)]
    fn now(&mut self, given: u64) -> u64 {
        given
    }
    /// Counts a match of the rule in `global_slot` (`slot_base() + slot`).
    fn count_hit(&mut self, global_slot: u32);
    fn count_alert(&mut self, global_slot: u32);

    // ---- drop mode: proof of address and `block_when` (crate::proof) ----

    /// The handshake watched under `key`, copied out.
    fn handshake(&mut self, key: &HandshakeKey) -> Option<Handshake>;
    /// Stores (creates or replaces) the handshake watched under `key`.
    fn set_handshake(&mut self, key: &HandshakeKey, value: &Handshake);
    fn forget_handshake(&mut self, key: &HandshakeKey);
    /// Records that `src` completed a handshake at `now`.
    fn prove(&mut self, src: &AddrKey, now: u64);
    /// When `src` last completed a handshake, if it is still remembered.
    fn proven_at(&mut self, src: &AddrKey) -> Option<u64>;
    /// Runs `step` on the `repeated` window of `src` (a new one is zeroed).
    fn repeat_window<R, F: FnOnce(&mut RepeatWindow) -> R>(
        &mut self,
        src: &AddrKey,
        step: F,
    ) -> Option<R>;
    /// Drop mode's blocking policy.
    fn block_policy(&self) -> BlockPolicy;
    /// Whether the source of `meta`, which a `drop` rule matched, is to be
    /// blocked: see [`judge_block`]. The kernel runs it in a subprogram of
    /// its own (the BPF stack is 512 bytes in all).
    #[inline(always)]
    fn judge_block(&mut self, meta: &PacketMeta, now_ns: u64, count_repeat: bool) -> u8
    where
        Self: Sized,
    {
        let policy = self.block_policy();
        judge_block(&meta.src_key(), now_ns, &policy, count_repeat, self)
    }
}

/// One alert to send: the caller pairs it with the packet's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertHead {
    pub sig_id: u32,
    /// [`crate::tables::kind`] of the rule.
    pub kind: u8,
    /// [`outcome`] value.
    pub action: u8,
    /// See [`AlertRecord::count`].
    pub count: u64,
    /// [`aggregate`] value: whose matches `count` totals.
    pub aggregate: u8,
    /// [`block`] value.
    pub block: u8,
}

impl AlertHead {
    /// The full record for this alert on `meta` at `now_ns`.
    pub fn record(&self, meta: &PacketMeta, now_ns: u64, cpu: u32) -> AlertRecord {
        AlertRecord {
            timestamp_ns: now_ns,
            count: self.count,
            sig_id: self.sig_id,
            cpu,
            kind: self.kind,
            action: self.action,
            captured_len: 0,
            aggregate: self.aggregate,
            block: self.block,
            _pad: [0; 2],
            packet: *meta,
            // Replay has no interface; the kernel sets its ingress index.
            ifindex: 0,
            _pad_tail: [0; 4],
        }
    }
}

/// What the packet's fate should be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Drop mode and a `drop` rule matched.
    pub drop: bool,
    /// How long to block the source (0: no block).
    pub block_ns: u64,
    /// When a blocking `drop` rule matched: whether the source is blocked
    /// ([`block::BLOCKED`]) or why not; [`block::NONE`] otherwise.
    pub block: u8,
}

/// Carries out a [`Decision`] in drop mode: counts what happened and says
/// whether to drop the packet. `record_block(block_ns)` stores the block and
/// returns the source's `block_when`, or `Err` when the store refused it:
/// the packet is still dropped (the rule said so) and the failure counted,
/// so a block that could not be recorded is never silent.
#[inline(always)]
pub fn enforce(
    decision: &Decision,
    dry_run: bool,
    record_block: impl FnOnce(u64) -> Result<u8, ()>,
    count: &mut impl FnMut(u32),
) -> bool {
    match decision.block {
        block::NOT_PROVEN => count(counter::REFUSED_NOT_PROVEN),
        block::NOT_REPEATED => count(counter::REFUSED_NOT_REPEATED),
        _ => {}
    }
    if !decision.drop {
        return false;
    }
    if dry_run {
        count(counter::WOULD_DROP);
        return false;
    }
    if decision.block_ns > 0 {
        match record_block(decision.block_ns) {
            Ok(block_when) => count(counter::BLOCKS + block_when as u32),
            Err(()) => count(counter::BLOCK_ERRORS),
        }
    }
    count(counter::DROPPED_BY_RULE);
    count(counter::DROPPED);
    true
}

/// Hop count: the smallest common initial TTL (32, 64, 128, 255) that is
/// not below `ttl`, minus `ttl`.
#[inline(always)]
pub const fn hop_count(ttl: u8) -> u8 {
    let initial = if ttl <= 32 {
        32
    } else if ttl <= 64 {
        64
    } else if ttl <= 128 {
        128
    } else {
        255
    };
    initial - ttl
}

#[inline(always)]
fn summary_of(row: Option<&RuleMask>) -> u32 {
    match row {
        Some(row) => row.summary,
        None => 0,
    }
}

#[inline(always)]
fn word_of(row: Option<&RuleMask>, w: u32) -> u64 {
    match row {
        Some(row) => row.word(w),
        None => 0,
    }
}

/// The rules whose `scope` holds for one packet (and that are enabled).
/// [`Scope::of`] combines the rows' summaries; [`Scope::word`] reads one
/// word. Scope tables no enabled rule uses ([`RuleMask::uses`]) are never
/// looked up. Only scalars are kept between the two (no row references):
/// the verifier then merges the paths through the optional lookups instead
/// of carrying every combination of them through the rest of the program.
/// The price is a second lookup of a used scope table when a word other
/// than word 0 is read; word 0, the whole of every rule set of up to 64
/// rules, is computed with the summary, from the same rows, and kept.
pub struct Scope {
    /// Words where a rule may be in scope (a superset: exact per word
    /// is [`Scope::word`]).
    pub summary: u32,
    /// The [`uses`] bits (all below bit 16), and the protocol's row (below
    /// [`crate::tables::MASK_TABLE_LEN`]): two halves, so the whole takes
    /// 16 bytes of the rule walk's little stack.
    uses: u16,
    proto_row: u16,
    /// Word 0 of the rules in scope, exact.
    word0: u64,
}

const _: () = assert!(
    crate::tables::MASK_TABLE_LEN <= 1 << 16 && (FLOOD_SETS - 1) << uses::FLOOD_CLASSES < 1 << 16
);

impl Scope {
    #[inline(always)]
    pub fn of<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T) -> Scope {
        let mut scope = Scope {
            summary: 0,
            uses: 0,
            proto_row: (PROTO_BASE + proto_class::of(meta.proto)) as u16,
            word0: 0,
        };
        let Some(enabled) = tables.mask(ANY_BASE + any::ENABLED) else {
            return scope;
        };
        let Some(protocol) = tables.mask(scope.proto_row as u32) else {
            return scope;
        };
        let mut summary = enabled.summary & protocol.summary;
        if summary == 0 {
            return scope;
        }
        let mut word0 = enabled.word(0) & protocol.word(0);
        // The tables this protocol's enabled rules consult (a subset of
        // `enabled.uses`, which every enabled rule adds to).
        let table_uses = enabled.uses & protocol.uses;
        scope.uses = table_uses as u16;
        // Narrows the summary and word 0 to the rules of the "any" row
        // (the rules that do not consult the table) and of the packet's own.
        let mut narrow = |any_row: u32, own: Option<&RuleMask>| {
            let any = tables.mask(ANY_BASE + any_row);
            summary &= summary_of(any) | summary_of(own);
            word0 &= word_of(any, 0) | word_of(own, 0);
        };
        if table_uses & uses::SRC != 0 {
            narrow(any::SRC, tables.src_scope(&meta.src_key()));
        }
        if table_uses & uses::DST != 0 {
            narrow(any::DST, tables.dst_scope(&meta.dst_key()));
        }
        if table_uses & uses::PORT != 0 {
            let own = if meta.has(flag::HAS_PORTS) {
                tables.port_scope(meta.dst_port)
            } else {
                None
            };
            narrow(any::PORT, own);
        }
        if table_uses & uses::VLAN != 0 {
            let own = match meta.outer_vlan() {
                Some(vlan) => tables.vlan_scope(vlan),
                None => None,
            };
            narrow(any::VLAN, own);
        }
        if table_uses & uses::SRC_PORT != 0 {
            let own = if meta.has(flag::HAS_PORTS) {
                tables.src_port_scope(meta.src_port)
            } else {
                None
            };
            narrow(any::SRC_PORT, own);
        }
        scope.summary = summary & SUMMARY_BITS;
        scope.word0 = word0;
        scope
    }

    /// Word `w` of the set of rules in scope. A scope table no enabled rule
    /// uses is skipped: its "any" row then equals the enabled row.
    #[inline(always)]
    pub fn word<T: RuleTables + ?Sized>(&self, meta: &PacketMeta, tables: &T, w: u32) -> u64 {
        if w == 0 {
            return self.word0;
        }
        let mut m = word_of(tables.mask(ANY_BASE + any::ENABLED), w)
            & word_of(tables.mask(self.proto_row as u32), w);
        if m == 0 {
            return 0;
        }
        if self.uses as u32 & uses::SRC != 0 {
            m &= word_of(tables.mask(ANY_BASE + any::SRC), w)
                | word_of(tables.src_scope(&meta.src_key()), w);
        }
        if self.uses as u32 & uses::DST != 0 {
            m &= word_of(tables.mask(ANY_BASE + any::DST), w)
                | word_of(tables.dst_scope(&meta.dst_key()), w);
        }
        if self.uses as u32 & uses::PORT != 0 {
            let mut ports = word_of(tables.mask(ANY_BASE + any::PORT), w);
            if meta.has(flag::HAS_PORTS) {
                ports |= word_of(tables.port_scope(meta.dst_port), w);
            }
            m &= ports;
        }
        if self.uses as u32 & uses::VLAN != 0 {
            let mut vlans = word_of(tables.mask(ANY_BASE + any::VLAN), w);
            if let Some(vlan) = meta.outer_vlan() {
                vlans |= word_of(tables.vlan_scope(vlan), w);
            }
            m &= vlans;
        }
        if self.uses as u32 & uses::SRC_PORT != 0 {
            let mut ports = word_of(tables.mask(ANY_BASE + any::SRC_PORT), w);
            if meta.has(flag::HAS_PORTS) {
                ports |= word_of(tables.src_port_scope(meta.src_port), w);
            }
            m &= ports;
        }
        m
    }

    /// The [`flood_class`] bits some enabled `flood` rule counts.
    #[inline(always)]
    pub fn flood_uses(&self) -> u32 {
        (self.uses as u32 >> uses::FLOOD_CLASSES) & (FLOOD_SETS - 1)
    }
}

/// Visits the mask-table rows of the stateless match conditions that hold
/// for the packet (`tcp_flags`, `ttl` below/above, `fragment`, `header`).
#[inline(always)]
fn kind_rows<T: RuleTables + ?Sized, V: FnMut(Option<&RuleMask>)>(
    meta: &PacketMeta,
    tables: &T,
    mut visit: V,
) {
    visit(tables.mask(TTL_BASE + meta.ttl as u32));
    if meta.has(flag::HAS_TCP_FLAGS) {
        visit(tables.mask(FLAGS_BASE + (meta.tcp_flags as u32 & 0x1ff)));
    }
    if meta.has_event(event::FIRST_FRAGMENT) {
        let len = if meta.l3_payload_len > MAX_TINY_THRESHOLD {
            MAX_TINY_THRESHOLD
        } else {
            meta.l3_payload_len
        };
        visit(tables.mask(TINY_BASE + len));
    }
    let events = meta.events & (EVENT_SETS - 1);
    if events != 0 {
        visit(tables.mask(EVENT_SET_BASE + events));
    }
    let option_events = (meta.events >> OPTION_EVENT_FIRST) & (OPTION_EVENT_SETS - 1);
    if option_events != 0 {
        visit(tables.mask(OPTION_EVENT_SET_BASE + option_events));
    }
}

/// Words where a stateless match condition may hold (see [`kind_word`]).
#[inline(always)]
fn kind_summary<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T) -> u32 {
    let mut summary = 0;
    kind_rows(meta, tables, |row| summary |= summary_of(row));
    summary
}

/// Word `w` of the rules whose stateless match condition holds.
#[inline(always)]
fn kind_word<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T, w: u32) -> u64 {
    let mut word = 0;
    kind_rows(meta, tables, |row| word |= word_of(row, w));
    word
}

/// Rules whose scope holds and whose stateless match condition holds: the
/// rules a packet matches, leaving aside `ttl: deviation` and `syn_flood`.
/// For tests and tools; `process` reads the same tables word by word.
pub fn stateless_matches<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T) -> RuleMask {
    let scope = Scope::of(meta, tables);
    let mut out = RuleMask::EMPTY;
    let summary = scope.summary & kind_summary(meta, tables);
    let mut w = 0;
    while w < MASK_WORDS as u32 {
        if summary & (1 << w) != 0 {
            let word = scope.word(meta, tables, w) & kind_word(meta, tables, w);
            if word != 0 {
                out.words[w as usize] = word;
                out.summary |= 1 << w;
            }
        }
        w += 1;
    }
    out
}

/// Whether a packet may teach its source's TTL baseline: a TCP segment
/// with ACK set and SYN and RST clear, i.e. a segment of an established
/// connection. SYN floods, SYN+ACK reflection, RST injection and UDP/ICMP
/// floods, the cheap spoofed traffic, teach nothing; a source's other
/// packets are still compared with what its connections taught.
#[inline(always)]
pub fn teaches_ttl(meta: &PacketMeta) -> bool {
    meta.has(flag::HAS_TCP_FLAGS) && meta.tcp_flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK
}

/// `ttl: deviation` rules: learns or compares the source's hop count.
/// Returns the mask-table row of the deviation found, if any.
///
/// While any deviation rule is enabled, every teaching packet
/// ([`teaches_ttl`]) teaches its source's first baseline, whatever the
/// rules' scopes (which decide where a deviation alerts, not what is
/// learned). Other packets only look their source up, and only when a
/// deviation rule may be in scope.
#[inline(always)]
fn deviation_row<T: RuleTables + ?Sized, S: DetectState>(
    meta: &PacketMeta,
    scope: &Scope,
    tables: &T,
    state: &mut S,
) -> Option<u32> {
    let rules = summary_of(tables.mask(ANY_BASE + any::DEVIATION));
    if rules == 0 {
        return None;
    }
    let teach = teaches_ttl(meta);
    if !teach {
        // Only a lookup: skipped when no deviation rule is in scope. The
        // summaries tell by word; a single candidate word 0 (rule sets of
        // up to 64 rules) is checked exactly, without a loop.
        let candidates = rules & scope.summary;
        if candidates == 0 {
            return None;
        }
        if candidates == 1 && word_of(tables.mask(ANY_BASE + any::DEVIATION), 0) & scope.word0 == 0
        {
            return None;
        }
    }
    let hops = hop_count(meta.ttl);
    let hash = addr_hash(tables.hash_seed(), 0, meta.ip_version, &meta.src_addr);
    let fingerprint = fingerprint_of(hash);
    let learned = state
        .ttl_slot(paged_index(page_of(hash), hash, TTL_PER_PAGE), |slot| {
            ttl_step(slot, fingerprint, hops, teach)
        })
        .flatten()?;
    Some(DEVIATION_BASE + hops.abs_diff(learned) as u32)
}

/// The [`flood_class`] bits of a packet (docs/CONTRACT.md section 2,
/// `flood`). TCP classes need the whole TCP header.
#[inline(always)]
pub fn flood_classes(meta: &PacketMeta) -> u32 {
    let mut classes = flood_class::bit(flood_class::ANY);
    match meta.proto {
        PROTO_UDP => classes |= flood_class::bit(flood_class::UDP),
        PROTO_ICMP | PROTO_ICMPV6 => classes |= flood_class::bit(flood_class::ICMP),
        _ => {}
    }
    if meta.has(flag::FRAGMENT) {
        classes |= flood_class::bit(flood_class::FRAGMENT);
    }
    if meta.has(flag::HAS_TCP_FLAGS) {
        let f = meta.tcp_flags;
        if f & (TCP_SYN | TCP_ACK) == TCP_SYN {
            classes |= flood_class::bit(flood_class::SYN);
        }
        if f & TCP_RST != 0 {
            classes |= flood_class::bit(flood_class::RST);
        }
        if f & (TCP_FIN | TCP_SYN | TCP_RST) == TCP_FIN {
            classes |= flood_class::bit(flood_class::FIN);
        }
        if f & (TCP_ACK | TCP_SYN | TCP_RST | TCP_FIN) == TCP_ACK && !meta.has(flag::TCP_PAYLOAD) {
            classes |= flood_class::bit(flood_class::ACK);
        }
    }
    classes
}

/// [`flood_step`]'s result bits: the window has reached a threshold ...
pub const FLOOD_REACHED: u8 = 1;
/// ... and this packet made it do so first in the window (the alert).
pub const FLOOD_CROSSED: u8 = 2;

/// Advances a tumbling `flood` window with an `adaptive` threshold by one
/// packet of `len` bytes (docs/CONTRACT.md section 2): a window that ended
/// without alerting first teaches the key's normal ([`adaptive_teach`]);
/// the alert is raised when the count exceeds [`adaptive_limit`]. Returns
/// what [`flood_step`] returns, packed as `count | bits << 32` (a plain
/// number: a BPF subprogram returns one register).
///
/// Not inlined: in the kernel a subprogram with its own frame, so the rule
/// walk's `bpf_loop` callback, whose frame adds to the main program's
/// (512 bytes in all), does not grow.
#[inline(never)]
pub fn adaptive_step(
    window: &mut SynWindow,
    now_ns: u64,
    window_ns: u64,
    rule: &RuleInfo,
    len: u32,
) -> u64 {
    if window.count == 0 || now_ns.wrapping_sub(window.start_ns) >= window_ns {
        if window.count != 0 && window.alerted == 0 {
            adaptive_teach(window, rule.adaptive_windows);
        }
        window.start_ns = now_ns;
        window.count = 0;
        window.alerted = 0;
        window.bytes = 0;
    }
    window.count = window.count.saturating_add(1);
    window.bytes = window.bytes.saturating_add(len as u64);
    let count = window.count as u64;
    if window.count <= adaptive_limit(window, rule) {
        return count;
    }
    if window.alerted != 0 {
        return count | (FLOOD_REACHED as u64) << 32;
    }
    window.alerted = 1;
    count | ((FLOOD_REACHED | FLOOD_CROSSED) as u64) << 32
}

/// Teaches `window`'s key the count of its ended window c: normal a (in
/// 1/256 packets) ← c × 256 for the first, else a + ⌊(c × 256 − a) / K⌋,
/// the division truncating towards zero (done on magnitudes: BPF has no
/// signed division).
#[inline(always)]
pub fn adaptive_teach(window: &mut SynWindow, learn_windows: u16) {
    let c = (window.count as u64) << 8;
    let a = window.normal as u64;
    let k = if learn_windows == 0 {
        1
    } else {
        learn_windows as u64
    };
    let next = if window.taught == 0 {
        c
    } else if c >= a {
        a + (c - a) / k
    } else {
        a - (a - c) / k
    };
    window.normal = if next > u32::MAX as u64 {
        u32::MAX
    } else {
        next as u32
    };
    if window.taught < learn_windows as u32 {
        window.taught += 1;
    }
}

/// The count an `adaptive` window must exceed: `min` until `learn_windows`
/// windows have taught, then max(`min`, ⌊f × a / 65,536⌋).
#[inline(always)]
pub fn adaptive_limit(window: &SynWindow, rule: &RuleInfo) -> u32 {
    let min = rule.flood_threshold;
    if window.taught < rule.adaptive_windows as u32 {
        return min;
    }
    let learned = (rule.adaptive_factor as u64 * window.normal as u64) >> 16;
    let learned = if learned > u32::MAX as u64 {
        u32::MAX
    } else {
        learned as u32
    };
    if learned > min { learned } else { min }
}

/// Advances a tumbling `flood` / `syn_flood` window by one packet of
/// `len` bytes. Returns the packet count so far and the [`FLOOD_REACHED`]
/// / [`FLOOD_CROSSED`] bits. A threshold of 0 is none (`threshold` packets
/// or `bytes` bytes, whichever is reached first).
#[inline(always)]
pub fn flood_step(
    window: &mut SynWindow,
    now_ns: u64,
    window_ns: u64,
    threshold: u32,
    bytes: u64,
    len: u32,
) -> (u32, u8) {
    if window.count == 0 || now_ns.wrapping_sub(window.start_ns) >= window_ns {
        window.start_ns = now_ns;
        window.count = 0;
        window.alerted = 0;
        window.bytes = 0;
    }
    window.count = window.count.saturating_add(1);
    window.bytes = window.bytes.saturating_add(len as u64);
    let reached =
        (threshold != 0 && window.count >= threshold) || (bytes != 0 && window.bytes >= bytes);
    if !reached {
        return (window.count, 0);
    }
    if window.alerted != 0 {
        return (window.count, FLOOD_REACHED);
    }
    window.alerted = 1;
    (window.count, FLOOD_REACHED | FLOOD_CROSSED)
}

/// A `flood` / `syn_flood` rule's window step for one packet of its class:
/// the packets counted in the window and the [`flood_step`] bits.
#[inline(always)]
fn flood_counts<S: DetectState>(
    meta: &PacketMeta,
    rule: &RuleInfo,
    seed: u32,
    slot: u32,
    global_slot: u32,
    now_ns: u64,
    state: &mut S,
) -> Option<(u32, u8)> {
    let by_src = rule.flood_track == flood_track::BY_SRC;
    let addr = if by_src {
        &meta.src_addr
    } else {
        &meta.dst_addr
    };
    let address_hash = addr_hash(seed, 0, meta.ip_version, addr);
    let hash = rule_hash(address_hash, slot);
    // A source's windows in its page of state (a spoofed source's packet
    // then touches one page); a destination's anywhere in the table: a
    // busy destination has a window for many rules at once, which its
    // page's buckets would crowd.
    let index = if by_src {
        paged_index(page_of(address_hash), hash, SYN_PER_PAGE)
    } else {
        index_of(hash, SYN_BUCKETS)
    };
    let fingerprint = fingerprint_of(hash);
    let window_ns = rule.flood_window_ns;
    state.syn_bucket(index, |bucket| {
        let way = syn_way(bucket, global_slot, fingerprint, now_ns);
        let way = &mut bucket.ways[way & 1];
        way.window_ns = window_ns;
        if rule.adaptive_windows != 0 {
            let packed = adaptive_step(&mut way.window, now_ns, window_ns, rule, meta.frame_len);
            (packed as u32, (packed >> 32) as u8)
        } else {
            flood_step(
                &mut way.window,
                now_ns,
                window_ns,
                rule.flood_threshold,
                rule.flood_bytes,
                meta.frame_len,
            )
        }
    })
}

/// A `scan` rule's step for one packet of its classes (TCP SYN without
/// ACK and UDP, and for `hosts` ICMP too; `ports` needs the packet's
/// ports): the set bits of its source's window map and the [`flood_step`]
/// bits. `None`: the packet does not count.
#[inline(always)]
fn scan_counts<S: DetectState>(
    meta: &PacketMeta,
    rule: &RuleInfo,
    seed: u32,
    slot: u32,
    global_slot: u32,
    now_ns: u64,
    state: &mut S,
) -> Option<(u32, u8)> {
    let value = if rule.scan_hosts != 0 {
        addr_hash(seed, slot, meta.ip_version, &meta.dst_addr)
    } else if meta.has(flag::HAS_PORTS) {
        meta.dst_port as u64
    } else {
        return None;
    };
    state.count_hit(global_slot);
    let bit = scan_bit(seed, slot, value);
    let address_hash = addr_hash(seed, 0, meta.ip_version, &meta.src_addr);
    let hash = rule_hash(address_hash, slot);
    let page = page_of(address_hash);
    let fingerprint = fingerprint_of(hash);
    let (window_ns, threshold) = (rule.flood_window_ns, rule.flood_threshold);
    let out = state.scan_bucket(paged_index(page, hash, SCAN_PER_PAGE), |bucket| {
        let way = scan_way(bucket, global_slot, fingerprint, now_ns);
        scan_mark(bucket, way, window_ns, bit, threshold)
    })?;
    let bits = out & 0xffff;
    let mut step = 0;
    if bits >= threshold {
        step |= FLOOD_REACHED;
    }
    if out & (1 << 16) != 0 {
        step |= FLOOD_CROSSED;
    }
    Some((bits, step))
}

/// Counts one match for a (rule, source); returns the running total when an
/// alert record may be sent for it, `None` when the burst is spent.
#[inline(always)]
pub fn rate_step(state: &mut RateState, now_ns: u64) -> Option<u64> {
    if state.matched_total == 0 || now_ns.wrapping_sub(state.window_start_ns) >= RATE_WINDOW_NS {
        state.window_start_ns = now_ns;
        state.emitted_in_window = 0;
    }
    state.matched_total += 1;
    state.last_tick = track_tick(now_ns);
    if state.emitted_in_window < RATE_BURST {
        state.emitted_in_window += 1;
        Some(state.matched_total)
    } else {
        None
    }
}

/// Whether this CPU's [`AlertBudget`] has a record left at `now_ns`
/// (a new window starts once the last one has run its length).
#[inline(always)]
pub fn budget_left(budget: &mut AlertBudget, now_ns: u64) -> bool {
    if budget.spent == 0 || now_ns.wrapping_sub(budget.window_start_ns) >= RATE_WINDOW_NS {
        budget.window_start_ns = now_ns;
        budget.spent = 0;
    }
    budget.spent < ALERT_BUDGET
}

/// Counts one match on a rule's storm account ([`RateKey::rule_wide`]);
/// returns the running total when this is the window's first, whose record
/// shows the storm (one per rule, CPU and window, whatever the budget).
#[inline(always)]
pub fn storm_step(state: &mut RateState, now_ns: u64) -> Option<u64> {
    if state.matched_total == 0 || now_ns.wrapping_sub(state.window_start_ns) >= RATE_WINDOW_NS {
        state.window_start_ns = now_ns;
        state.emitted_in_window = 0;
    }
    state.matched_total += 1;
    if state.emitted_in_window == 0 {
        state.emitted_in_window = 1;
        Some(state.matched_total)
    } else {
        None
    }
}

/// The alert for one match of a rate-limited rule, if one is to be sent:
/// its count and [`aggregate`] value. Updates the rate limiter of (rule,
/// source); once this CPU's alert budget is spent, a source not tracked
/// (its own account counted no match in this tick or the one before) is
/// counted on the rule's storm account instead (contract §3, alert storms).
#[inline(always)]
fn rate_limited<S: DetectState>(
    state: &mut S,
    seed: u32,
    sig_id: u32,
    meta: &PacketMeta,
    now_ns: u64,
) -> Option<(u64, u8)> {
    // One key, rewritten for the storm account: the kernel's rule walk has
    // little stack to spare.
    let mut key = RateKey {
        sig_id,
        addr: meta.src_key(),
    };
    let tick = track_tick(now_ns);
    let filter_slot = track_slot(seed, &key);
    // An unreadable budget must not hide alerts: as if none applied.
    let has_budget = state
        .alert_budget(|b| budget_left(b, now_ns))
        .unwrap_or(true);
    if has_budget {
        // A full or failing rate map must not hide the alert: send it with
        // count 0, which userspace reads as "one packet, not aggregated".
        let total = state
            .rate_state(&key, |r| rate_step(r, now_ns))
            .unwrap_or(Some(0));
        state.track_stamp(filter_slot, |stamp| *stamp = tick as u8);
        let total = total?;
        state.alert_budget(|b| b.spent += 1);
        return Some((total, aggregate::SOURCE));
    }
    // Out of budget: a tracked source keeps its own account (the sweep
    // reports what it was not sent); any other goes to the rule's. The
    // filter spares the limiter's lookup for sources it cannot hold.
    let may_be_tracked = state
        .track_stamp(filter_slot, |stamp| track_stamp_may_hold(*stamp, tick))
        .unwrap_or(true);
    if may_be_tracked
        && state.tracked_rate_state(&key, |r| {
            let tracked = tracked_recently(r.last_tick, tick);
            if tracked {
                rate_step(r, now_ns);
            }
            tracked
        }) == Some(true)
    {
        state.track_stamp(filter_slot, |stamp| *stamp = tick as u8);
        return None;
    }
    key.addr.version = 0;
    key.addr.addr = [0; 16];
    debug_assert_eq!(key, RateKey::rule_wide(sig_id));
    let total = state
        .rate_state(&key, |r| storm_step(r, now_ns))
        .unwrap_or(Some(0))?;
    Some((total, aggregate::RULE))
}

/// Evaluates every rule on one parsed packet, updates state and counters,
/// and hands each alert to `emit` (which pairs it with `meta`).
#[inline(always)]
pub fn process<T, S, E>(
    meta: &PacketMeta,
    now_ns: u64,
    tables: &T,
    state: &mut S,
    emit: &mut E,
) -> Decision
where
    T: RuleTables + ?Sized,
    S: DetectState,
    E: FnMut(&AlertHead),
{
    let mut decision = Decision::default();
    if meta.ip_version == IP_VERSION_NONE {
        return decision;
    }
    let scope = Scope::of(meta, tables);
    if scope.summary == 0 {
        return decision;
    }
    // The flood rules counting one of the packet's classes: one row, read
    // only when some enabled flood rule counts one of them.
    let classes = flood_classes(meta);
    let flood_row = FLOOD_SET_BASE + (classes & (FLOOD_SETS - 1));
    let flood_rules = if classes & scope.flood_uses() != 0 {
        summary_of(tables.mask(flood_row)) & scope.summary
    } else {
        0
    };
    // Row indices, not references, are kept (see `Scope`).
    let deviation = deviation_row(meta, &scope, tables, state);
    let mut matched = kind_summary(meta, tables);
    if let Some(row) = deviation {
        matched |= summary_of(tables.mask(row));
    }
    matched &= scope.summary;
    if flood_rules == 0 && matched == 0 {
        return decision;
    }
    let now_ns = state.now(now_ns);
    // Word `w` of the matching rules.
    let matched_word = |w: u32| {
        let mut word = kind_word(meta, tables, w);
        if let Some(row) = deviation {
            word |= word_of(tables.mask(row), w);
        }
        word & scope.word(meta, tables, w)
    };
    let drop_mode = tables.drop_mode();
    const DROP_ROW: u32 = ANY_BASE + any::DROP;
    // Whether the source is blocked is judged once per packet, before the
    // rule walks (whose lines say it), and only when a `drop` rule may
    // match: for `flood` / `syn_flood` by_src rules on proof alone (their
    // threshold is their repetition), for the other rules by `block_when`.
    let flood_verdict = if drop_mode && flood_rules & summary_of(tables.mask(DROP_ROW)) != 0 {
        state.judge_block(meta, now_ns, false)
    } else {
        block::NONE
    };

    // flood rules first, so a drop they decide is known before the
    // per-packet alerts are written.
    tables.for_each_slot(
        flood_rules,
        |w| word_of(tables.mask(flood_row), w) & scope.word(meta, tables, w),
        |slot| {
            let Some(rule) = tables.rule(slot) else {
                return;
            };
            let global_slot = tables.slot_base() + slot;
            let seed = tables.hash_seed();
            let counted = if rule.kind == kind::SCAN {
                scan_counts(meta, rule, seed, slot, global_slot, now_ns, state)
            } else {
                state.count_hit(global_slot);
                flood_counts(meta, rule, seed, slot, global_slot, now_ns, state)
            };
            let Some((count, step)) = counted else {
                return;
            };
            let blocks = drop_mode && rule.action == action::DROP && step & FLOOD_REACHED != 0;
            // by_src blocks the flooding source (as `block_when` allows); by_dst
            // only drops the SYNs over the threshold: their sources are usually
            // spoofed, and blocking them would lock out whoever the attacker
            // impersonates.
            let mut line_block = block::NONE;
            if blocks {
                decision.drop = true;
                line_block = block::DROP_ONLY;
                if rule.flood_track == flood_track::BY_SRC && rule.block_ns > 0 {
                    line_block = flood_verdict;
                    decision.block = flood_verdict;
                    if flood_verdict == block::BLOCKED && rule.block_ns > decision.block_ns {
                        decision.block_ns = rule.block_ns;
                    }
                }
            }
            if step & FLOOD_CROSSED != 0 {
                let head = AlertHead {
                    sig_id: rule.sig_id,
                    kind: rule.kind,
                    action: if blocks {
                        outcome::BLOCKED
                    } else {
                        outcome::ALLOWED
                    },
                    count: count as u64,
                    aggregate: aggregate::SOURCE,
                    block: line_block,
                };
                emit(&head);
                state.count_alert(global_slot);
            }
        },
    );

    let mut verdict = block::NONE;
    if drop_mode
        && tables.any_slot(summary_of(tables.mask(DROP_ROW)) & matched, |w| {
            word_of(tables.mask(DROP_ROW), w) & matched_word(w)
        })
    {
        decision.drop = true;
        verdict = state.judge_block(meta, now_ns, true);
    }

    tables.for_each_slot(matched, matched_word, |slot| {
        let Some(rule) = tables.rule(slot) else {
            return;
        };
        let global_slot = tables.slot_base() + slot;
        state.count_hit(global_slot);
        let mut line_block = block::NONE;
        if drop_mode && rule.action == action::DROP {
            line_block = block::DROP_ONLY;
            if rule.block_ns > 0 {
                line_block = verdict;
                decision.block = verdict;
                if verdict == block::BLOCKED && rule.block_ns > decision.block_ns {
                    decision.block_ns = rule.block_ns;
                }
            }
        }
        if let Some((total, aggregate)) =
            rate_limited(state, tables.hash_seed(), rule.sig_id, meta, now_ns)
        {
            let head = AlertHead {
                sig_id: rule.sig_id,
                kind: rule.kind,
                action: if decision.drop {
                    outcome::BLOCKED
                } else {
                    outcome::ALLOWED
                },
                count: total,
                aggregate,
                block: line_block,
            };
            emit(&head);
            state.count_alert(global_slot);
        }
    });
    decision
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::tables::block_when;
    use std::{vec, vec::Vec};

    /// Runs [`enforce`] and returns its verdict and the counters it bumped.
    fn enforced(
        decision: Decision,
        dry_run: bool,
        store: Result<u8, ()>,
    ) -> (bool, Vec<u32>, Option<u64>) {
        let mut counted = Vec::new();
        let mut stored = None;
        let drop = enforce(
            &decision,
            dry_run,
            |block_ns| {
                stored = Some(block_ns);
                store
            },
            &mut |c| counted.push(c),
        );
        (drop, counted, stored)
    }

    const BLOCKING: Decision = Decision {
        drop: true,
        block_ns: 60_000_000_000,
        block: block::BLOCKED,
    };

    #[test]
    fn a_recorded_block_is_counted_by_its_block_when() {
        let (drop, counted, stored) = enforced(BLOCKING, false, Ok(block_when::PROVEN));
        assert!(drop);
        assert_eq!(stored, Some(60_000_000_000));
        assert_eq!(
            counted,
            [
                counter::BLOCKS + block_when::PROVEN as u32,
                counter::DROPPED_BY_RULE,
                counter::DROPPED
            ]
        );
    }

    /// The fault of issue #11: a `BLOCKED` insert the kernel map refuses.
    /// The packet is still dropped, the failure counted, no block counted.
    #[test]
    fn a_block_the_store_refuses_still_drops_and_is_counted_as_an_error() {
        let (drop, counted, stored) = enforced(BLOCKING, false, Err(()));
        assert!(
            drop,
            "the rule said drop: a failed store must not let it through"
        );
        assert!(stored.is_some());
        assert_eq!(
            counted,
            [
                counter::BLOCK_ERRORS,
                counter::DROPPED_BY_RULE,
                counter::DROPPED
            ]
        );
    }

    #[test]
    fn a_dry_run_stores_nothing_and_counts_what_it_would_drop() {
        let (drop, counted, stored) = enforced(BLOCKING, true, Ok(block_when::PROVEN));
        assert!(!drop);
        assert_eq!(stored, None);
        assert_eq!(counted, [counter::WOULD_DROP]);
    }

    #[test]
    fn refusals_are_counted_and_a_drop_only_rule_stores_nothing() {
        let not_proven = Decision {
            drop: true,
            block_ns: 0,
            block: block::NOT_PROVEN,
        };
        let (drop, counted, stored) = enforced(not_proven, false, Err(()));
        assert!(drop);
        assert_eq!(stored, None);
        assert_eq!(
            counted,
            [
                counter::REFUSED_NOT_PROVEN,
                counter::DROPPED_BY_RULE,
                counter::DROPPED
            ]
        );
        let passing = Decision::default();
        assert_eq!(enforced(passing, false, Err(())), (false, vec![], None));
    }
}
