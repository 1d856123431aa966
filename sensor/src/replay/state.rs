//! [`DetectState`] in memory, for `replay` (and tests): the per-source
//! state the kernel keeps in BPF maps, with the same sizes.
//!
//! TTL baselines and `syn_flood` windows are the kernel's fixed-size,
//! hash-indexed tables (`sensor_common::sketch`), held in vectors: the same
//! functions place, keep and replace entries in both.
//!
//! The other maps are LRU hash maps. When one is full, the least recently used entry goes, like
//! the kernel's `BPF_MAP_TYPE_LRU_HASH` (whose LRU is approximate and per
//! CPU list; this one is exact, which keeps replay deterministic). The
//! limits are the kernel's (`sensor_common::tables::*_ENTRIES`), so a
//! capture with more sources than the kernel can track loses state the same
//! way live traffic would.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use sensor_common::detect::DetectState;
use sensor_common::packet::AddrKey;
use sensor_common::sketch::{SCAN_BUCKETS, SYN_BUCKETS, TTL_SLOTS};
use sensor_common::tables::{
    AlertBudget, BlockPolicy, HANDSHAKE_ENTRIES, Handshake, HandshakeKey, MAX_RULES,
    PROVEN_ENTRIES, RATE_ENTRIES, REPEAT_ENTRIES, RateKey, RateState, RepeatWindow, RuleStats,
    ScanBucket, SynBucket,
};

/// A hash map of bounded size that evicts its least recently used entry.
#[derive(Clone, Debug)]
struct LruMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    /// Last-use tick → key, oldest first.
    by_age: BTreeMap<u64, K>,
    next_tick: u64,
    capacity: usize,
}

impl<K: Copy + Eq + Hash, V> LruMap<K, V> {
    fn new(capacity: usize) -> Self {
        LruMap {
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            next_tick: 0,
            capacity: capacity.max(1),
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The entry of `key`, now the most recently used.
    fn touch(&mut self, key: &K) -> Option<&mut V> {
        let tick = self.tick();
        let (value, used) = self.entries.get_mut(key)?;
        self.by_age.remove(used);
        *used = tick;
        self.by_age.insert(tick, *key);
        Some(value)
    }

    fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        if self.entries.contains_key(key) {
            return self.touch(key).expect("entry present");
        }
        if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.by_age.pop_first()
        {
            self.entries.remove(&oldest);
        }
        let tick = self.tick();
        self.by_age.insert(tick, *key);
        &mut self.entries.entry(*key).or_insert((make(), tick)).0
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, used)) = self.entries.remove(key) {
            self.by_age.remove(&used);
        }
    }

    /// Entries, least recently used first.
    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.by_age.values().map(|key| (key, &self.entries[key].0))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Entry limit of the rate-limiter map (the fixed-size tables have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateLimits {
    pub rate_states: usize,
}

impl Default for StateLimits {
    /// The kernel's map size.
    fn default() -> Self {
        StateLimits {
            rate_states: RATE_ENTRIES as usize,
        }
    }
}

/// The kernel's per-source state and per-rule counters, in memory (one
/// "CPU").
#[derive(Clone, Debug)]
pub struct MemoryState {
    /// The kernel's `ADDR_STATE` pages, each table flat (the indices are
    /// the same; `sketch` chooses them): [`TTL_SLOTS`] TTL slots,
    /// [`SYN_BUCKETS`] flood window buckets, [`SCAN_BUCKETS`] scan window
    /// buckets.
    ttl_slots: Vec<u64>,
    syn_buckets: Vec<SynBucket>,
    scan_buckets: Vec<ScanBucket>,
    rate_states: LruMap<RateKey, RateState>,
    alert_budget: AlertBudget,
    rule_stats: Vec<RuleStats>,
    /// Drop mode (the kernel's map sizes): handshakes, proofs, repeats.
    handshakes: LruMap<HandshakeKey, Handshake>,
    proven: LruMap<AddrKey, u64>,
    repeats: LruMap<AddrKey, RepeatWindow>,
    block_policy: BlockPolicy,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::with_limits(StateLimits::default())
    }
}

impl MemoryState {
    /// With the kernel's map sizes.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: StateLimits) -> Self {
        MemoryState {
            ttl_slots: vec![0; TTL_SLOTS as usize],
            syn_buckets: vec![SynBucket::default(); SYN_BUCKETS as usize],
            scan_buckets: vec![ScanBucket::default(); SCAN_BUCKETS as usize],
            rate_states: LruMap::new(limits.rate_states),
            alert_budget: AlertBudget::default(),
            rule_stats: vec![RuleStats::default(); MAX_RULES as usize],
            handshakes: LruMap::new(HANDSHAKE_ENTRIES as usize),
            proven: LruMap::new(PROVEN_ENTRIES as usize),
            repeats: LruMap::new(REPEAT_ENTRIES as usize),
            block_policy: BlockPolicy::DEFAULT,
        }
    }

    /// Drop mode's blocking policy (the configuration's default until set).
    pub fn set_block_policy(&mut self, policy: BlockPolicy) {
        self.block_policy = policy;
    }

    /// The rate limiter of every (rule slot, source), least recently used
    /// first: what the aggregator's sweep reads.
    pub fn rate_states(&self) -> impl Iterator<Item = (&RateKey, &RateState)> {
        self.rate_states.iter()
    }

    /// Per-slot counters (`RULE_STATS`), indexed by rule slot.
    pub fn rule_stats(&self) -> &[RuleStats] {
        &self.rule_stats
    }

    /// Entries held in the TTL baseline table, syn window table (ways in
    /// use) and rate map.
    pub fn entry_counts(&self) -> (usize, usize, usize) {
        (
            self.ttl_slots.iter().filter(|slot| **slot != 0).count(),
            self.syn_buckets
                .iter()
                .flat_map(|bucket| &bucket.ways)
                .filter(|way| way.fingerprint != 0)
                .count(),
            self.rate_states.len(),
        )
    }
}

impl DetectState for MemoryState {
    fn ttl_slot<R, F: FnOnce(&mut u64) -> R>(&mut self, index: u32, step: F) -> Option<R> {
        self.ttl_slots.get_mut(index as usize).map(step)
    }

    fn syn_bucket<R, F: FnOnce(&mut SynBucket) -> R>(&mut self, index: u32, step: F) -> Option<R> {
        self.syn_buckets.get_mut(index as usize).map(step)
    }

    fn scan_bucket<R, F: FnOnce(&mut ScanBucket) -> R>(
        &mut self,
        index: u32,
        step: F,
    ) -> Option<R> {
        self.scan_buckets.get_mut(index as usize).map(step)
    }

    fn rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R> {
        Some(step(
            self.rate_states.get_or_insert_with(key, RateState::default),
        ))
    }

    fn tracked_rate_state<R, F: FnOnce(&mut RateState) -> R>(
        &mut self,
        key: &RateKey,
        step: F,
    ) -> Option<R> {
        self.rate_states.touch(key).map(step)
    }

    fn alert_budget<R, F: FnOnce(&mut AlertBudget) -> R>(&mut self, step: F) -> Option<R> {
        Some(step(&mut self.alert_budget))
    }

    fn count_hit(&mut self, slot: u32) {
        if let Some(stats) = self.rule_stats.get_mut(slot as usize) {
            stats.hits += 1;
        }
    }

    fn count_alert(&mut self, slot: u32) {
        if let Some(stats) = self.rule_stats.get_mut(slot as usize) {
            stats.alerts += 1;
        }
    }

    fn handshake(&mut self, key: &HandshakeKey) -> Option<Handshake> {
        self.handshakes.touch(key).copied()
    }

    fn set_handshake(&mut self, key: &HandshakeKey, value: &Handshake) {
        *self.handshakes.get_or_insert_with(key, Handshake::default) = *value;
    }

    fn forget_handshake(&mut self, key: &HandshakeKey) {
        self.handshakes.remove(key);
    }

    fn prove(&mut self, src: &AddrKey, now: u64) {
        *self.proven.get_or_insert_with(src, || now) = now;
    }

    fn proven_at(&mut self, src: &AddrKey) -> Option<u64> {
        self.proven.touch(src).copied()
    }

    fn repeat_window<R, F: FnOnce(&mut RepeatWindow) -> R>(
        &mut self,
        src: &AddrKey,
        step: F,
    ) -> Option<R> {
        Some(step(
            self.repeats.get_or_insert_with(src, RepeatWindow::default),
        ))
    }

    fn block_policy(&self) -> BlockPolicy {
        self.block_policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::detect::rate_step;
    use sensor_common::sketch::ttl_step;

    fn addr(n: u8) -> AddrKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[192, 0, 2, n]);
        AddrKey::new(4, addr)
    }

    fn rate_key(n: u8) -> RateKey {
        RateKey {
            sig_id: 1,
            addr: addr(n),
        }
    }

    #[test]
    fn default_limits_are_the_kernel_map_sizes() {
        assert_eq!(StateLimits::default().rate_states, RATE_ENTRIES as usize);
        let state = MemoryState::new();
        assert_eq!(state.ttl_slots.len(), TTL_SLOTS as usize);
        assert_eq!(state.syn_buckets.len(), SYN_BUCKETS as usize);
    }

    #[test]
    fn fixed_tables_hold_what_is_stored_and_refuse_other_indices() {
        let mut state = MemoryState::new();
        assert_eq!(
            state.ttl_slot(7, |slot| ttl_step(slot, 5, 3, true)),
            Some(None)
        );
        assert_eq!(
            state.ttl_slot(7, |slot| ttl_step(slot, 5, 9, true)),
            Some(Some(3))
        );
        assert_eq!(state.ttl_slot(TTL_SLOTS, |_| ()), None);
        for _ in 0..4 {
            state.syn_bucket(3, |b| b.ways[1].window.count += 1);
        }
        assert_eq!(state.syn_bucket(3, |b| b.ways[1].window.count), Some(4));
        assert_eq!(state.syn_bucket(SYN_BUCKETS, |_| ()), None);
        assert_eq!(state.entry_counts().0, 1);
    }

    #[test]
    fn a_full_rate_map_evicts_the_least_recently_used_entry() {
        let mut state = MemoryState::with_limits(StateLimits { rate_states: 2 });
        for n in 1..=3 {
            state.rate_state(&rate_key(n), |r| rate_step(r, u64::from(n)));
        }
        let kept: Vec<_> = state.rate_states().map(|(k, _)| k.addr).collect();
        assert_eq!(kept, vec![addr(2), addr(3)], "oldest first, 1 evicted");
        let total = state
            .rate_state(&rate_key(1), |r| rate_step(r, 10))
            .unwrap();
        assert_eq!(total, Some(1), "a recreated entry counts from zero");
    }

    #[test]
    fn state_persists_between_steps() {
        let mut state = MemoryState::new();
        let totals: Vec<_> = (0..3)
            .map(|t| state.rate_state(&rate_key(1), |r| rate_step(r, t)).unwrap())
            .collect();
        assert_eq!(totals, vec![Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn counts_hits_and_alerts_per_slot() {
        let mut state = MemoryState::new();
        state.count_hit(2);
        state.count_hit(2);
        state.count_alert(2);
        state.count_hit(MAX_RULES); // out of range: ignored, like a failed map lookup
        assert_eq!(state.rule_stats()[2], RuleStats { hits: 2, alerts: 1 });
        assert_eq!(state.rule_stats().len(), MAX_RULES as usize);
    }
}
