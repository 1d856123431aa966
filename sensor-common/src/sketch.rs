//! Fixed-size per-address state: TTL baselines, `syn_flood` / `flood`
//! windows and `scan` windows.
//!
//! They live in plain arrays indexed by a keyed hash of the address, not in
//! LRU hash maps: a lookup is an array index the verifier inlines (no helper
//! call, no lock, no allocation), and a flood of spoofed sources can only
//! take over the slots it hashes to, never make the kernel allocate,
//! evict and relink entries on every packet. The kernel (BPF array maps) and
//! replay (vectors) run these same functions over the same layouts, so both
//! keep, share and lose state identically.
//!
//! - TTL baselines: one `u64` per slot, [`TTL_SLOTS`] slots, direct-mapped.
//!   A slot holds one source's fingerprint and hop count; a teaching packet
//!   whose source finds another source in its slot takes the slot over.
//! - `syn_flood` / `flood` windows: [`SYN_BUCKETS`] buckets of two ways. A
//!   window stays until it has ended; a key finding both ways of its bucket
//!   live takes the way with the smaller count (a heavy hitter is kept,
//!   one-packet spoofed windows replace each other). A new window starts at
//!   zero, so a replaced window can only delay an alert, never cause one.
//!   `scan` windows: [`SCAN_BUCKETS`] buckets of two ways, the same way.
//! - All three tables are cut into [`STATE_PAGES`] pages, one page of each
//!   per address: a source's TTL slot, its `by_src` and its `scan` windows
//!   are in one page, so that a packet from a source never seen costs one
//!   page's address translation (the kernel keeps the three as one map of
//!   4 KiB pages, [`crate::tables::AddrStatePage`]).

use crate::tables::{SCAN_MAP_BITS, SCAN_MAP_WORDS, ScanBucket, ScanWindow, SynBucket, SynWindow};

/// Slots of the TTL baseline table (a power of two).
pub const TTL_SLOTS: u32 = 65_536;
/// Buckets of the `syn_flood` window table, two windows each (a power of two).
pub const SYN_BUCKETS: u32 = 32_768;
/// Buckets of the `scan` window table, two windows each (a power of two).
pub const SCAN_BUCKETS: u32 = 8_192;
/// Largest `scan` threshold: below it the map's collisions stay far from
/// the contract's bounds (`sensor`'s `rules::compile::scan_bits_for`).
pub const MAX_SCAN_THRESHOLD: u32 = 256;

/// Pages of per-address state. A source's TTL slot and its `by_src` and
/// `scan` window buckets lie in one page of [`STATE_PAGE_BYTES`], chosen by
/// the address alone ([`page_of`]); within the page, a window's bucket is
/// chosen by its (rule, address) hash. A packet from a new source then
/// costs one page's address translation, not one per table. `by_dst`
/// windows are placed over the whole table ([`index_of`]): a busy
/// destination has windows of many rules at once, which one page's
/// buckets would crowd.
pub const STATE_PAGES: u32 = 2_048;
/// Bytes of a page of per-address state (the kernel's page size).
pub const STATE_PAGE_BYTES: usize = 4_096;
/// TTL slots per page of per-address state.
pub const TTL_PER_PAGE: u32 = TTL_SLOTS / STATE_PAGES;
/// `syn_flood` / `flood` window buckets per page of per-address state.
pub const SYN_PER_PAGE: u32 = SYN_BUCKETS / STATE_PAGES;
/// `scan` window buckets per page of per-address state.
pub const SCAN_PER_PAGE: u32 = SCAN_BUCKETS / STATE_PAGES;

const _: () = assert!(TTL_PER_PAGE.is_power_of_two() && TTL_PER_PAGE * STATE_PAGES == TTL_SLOTS);
const _: () = assert!(SYN_PER_PAGE.is_power_of_two() && SYN_PER_PAGE * STATE_PAGES == SYN_BUCKETS);
const _: () =
    assert!(SCAN_PER_PAGE.is_power_of_two() && SCAN_PER_PAGE * STATE_PAGES == SCAN_BUCKETS);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// One round of the hash: the word in, then a multiply and a fold.
#[inline(always)]
const fn round(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(MIX);
    h ^ (h >> 29)
}

/// Keyed 64-bit hash of an address (`version`, 16 bytes as the parser
/// stores it) and a `salt` (the rule slot; 0 for TTL baselines). `seed`
/// is the kernel's per-run secret, so that an outsider cannot aim spoofed
/// sources at a chosen slot; replay uses 0.
#[inline(always)]
pub fn addr_hash(seed: u32, salt: u32, version: u8, addr: &[u8; 16]) -> u64 {
    let word = |i: usize| {
        u64::from_le_bytes([
            addr[i],
            addr[i + 1],
            addr[i + 2],
            addr[i + 3],
            addr[i + 4],
            addr[i + 5],
            addr[i + 6],
            addr[i + 7],
        ])
    };
    let mut h = ((seed as u64) << 32) | ((salt as u64) << 8) | version as u64;
    h = round(h, MIX);
    h = round(h, word(0));
    h = round(h, word(8));
    h.wrapping_mul(MIX)
}

/// The keyed hash of a (rule, address) pair: the address's own
/// [`addr_hash`] (salt 0, the hash of its TTL slot) mixed with the rule's
/// slot by one more round.
#[inline(always)]
pub const fn rule_hash(address_hash: u64, salt: u32) -> u64 {
    round(address_hash, ((salt as u64) << 8) | 0xff).wrapping_mul(MIX)
}

/// The slot of a (rule, source) in each CPU's tracked-source filter
/// ([`crate::tables::TRACK_SLOTS`]).
#[inline(always)]
pub fn track_slot(seed: u32, key: &crate::tables::RateKey) -> u32 {
    let address_hash = addr_hash(seed, 0, key.addr.version, &key.addr.addr);
    index_of(
        rule_hash(address_hash, key.sig_id),
        crate::tables::TRACK_SLOTS,
    )
}

/// The slot of `hash` in a table of `slots` (a power of two).
#[inline(always)]
pub const fn index_of(hash: u64, slots: u32) -> u32 {
    (hash >> 32) as u32 & (slots - 1)
}

/// The page of per-address state of the address whose salt-0
/// [`addr_hash`] is `address_hash` (the hash of its TTL slot).
#[inline(always)]
pub const fn page_of(address_hash: u64) -> u32 {
    index_of(address_hash, STATE_PAGES)
}

/// The index, in a table of `per_page` entries per page, of the entry of
/// `hash` in `page`. The bits that choose it are above those of
/// [`index_of`], so that for the address's own hash (TTL slots) the page
/// and the place in it are independent.
#[inline(always)]
pub const fn paged_index(page: u32, hash: u64, per_page: u32) -> u32 {
    page * per_page + ((hash >> 48) as u32 & (per_page - 1))
}

/// The fingerprint stored with a key: never 0, which marks an empty slot.
#[inline(always)]
pub const fn fingerprint_of(hash: u64) -> u32 {
    hash as u32 | 1
}

/// A TTL slot: fingerprint in the low 32 bits, hop count above; 0 is empty.
#[inline(always)]
pub const fn ttl_entry(fingerprint: u32, hops: u8) -> u64 {
    fingerprint as u64 | (hops as u64) << 32
}

/// The baseline in `slot` for the source of `fingerprint`: the hop count
/// it learned, or `None` (then a teaching packet stores `hops`, replacing
/// whichever source held the slot).
#[inline(always)]
pub fn ttl_step(slot: &mut u64, fingerprint: u32, hops: u8, teach: bool) -> Option<u8> {
    let entry = *slot;
    if entry as u32 == fingerprint {
        return Some((entry >> 32) as u8);
    }
    if teach {
        *slot = ttl_entry(fingerprint, hops);
    }
    None
}

/// Which way of `bucket` holds the window of (`slot`, `fingerprint`) at
/// `now_ns`: its own, else a free one (never used, or its window over),
/// else the one with the smaller count (the first on a tie). The chosen way
/// is reset for the key when it was not its own.
///
/// Not inlined: in the kernel a subprogram returning a plain number, so the
/// verifier checks its many branches once per call, and only the two
/// outcomes (way 0 or 1), not every path to them, reach the rule walk.
#[inline(never)]
pub fn syn_way(bucket: &mut SynBucket, slot: u32, fingerprint: u32, now_ns: u64) -> usize {
    let owns = |w: usize| bucket.ways[w].fingerprint == fingerprint && bucket.ways[w].slot == slot;
    if owns(0) {
        return 0;
    }
    if owns(1) {
        return 1;
    }
    let free = |w: usize| {
        let way = &bucket.ways[w];
        way.fingerprint == 0
            || way.window.count == 0
            || now_ns.wrapping_sub(way.window.start_ns) >= way.window_ns
    };
    let way = if free(0) {
        0
    } else if free(1) || bucket.ways[1].window.count < bucket.ways[0].window.count {
        1
    } else {
        0
    };
    let taken = &mut bucket.ways[way];
    taken.fingerprint = fingerprint;
    taken.slot = slot;
    taken.window = SynWindow::default();
    way
}

/// The map bit of a value (a port, or a hashed address) for rule `salt`.
#[inline(always)]
pub fn scan_bit(seed: u32, salt: u32, value: u64) -> u32 {
    let h = round(((seed as u64) << 32) | ((salt as u64) << 1) | 1, value);
    (round(h, MIX).wrapping_mul(MIX) >> 32) as u32 & (SCAN_MAP_BITS - 1)
}

/// Which way of `bucket` holds the `scan` window of (`slot`,
/// `fingerprint`) at `now_ns`: its own, else a free one (never used, or its
/// window over), else the one with fewer packets (the first on a tie). A
/// way that was not the key's own, or whose window has ended, is reset and
/// opened for the key at `now_ns`.
///
/// Not inlined: in the kernel a subprogram returning a plain number (see
/// [`syn_way`]); BPF subprograms take at most five arguments, hence two
/// steps ([`scan_mark`] next).
#[inline(never)]
pub fn scan_way(bucket: &mut ScanBucket, slot: u32, fingerprint: u32, now_ns: u64) -> usize {
    // Global slots fit 16 bits (crate::tables).
    let slot = slot as u16;
    let owns = |w: &ScanWindow| w.fingerprint == fingerprint && w.slot == slot;
    let free = |w: &ScanWindow| {
        w.fingerprint == 0 || w.count == 0 || now_ns.wrapping_sub(w.start_ns) >= w.window_ns
    };
    let way = if owns(&bucket.ways[0]) {
        0
    } else if owns(&bucket.ways[1]) {
        1
    } else if free(&bucket.ways[0]) {
        0
    } else if free(&bucket.ways[1]) || bucket.ways[1].count < bucket.ways[0].count {
        1
    } else {
        0
    };
    let w = &mut bucket.ways[way];
    if !owns(w) || free(w) {
        // Field by field, the map left as it is (see `words_used`): a new
        // window costs a few stores, not the map's 128 bytes.
        w.start_ns = now_ns;
        w.window_ns = 0;
        w.count = 0;
        w.bits = 0;
        w.alerted = 0;
        w.fingerprint = fingerprint;
        w.slot = slot;
        w.words_used = 0;
    }
    way
}

/// Counts one packet in `bucket`'s `scan` window `way` (chosen by
/// [`scan_way`]), setting `bit` of its map. Returns the set bits, plus
/// `1 << 16` when this packet made them reach `threshold` first in the
/// window.
#[inline(never)]
pub fn scan_mark(
    bucket: &mut ScanBucket,
    way: usize,
    window_ns: u64,
    bit: u32,
    threshold: u32,
) -> u32 {
    let (w, map) = (&mut bucket.ways[way & 1], &mut bucket.maps[way & 1]);
    w.window_ns = window_ns;
    w.count = w.count.saturating_add(1);
    let word = ((bit >> 6) as usize) & (SCAN_MAP_WORDS - 1);
    let mask = 1u64 << (bit & 63);
    // A word not used yet in this window holds an older window's bits.
    let used = 1u16 << word;
    if w.words_used & used == 0 {
        map[word] = 0;
        w.words_used |= used;
    }
    if map[word] & mask == 0 {
        map[word] |= mask;
        w.bits += 1;
    }
    let mut out = w.bits as u32;
    if out >= threshold && w.alerted == 0 {
        w.alerted = 1;
        out |= 1 << 16;
    }
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::tables::SynSlot;
    use std::vec;

    fn v4(last: u8) -> [u8; 16] {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&[192, 0, 2, last]);
        a
    }

    #[test]
    fn the_hash_depends_on_every_input() {
        let base = addr_hash(0, 0, 4, &v4(1));
        assert_ne!(base, addr_hash(1, 0, 4, &v4(1)));
        assert_ne!(base, addr_hash(0, 1, 4, &v4(1)));
        assert_ne!(base, addr_hash(0, 0, 6, &v4(1)));
        assert_ne!(base, addr_hash(0, 0, 4, &v4(2)));
        let mut high = v4(1);
        high[15] = 1;
        assert_ne!(base, addr_hash(0, 0, 4, &high));
    }

    #[test]
    fn addresses_spread_over_the_slots() {
        // 65,536 sequential addresses into 65,536 slots: a uniform hash
        // leaves about 1/e of them empty.
        let mut used = vec![false; TTL_SLOTS as usize];
        for i in 0..65_536u32 {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&(0xc612_0000u32 + i).to_be_bytes());
            used[index_of(addr_hash(7, 0, 4, &a), TTL_SLOTS) as usize] = true;
        }
        let empty = used.iter().filter(|u| !**u).count();
        assert!((22_000..26_000).contains(&empty), "{empty} empty slots");
    }

    #[test]
    fn an_addresss_ttl_slot_and_windows_share_one_page() {
        for last in 0..=255 {
            let h = addr_hash(7, 0, 4, &v4(last));
            let page = page_of(h);
            assert_eq!(paged_index(page, h, TTL_PER_PAGE) / TTL_PER_PAGE, page);
            for slot in [0, 1, 63, 1_023, 2_047] {
                let r = rule_hash(h, slot);
                assert_eq!(paged_index(page, r, SYN_PER_PAGE) / SYN_PER_PAGE, page);
                assert_eq!(paged_index(page, r, SCAN_PER_PAGE) / SCAN_PER_PAGE, page);
            }
        }
        // The last page's last entries are the tables' last.
        let last = STATE_PAGES - 1;
        assert_eq!(paged_index(last, u64::MAX, TTL_PER_PAGE), TTL_SLOTS - 1);
        assert_eq!(paged_index(last, u64::MAX, SYN_PER_PAGE), SYN_BUCKETS - 1);
        assert_eq!(paged_index(last, u64::MAX, SCAN_PER_PAGE), SCAN_BUCKETS - 1);
    }

    #[test]
    fn rules_of_one_address_spread_over_its_page() {
        // 16 rule slots of one address over a page's 16 window buckets: a
        // uniform hash leaves about 16/e of them empty, never all but one.
        let h = addr_hash(7, 0, 4, &v4(1));
        let page = page_of(h);
        let mut used = [false; SYN_PER_PAGE as usize];
        for slot in 0..16 {
            used[(paged_index(page, rule_hash(h, slot), SYN_PER_PAGE) % SYN_PER_PAGE) as usize] =
                true;
        }
        assert!(used.iter().filter(|u| **u).count() >= 6, "{used:?}");
        // And the pages of many addresses over the table.
        let mut pages = vec![0u32; STATE_PAGES as usize];
        for i in 0..65_536u32 {
            let mut a = [0; 16];
            a[..4].copy_from_slice(&(0xc612_0000u32 + i).to_be_bytes());
            pages[page_of(addr_hash(7, 0, 4, &a)) as usize] += 1;
        }
        let (lo, hi) = (pages.iter().min().unwrap(), pages.iter().max().unwrap());
        assert!(*lo >= 8 && *hi <= 64, "32 per page on average: {lo}..{hi}");
    }

    #[test]
    fn a_ttl_slot_keeps_its_source_until_another_teaches() {
        let mut slot = 0;
        assert_eq!(ttl_step(&mut slot, 11, 3, false), None);
        assert_eq!(slot, 0, "a packet that does not teach stores nothing");
        assert_eq!(ttl_step(&mut slot, 11, 3, true), None);
        assert_eq!(ttl_step(&mut slot, 11, 9, true), Some(3));
        assert_eq!(ttl_step(&mut slot, 13, 5, false), None);
        assert_eq!(ttl_step(&mut slot, 11, 9, false), Some(3));
        assert_eq!(ttl_step(&mut slot, 13, 5, true), None);
        assert_eq!(ttl_step(&mut slot, 11, 9, false), None, "taken over");
        assert_eq!(ttl_step(&mut slot, 13, 0, false), Some(5));
    }

    fn way(fingerprint: u32, slot: u32, start_ns: u64, count: u32) -> SynSlot {
        SynSlot {
            window: SynWindow {
                start_ns,
                count,
                alerted: 0,
                bytes: 0,
                normal: 0,
                taught: 0,
            },
            window_ns: 1_000,
            fingerprint,
            slot,
        }
    }

    #[test]
    fn a_key_finds_its_own_way_then_a_free_one() {
        let mut b = SynBucket {
            ways: [way(5, 1, 100, 7), SynSlot::default()],
        };
        assert_eq!(syn_way(&mut b, 1, 5, 200), 0);
        assert_eq!(b.ways[0].window.count, 7, "its own window is kept");
        assert_eq!(syn_way(&mut b, 2, 5, 200), 1, "another rule: another key");
        assert_eq!((b.ways[1].slot, b.ways[1].window.count), (2, 0));
    }

    #[test]
    fn a_live_heavy_window_is_kept_and_an_ended_one_is_free() {
        let mut b = SynBucket {
            ways: [way(5, 1, 100, 900), way(7, 1, 100, 1)],
        };
        assert_eq!(syn_way(&mut b, 1, 9, 500), 1, "the lighter way goes");
        assert_eq!(b.ways[0].window.count, 900);
        b.ways[1] = way(7, 1, 100, 2);
        // At 1,100 the first window (started at 100, 1,000 long) is over.
        assert_eq!(syn_way(&mut b, 1, 9, 1_100), 0);
        assert_eq!(b.ways[1].window.count, 2);
    }

    /// The tracked-source filter never says "surely not" for a source
    /// tracked at the current tick (its stamp, or any later one written
    /// over it since, is this tick's or the one before), across the wrap
    /// of the stamp's byte and of the tick itself; stale stamps say so.
    #[test]
    fn the_tracked_filter_holds_every_recent_stamp_across_wraps() {
        use crate::tables::{
            RateKey, TRACK_SLOTS, track_stamp_may_hold, track_tick, tracked_recently,
        };
        for now in [0u32, 1, 2, 255, 256, 257, 511, u32::MAX - 1, u32::MAX] {
            for last in [now, now.wrapping_sub(1)] {
                assert!(tracked_recently(last, now), "tick {last} at {now}");
                assert!(
                    track_stamp_may_hold(last as u8, now),
                    "stamp {last} at {now}"
                );
            }
            for stale in [2u32, 3, 100, 254] {
                let last = now.wrapping_sub(stale);
                assert!(!tracked_recently(last, now), "tick {last} at {now}");
                assert!(
                    !track_stamp_may_hold(last as u8, now),
                    "stamp {last} at {now}"
                );
            }
            // A tick in the future (never, with a clock that does not go
            // back) is no tracked one.
            assert!(!tracked_recently(now.wrapping_add(1), now));
        }
        assert_eq!(track_tick((5 << 30) + (1 << 30) - 1), 5);
        assert_eq!(track_tick(6 << 30), 6);
        // The slot depends on the rule and the source, within the filter.
        let key = |sig_id, last| RateKey {
            sig_id,
            addr: crate::packet::AddrKey::new(
                4,
                [192, 0, 2, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        };
        let slots: std::vec::Vec<u32> = (0..64)
            .flat_map(|i| {
                [
                    track_slot(7, &key(100 + i, 1)),
                    track_slot(7, &key(100, i as u8)),
                ]
            })
            .collect();
        assert!(slots.iter().all(|&slot| slot < TRACK_SLOTS));
        let distinct: std::collections::BTreeSet<_> = slots.iter().collect();
        assert!(
            distinct.len() > 120,
            "{} distinct slots of 128",
            distinct.len()
        );
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// Slot 3, 1,000 ns windows, threshold 3.
    fn scan_step(b: &mut ScanBucket, fingerprint: u32, now: u64, bit: u32) -> u32 {
        let way = scan_way(b, 3, fingerprint, now);
        scan_mark(b, way, 1_000, bit, 3)
    }

    #[test]
    fn a_scan_window_counts_distinct_bits_once_per_window() {
        let mut b = ScanBucket::default();
        let step = |b: &mut ScanBucket, now: u64, bit: u32| scan_step(b, 77, now, bit);
        assert_eq!(step(&mut b, 10, 5), 1);
        assert_eq!(step(&mut b, 11, 5), 1, "the same value again");
        assert_eq!(step(&mut b, 12, 6), 2);
        assert_eq!(
            step(&mut b, 13, 7),
            3 | 1 << 16,
            "the third distinct alerts"
        );
        assert_eq!(step(&mut b, 14, 8), 4, "once per window");
        assert_eq!(b.ways[0].count, 5);
        assert_eq!(step(&mut b, 1_010, 9), 1, "a new window");
        // Another key takes the free way, then a third the lighter one.
        assert_eq!(scan_step(&mut b, 99, 1_020, 1), 1);
        assert_eq!(b.ways[1].fingerprint, 99);
        step(&mut b, 1_021, 10);
        assert_eq!(scan_step(&mut b, 55, 1_030, 1), 1);
        assert_eq!(b.ways[1].fingerprint, 55, "the way with fewer packets goes");
        assert_eq!(b.ways[0].fingerprint, 77);
    }

    /// A new window leaves the old map in place and clears each word when
    /// it first uses it: no bit of the old window is ever counted again.
    #[test]
    fn a_new_window_counts_none_of_the_old_windows_bits() {
        let mut b = ScanBucket::default();
        // Bits in words 0, 1 and 15 for one source ...
        for (now, bit) in [(10, 3), (11, 70), (12, 1_000)] {
            scan_step(&mut b, 77, now, bit);
        }
        assert_eq!(b.ways[0].bits, 3);
        // ... then its next window, and another source taking the way over
        // once that one has ended: the same bits again count from zero.
        assert_eq!(scan_step(&mut b, 77, 1_010, 70), 1);
        assert_eq!(scan_step(&mut b, 77, 1_011, 3), 2);
        assert_eq!(scan_step(&mut b, 99, 2_020, 1_000), 1, "taken over");
        assert_eq!(scan_step(&mut b, 99, 2_021, 70), 2);
        assert_eq!(scan_step(&mut b, 99, 2_022, 3), 3 | 1 << 16);
        assert_eq!(b.ways[0].fingerprint, 99);
        assert_eq!(b.ways[0].words_used, 1 | 1 << 1 | 1 << 15);
    }
}
