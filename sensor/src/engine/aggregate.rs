//! Turns the kernel's rate-limited alert records into line `count`s.
//!
//! # How the kernel rate-limits
//!
//! Per (rule, source address) and per CPU, the kernel keeps a
//! [`RateState`]: a running `matched_total` of the packets the rule matched
//! from that source, and a window of [`RATE_WINDOW_NS`] in which it sends at
//! most [`RATE_BURST`] alert records (`sensor_common::detect::rate_step`).
//! Every record carries the running total at its packet in
//! [`AlertRecord::count`]. Matches past the burst are only counted.
//!
//! # How userspace accounts for every match
//!
//! For each (rule id, source, CPU) the [`Aggregator`] remembers the last
//! total it has reported and the last record it saw. Each packet that
//! matched is reported exactly once, by one of:
//!
//! - a record: its line's count is `total - last_reported` (1 inside a
//!   burst; more for the first record of a new window when the previous
//!   window's suppressed matches were not swept yet);
//! - a sweep ([`Aggregator::sweep`]): once a key's window has ended, the map
//!   total is final for that window, so `matched_total - last_reported`
//!   packets were suppressed; one aggregated line reports them, built from
//!   the last record of the key (its packet, its timestamp);
//! - [`Aggregator::flush_all`] at shutdown or at the end of a replay, which
//!   reports every remaining difference without waiting for windows to end.
//!
//! So the sum of the `count`s of all lines equals the number of packets the
//! rules matched, as long as no record was lost on its way (the kernel and
//! the perf reader count those) and no map entry holding unreported matches
//! was evicted before a sweep saw it.
//!
//! Special cases:
//! - `syn_flood` and `flood` records are not rate-limited: their `count` is already the
//!   window's packet count and is passed through.
//! - `count == 0`: the kernel could not update the rate map, so the record
//!   stands for its own packet only (count 1) and touches no state.
//! - A record whose total equals the last reported one was already covered
//!   by a sweep (it was still in flight when the sweep read the map): no
//!   line. A smaller total means the kernel's entry was evicted and created
//!   again, so the total counts from zero: the line's count is the total.
//!   (A record older than the sweep that covered its key is also treated as
//!   covered, which keeps late records from being counted twice.)
//! - Keys that vanished from the map (evicted, or rules reloaded) are
//!   reported up to the last total a sweep saw and then forgotten, so memory
//!   stays bounded by the map size.
//! - Map entries for which no record was ever seen (every record lost) give
//!   no line: there is no packet to describe.

use std::collections::{HashMap, HashSet};

use sensor_common::AlertRecord;
use sensor_common::alert::aggregate;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{RATE_WINDOW_NS, RateKey, RateState, kind};

/// One entry of the kernel's rate map (or of replay's memory state), as the
/// sweep needs it: the rule's id rather than its slot, and the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateEntry {
    pub sig_id: u32,
    pub src: AddrKey,
    pub cpu: u32,
    pub state: RateState,
}

/// A line the sweep produced: `record` describes the packet shown, `count`
/// the suppressed matches it stands for. `tag` is what the caller attached
/// to that record (its frame bytes; in replay also its packet number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatedLine<T = ()> {
    pub record: AlertRecord,
    pub count: u64,
    pub tag: T,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    sig_id: u32,
    src: AddrKey,
    cpu: u32,
}

impl Key {
    fn of_record(record: &AlertRecord) -> Key {
        // A storm record's total is its rule's, whatever its packet's source.
        let src = if record.aggregate == aggregate::RULE {
            RateKey::rule_wide(record.sig_id).addr
        } else {
            record.packet.src_key()
        };
        Key {
            sig_id: record.sig_id,
            src,
            cpu: record.cpu,
        }
    }
}

#[derive(Clone, Debug)]
struct Tracked<T> {
    last_reported: u64,
    last_record: AlertRecord,
    last_tag: T,
    /// `matched_total` in the latest sweep that saw the key.
    map_total: u64,
    /// `now_ns` of the sweep that last reported for the key.
    swept_at_ns: Option<u64>,
}

impl<T: Clone> Tracked<T> {
    fn line(&self, count: u64) -> AggregatedLine<T> {
        AggregatedLine {
            record: self.last_record,
            count,
            tag: self.last_tag.clone(),
        }
    }
}

/// Per (rule id, source, CPU) accounting; see the module docs.
#[derive(Debug)]
pub struct Aggregator<T = ()> {
    tracked: HashMap<Key, Tracked<T>>,
}

impl<T> Default for Aggregator<T> {
    fn default() -> Self {
        Aggregator {
            tracked: HashMap::new(),
        }
    }
}

/// Untagged accounting: what the tests below exercise (both engines tag
/// their records with the frame bytes they show).
#[cfg(test)]
impl Aggregator<()> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The `count` of the line for `record`, or `None` when it needs no line.
    pub fn on_record(&mut self, record: &AlertRecord) -> Option<u64> {
        self.on_tagged_record(record, ())
    }
}

impl<T: Clone> Aggregator<T> {
    /// [`Aggregator::on_record`], remembering `tag` with the record so that
    /// aggregated lines built from it carry it too.
    pub fn on_tagged_record(&mut self, record: &AlertRecord, tag: T) -> Option<u64> {
        if kind::is_window(record.kind) {
            return Some(record.count);
        }
        let total = record.count;
        if total == 0 {
            return Some(1);
        }
        let Some(tracked) = self.tracked.get_mut(&Key::of_record(record)) else {
            self.tracked.insert(
                Key::of_record(record),
                Tracked {
                    last_reported: total,
                    last_record: *record,
                    last_tag: tag,
                    map_total: 0,
                    swept_at_ns: None,
                },
            );
            return Some(total);
        };
        let count = if total > tracked.last_reported {
            total - tracked.last_reported
        } else if total == tracked.last_reported
            || tracked
                .swept_at_ns
                .is_some_and(|swept| record.timestamp_ns <= swept)
        {
            return None;
        } else {
            total
        };
        tracked.last_reported = total;
        tracked.last_record = *record;
        tracked.last_tag = tag;
        Some(count)
    }

    /// Reports the matches suppressed in windows that have ended, and
    /// forgets keys gone from the map. `entries` is the whole rate map.
    /// Lines come out ordered by the time of the record they show.
    pub fn sweep(
        &mut self,
        entries: impl IntoIterator<Item = RateEntry>,
        now_ns: u64,
    ) -> Vec<AggregatedLine<T>> {
        let mut lines = Vec::new();
        let mut present = HashSet::new();
        for entry in entries {
            let key = Key {
                sig_id: entry.sig_id,
                src: entry.src,
                cpu: entry.cpu,
            };
            present.insert(key);
            let Some(tracked) = self.tracked.get_mut(&key) else {
                continue;
            };
            let total = entry.state.matched_total;
            tracked.map_total = total;
            let window_ended = now_ns.saturating_sub(entry.state.window_start_ns) >= RATE_WINDOW_NS;
            if total > tracked.last_reported && window_ended {
                lines.push(tracked.line(total - tracked.last_reported));
                tracked.last_reported = total;
                tracked.swept_at_ns = Some(now_ns);
            }
        }
        self.tracked.retain(|key, tracked| {
            // A key seen in a record during the last window may be newer
            // than the map snapshot: keep it until the next sweep.
            if present.contains(key)
                || now_ns.saturating_sub(tracked.last_record.timestamp_ns) < RATE_WINDOW_NS
            {
                return true;
            }
            if tracked.map_total > tracked.last_reported {
                lines.push(tracked.line(tracked.map_total - tracked.last_reported));
            }
            false
        });
        sort_lines(&mut lines);
        lines
    }

    /// Reports every remaining difference, whether or not its window has
    /// ended, and forgets everything: for shutdown and the end of a replay.
    pub fn flush_all(
        &mut self,
        entries: impl IntoIterator<Item = RateEntry>,
    ) -> Vec<AggregatedLine<T>> {
        let mut lines = Vec::new();
        for entry in entries {
            let key = Key {
                sig_id: entry.sig_id,
                src: entry.src,
                cpu: entry.cpu,
            };
            if let Some(tracked) = self.tracked.get_mut(&key) {
                tracked.map_total = entry.state.matched_total;
            }
        }
        for tracked in self.tracked.values() {
            if tracked.map_total > tracked.last_reported {
                lines.push(tracked.line(tracked.map_total - tracked.last_reported));
            }
        }
        self.tracked.clear();
        sort_lines(&mut lines);
        lines
    }

    /// Keys currently remembered.
    pub fn tracked_keys(&self) -> usize {
        self.tracked.len()
    }
}

/// A stable order whatever the hash map's: by record time, then rule,
/// source and CPU.
fn sort_lines<T>(lines: &mut [AggregatedLine<T>]) {
    lines.sort_by_key(|line| {
        let record = &line.record;
        (
            record.timestamp_ns,
            record.sig_id,
            record.packet.src_key().addr,
            record.cpu,
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::detect::rate_step;
    use sensor_common::tables::RATE_BURST;

    const SIG: u32 = 720102;
    const SECOND: u64 = RATE_WINDOW_NS;

    fn source(last_octet: u8) -> AddrKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, last_octet]);
        AddrKey::new(4, addr)
    }

    /// A miniature kernel: one rate map, records as `process` would send them.
    #[derive(Default)]
    struct Kernel {
        rates: HashMap<(u32, AddrKey, u32), RateState>,
    }

    impl Kernel {
        fn matched(
            &mut self,
            sig_id: u32,
            src: AddrKey,
            cpu: u32,
            now_ns: u64,
        ) -> Option<AlertRecord> {
            let state = self.rates.entry((sig_id, src, cpu)).or_default();
            let total = rate_step(state, now_ns)?;
            let mut record = AlertRecord {
                timestamp_ns: now_ns,
                count: total,
                sig_id,
                cpu,
                kind: kind::TCP_FLAGS,
                ..AlertRecord::default()
            };
            record.packet.ip_version = src.version;
            record.packet.src_addr = src.addr;
            Some(record)
        }

        fn entries(&self) -> Vec<RateEntry> {
            self.rates
                .iter()
                .map(|(&(sig_id, src, cpu), &state)| RateEntry {
                    sig_id,
                    src,
                    cpu,
                    state,
                })
                .collect()
        }
    }

    #[test]
    fn a_burst_gives_one_line_per_packet() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        for i in 0..RATE_BURST as u64 {
            let record = kernel
                .matched(SIG, source(1), 0, i)
                .expect("inside the burst");
            assert_eq!(aggregator.on_record(&record), Some(1));
        }
        assert!(
            kernel.matched(SIG, source(1), 0, 10).is_none(),
            "burst spent"
        );
    }

    #[test]
    fn suppressed_matches_are_swept_once_the_window_ends() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        let mut last_record = None;
        for i in 0..100 {
            if let Some(record) = kernel.matched(SIG, source(1), 0, i * 1000) {
                assert_eq!(aggregator.on_record(&record), Some(1));
                last_record = Some(record);
            }
        }
        assert!(
            aggregator.sweep(kernel.entries(), SECOND - 1).is_empty(),
            "window still open"
        );
        let lines = aggregator.sweep(kernel.entries(), SECOND);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].count, 100 - RATE_BURST as u64);
        assert_eq!(
            Some(lines[0].record),
            last_record,
            "built from the last record"
        );
        assert!(
            aggregator.sweep(kernel.entries(), 2 * SECOND).is_empty(),
            "reported once"
        );
    }

    #[test]
    fn without_a_sweep_the_next_window_carries_the_suppressed_matches() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        let mut counts = Vec::new();
        for now in [0, 1, 2, 3, 4, 5, 6, 7, SECOND + 10] {
            if let Some(record) = kernel.matched(SIG, source(1), 0, now) {
                counts.push(aggregator.on_record(&record).unwrap());
            }
        }
        assert_eq!(counts, vec![1, 1, 1, 1, 1, 4]);
    }

    #[test]
    fn a_record_covered_by_a_sweep_gives_no_line() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        let first = kernel.matched(SIG, source(1), 0, 0).unwrap();
        assert_eq!(aggregator.on_record(&first), Some(1));
        // The second record is still in the perf buffer when the sweep runs.
        let late = kernel.matched(SIG, source(1), 0, 1).unwrap();
        let lines = aggregator.sweep(kernel.entries(), SECOND + 1);
        assert_eq!(lines.iter().map(|l| l.count).sum::<u64>(), 1);
        assert_eq!(aggregator.on_record(&late), None);
    }

    #[test]
    fn an_evicted_and_recreated_entry_counts_from_zero() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        for now in 0..3 {
            let record = kernel.matched(SIG, source(1), 0, now).unwrap();
            aggregator.on_record(&record);
        }
        kernel.rates.clear(); // LRU eviction
        let record = kernel.matched(SIG, source(1), 0, 10).unwrap();
        assert_eq!(record.count, 1);
        assert_eq!(aggregator.on_record(&record), Some(1));
        let record = kernel.matched(SIG, source(1), 0, 11).unwrap();
        assert_eq!(aggregator.on_record(&record), Some(1));
    }

    #[test]
    fn keys_gone_from_the_map_are_reported_and_forgotten() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        for now in 0..8 {
            if let Some(record) = kernel.matched(SIG, source(1), 0, now) {
                aggregator.on_record(&record);
            }
        }
        // A sweep inside the window learns the total (8) but reports nothing.
        assert!(aggregator.sweep(kernel.entries(), 100).is_empty());
        kernel.rates.clear();
        let lines = aggregator.sweep(kernel.entries(), 2 * SECOND);
        assert_eq!(lines.iter().map(|l| l.count).collect::<Vec<_>>(), vec![3]);
        assert_eq!(aggregator.tracked_keys(), 0);
    }

    #[test]
    fn recent_keys_missing_from_a_snapshot_are_kept() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        let record = kernel.matched(SIG, source(1), 0, 5 * SECOND).unwrap();
        aggregator.on_record(&record);
        assert!(aggregator.sweep(Vec::new(), 5 * SECOND + 10).is_empty());
        assert_eq!(aggregator.tracked_keys(), 1);
    }

    #[test]
    fn syn_flood_counts_and_unlimited_records_pass_through() {
        let mut aggregator = Aggregator::new();
        let mut record = AlertRecord {
            count: 250,
            sig_id: 1,
            kind: kind::SYN_FLOOD,
            ..AlertRecord::default()
        };
        assert_eq!(aggregator.on_record(&record), Some(250));
        assert_eq!(aggregator.on_record(&record), Some(250));
        record.kind = kind::HEADER;
        record.count = 0;
        assert_eq!(aggregator.on_record(&record), Some(1));
        assert_eq!(aggregator.tracked_keys(), 0);
    }

    #[test]
    fn flush_all_reports_open_windows() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        for now in 0..20 {
            if let Some(record) = kernel.matched(SIG, source(1), 0, now) {
                aggregator.on_record(&record);
            }
        }
        let lines = aggregator.flush_all(kernel.entries());
        assert_eq!(lines.iter().map(|l| l.count).collect::<Vec<_>>(), vec![15]);
        assert_eq!(aggregator.tracked_keys(), 0);
    }

    #[test]
    fn tags_follow_the_record_a_line_is_built_from() {
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::<u64>::default();
        for packet_number in 1..=9u64 {
            if let Some(record) = kernel.matched(SIG, source(1), 0, packet_number) {
                aggregator.on_tagged_record(&record, packet_number);
            }
        }
        let lines = aggregator.flush_all(kernel.entries());
        assert_eq!((lines[0].count, lines[0].tag), (4, 5));
    }

    /// Sum of line counts == matches, over 10,000 matches from several
    /// sources, rules and CPUs at irregular times, with periodic sweeps, LRU
    /// evictions of swept entries, and a final flush.
    #[test]
    fn line_counts_add_up_to_the_matches() {
        const MATCHES: u64 = 10_000;
        let mut kernel = Kernel::default();
        let mut aggregator = Aggregator::new();
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut now, mut last_sweep) = (0u64, 0u64);
        let mut lines_total = 0u64;
        let mut lines = 0u64;
        for _ in 0..MATCHES {
            now += next() % 2_000_000; // 0..2 ms between matches
            if now - last_sweep >= SECOND / 4 {
                let swept = aggregator.sweep(kernel.entries(), now);
                lines += swept.len() as u64;
                lines_total += swept.iter().map(|l| l.count).sum::<u64>();
                last_sweep = now;
                // The LRU drops entries idle for long; a sweep has reported them.
                kernel
                    .rates
                    .retain(|_, state| now - state.window_start_ns < 2 * SECOND);
            }
            let src = source((next() % 7) as u8);
            let cpu = (next() % 3) as u32;
            let sig_id = SIG + (next() % 2) as u32;
            if let Some(record) = kernel.matched(sig_id, src, cpu, now)
                && let Some(count) = aggregator.on_record(&record)
            {
                lines += 1;
                lines_total += count;
            }
        }
        lines_total += aggregator
            .flush_all(kernel.entries())
            .iter()
            .map(|l| l.count)
            .sum::<u64>();
        assert_eq!(lines_total, MATCHES);
        assert!(
            lines < MATCHES / 2,
            "rate limiting aggregated nothing: {lines} lines"
        );
    }
}
