//! Per-packet rule evaluation, written once for the kernel and for replay.
//!
//! The work per packet is a fixed number of table lookups whatever the
//! number of rules ([`kind_matches`], [`scope_mask`]), then one step per
//! *matching* rule: per-source state, counters and the alert record.

use crate::alert::{AlertRecord, outcome};
use crate::packet::{AddrKey, IP_VERSION_NONE, PacketMeta, event, flag};
use crate::tables::{
    ANY_BASE, DEVIATION_BASE, EVENT_BASE, FLAGS_BASE, MAX_RULES, MAX_TINY_THRESHOLD, PROTO_BASE,
    RATE_BURST, RATE_WINDOW_NS, RateKey, RateState, RuleInfo, RuleMask, SynKey, SynWindow,
    TINY_BASE, TTL_BASE, action, any, kind, proto_class, syn_track,
};

/// Read access to the compiled rule set (BPF maps, or memory in replay).
pub trait RuleTables {
    /// `masks[index]`, 0 when absent.
    fn mask(&self, index: u32) -> RuleMask;
    /// Longest-prefix match of the source address in the `scope.src` trie.
    fn src_scope(&self, addr: &AddrKey) -> RuleMask;
    /// Longest-prefix match of the destination in the `scope.dst` trie.
    fn dst_scope(&self, addr: &AddrKey) -> RuleMask;
    fn port_scope(&self, port: u16) -> RuleMask;
    fn vlan_scope(&self, vlan: u16) -> RuleMask;
    fn rule(&self, slot: u32) -> Option<RuleInfo>;
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

    /// Calls `f` with each slot set in `mask`, lowest first. The kernel
    /// overrides this with `bpf_loop` so the verifier checks the body once
    /// instead of once per possible rule.
    #[inline(always)]
    fn for_each_slot<F: FnMut(u32)>(&self, mask: RuleMask, mut f: F) {
        let mut pending = mask;
        let mut i = 0;
        while i < MAX_RULES && pending != 0 {
            i += 1;
            f(pending.trailing_zeros());
            pending &= pending - 1;
        }
    }
}

/// Per-address state and counters (LRU / per-CPU maps, or memory).
pub trait DetectState {
    /// The hop count learned for `src`; when none is stored, stores `hops`
    /// and returns `None` (the first packet of a source only teaches).
    fn ttl_baseline(&mut self, src: &AddrKey, hops: u8) -> Option<u8>;
    /// Runs `step` on the `syn_flood` window of `key` (a new one is zeroed).
    fn syn_window<R, F: FnOnce(&mut SynWindow) -> R>(&mut self, key: &SynKey, step: F)
    -> Option<R>;
    /// Runs `step` on the rate limiter of `key` (a new one is zeroed).
    fn rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R>;
    /// Counts a match of the rule in `global_slot` (`slot_base() + slot`).
    fn count_hit(&mut self, global_slot: u32);
    fn count_alert(&mut self, global_slot: u32);
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
            _pad: [0; 4],
            packet: *meta,
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

/// Rules whose `scope` holds for this packet (and that are enabled).
#[inline(always)]
pub fn scope_mask<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T) -> RuleMask {
    let mut mask = tables.mask(ANY_BASE + any::ENABLED);
    if mask == 0 {
        return 0;
    }
    mask &= tables.mask(PROTO_BASE + proto_class::of(meta.proto));
    mask &= tables.mask(ANY_BASE + any::SRC) | tables.src_scope(&meta.src_key());
    mask &= tables.mask(ANY_BASE + any::DST) | tables.dst_scope(&meta.dst_key());
    let mut ports = tables.mask(ANY_BASE + any::PORT);
    if meta.has(flag::HAS_PORTS) {
        ports |= tables.port_scope(meta.dst_port);
    }
    mask &= ports;
    let mut vlans = tables.mask(ANY_BASE + any::VLAN);
    if let Some(vlan) = meta.outer_vlan() {
        vlans |= tables.vlan_scope(vlan);
    }
    mask & vlans
}

/// Rules whose stateless match condition holds (`tcp_flags`, `ttl`
/// below/above, `fragment`, `header`).
#[inline(always)]
pub fn kind_matches<T: RuleTables + ?Sized>(meta: &PacketMeta, tables: &T) -> RuleMask {
    let mut mask = tables.mask(TTL_BASE + meta.ttl as u32);
    if meta.has(flag::HAS_TCP_FLAGS) {
        mask |= tables.mask(FLAGS_BASE + (meta.tcp_flags as u32 & 0x1ff));
    }
    if meta.has_event(event::FIRST_FRAGMENT) {
        let len = if meta.l3_payload_len > MAX_TINY_THRESHOLD {
            MAX_TINY_THRESHOLD
        } else {
            meta.l3_payload_len
        };
        mask |= tables.mask(TINY_BASE + len);
    }
    let events = meta.events;
    let mut ev: u32 = 0;
    while ev < event::FIRST_FRAGMENT as u32 {
        if events & (1 << ev) != 0 {
            mask |= tables.mask(EVENT_BASE + ev);
        }
        ev += 1;
    }
    mask
}

/// `ttl: deviation` rules: learns or compares the source's hop count.
#[inline(always)]
fn deviation_matches<T: RuleTables + ?Sized, S: DetectState>(
    meta: &PacketMeta,
    scope: RuleMask,
    tables: &T,
    state: &mut S,
) -> RuleMask {
    if tables.mask(ANY_BASE + any::DEVIATION) & scope == 0 {
        return 0;
    }
    let hops = hop_count(meta.ttl);
    match state.ttl_baseline(&meta.src_key(), hops) {
        Some(learned) => tables.mask(DEVIATION_BASE + hops.abs_diff(learned) as u32),
        None => 0,
    }
}

/// Advances a tumbling `syn_flood` window by one SYN. Returns the count so
/// far and whether this SYN reached the threshold first in the window.
#[inline(always)]
pub fn syn_step(
    window: &mut SynWindow,
    now_ns: u64,
    window_ns: u64,
    threshold: u32,
) -> (u32, bool) {
    if window.count == 0 || now_ns.wrapping_sub(window.start_ns) >= window_ns {
        window.start_ns = now_ns;
        window.count = 0;
        window.alerted = 0;
    }
    window.count = window.count.saturating_add(1);
    let crossed = window.count >= threshold && window.alerted == 0;
    if crossed {
        window.alerted = 1;
    }
    (window.count, crossed)
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
    if state.emitted_in_window < RATE_BURST {
        state.emitted_in_window += 1;
        Some(state.matched_total)
    } else {
        None
    }
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
    let scope = scope_mask(meta, tables);
    if scope == 0 {
        return decision;
    }
    let syn_rules = if meta.has_event(event::SYN_NO_ACK) {
        tables.mask(EVENT_BASE + event::SYN_NO_ACK as u32) & scope
    } else {
        0
    };
    let matched =
        (kind_matches(meta, tables) | deviation_matches(meta, scope, tables, state)) & scope;
    let drop_mode = tables.drop_mode();

    // syn_flood rules first, so a drop they decide is known before the
    // per-packet alerts are written.
    tables.for_each_slot(syn_rules, |slot| {
        let Some(rule) = tables.rule(slot) else {
            return;
        };
        let global_slot = tables.slot_base() + slot;
        state.count_hit(global_slot);
        let addr = if rule.syn_track == syn_track::BY_SRC {
            meta.src_key()
        } else {
            meta.dst_key()
        };
        let key = SynKey {
            slot: global_slot,
            addr,
            _pad: [0; 3],
        };
        let (threshold, window_ns) = (rule.syn_threshold, rule.syn_window_ns);
        let Some((count, crossed)) =
            state.syn_window(&key, |w| syn_step(w, now_ns, window_ns, threshold))
        else {
            return;
        };
        let blocks = drop_mode && rule.action == action::DROP && count >= threshold;
        // by_src blocks the flooding source; by_dst only drops the SYNs over
        // the threshold: their sources are usually spoofed, and blocking
        // them would lock out whoever the attacker impersonates.
        if blocks {
            decision.drop = true;
            if rule.syn_track == syn_track::BY_SRC && rule.block_ns > decision.block_ns {
                decision.block_ns = rule.block_ns;
            }
        }
        if crossed {
            let head = AlertHead {
                sig_id: rule.sig_id,
                kind: kind::SYN_FLOOD,
                action: if blocks {
                    outcome::BLOCKED
                } else {
                    outcome::ALLOWED
                },
                count: count as u64,
            };
            emit(&head);
            state.count_alert(global_slot);
        }
    });

    if drop_mode && matched & tables.mask(ANY_BASE + any::DROP) != 0 {
        decision.drop = true;
    }

    tables.for_each_slot(matched, |slot| {
        let Some(rule) = tables.rule(slot) else {
            return;
        };
        let global_slot = tables.slot_base() + slot;
        state.count_hit(global_slot);
        if drop_mode && rule.action == action::DROP && rule.block_ns > decision.block_ns {
            decision.block_ns = rule.block_ns;
        }
        let key = RateKey {
            sig_id: rule.sig_id,
            addr: meta.src_key(),
            _pad: [0; 3],
        };
        // A full or failing rate map must not hide the alert: send it with
        // count 0, which userspace reads as "one packet, not aggregated".
        let total = state
            .rate_state(&key, |r| rate_step(r, now_ns))
            .unwrap_or(Some(0));
        if let Some(total) = total {
            let head = AlertHead {
                sig_id: rule.sig_id,
                kind: rule.kind,
                action: if decision.drop {
                    outcome::BLOCKED
                } else {
                    outcome::ALLOWED
                },
                count: total,
            };
            emit(&head);
            state.count_alert(global_slot);
        }
    });
    decision
}
