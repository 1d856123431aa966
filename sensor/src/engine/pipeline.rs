//! The pipeline both `sensor run` and `sensor replay` drive: an alert
//! record and what its source attached to it (a [`LineTag`]) go through the
//! [`Aggregator`], become [`Alert`] lines stamped by the source's
//! [`RecordClock`], and go to a [`LineSink`]. Sweeps of the rate map (the
//! kernel's, or replay's memory state) turn suppressed matches into lines
//! the same way. Everything about how a record becomes a line is here once.

use std::collections::HashMap;
use std::convert::Infallible;

use sensor_common::AlertRecord;

use crate::alert::{Alert, CapturedPacket, unix_ns_to_datetime};
use crate::engine::aggregate::{AggregatedLine, Aggregator, RateEntry};
use crate::engine::clock::Clock;
use crate::rules::{CompiledRules, RuleMeta};

/// Wall-clock time, in nanoseconds since the epoch, of a record's
/// `timestamp_ns`.
pub trait RecordClock {
    fn unix_ns(&self, record_ns: u64) -> u64;
}

/// Live records carry kernel monotonic time.
impl RecordClock for Clock {
    fn unix_ns(&self, record_ns: u64) -> u64 {
        self.to_unix_ns(record_ns)
    }
}

/// Replayed records carry the capture's time, already wall-clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureTime;

impl RecordClock for CaptureTime {
    fn unix_ns(&self, record_ns: u64) -> u64 {
        record_ns
    }
}

/// What a record's source attaches to it for its line: the frame bytes it
/// shows, and anything else the source adds to the line.
pub trait LineTag: Clone {
    fn packet(&self) -> &CapturedPacket;

    /// Adds the source's own fields to a finished line.
    fn annotate(&self, alert: Alert) -> Alert {
        alert
    }
}

/// Live records: the received frame's first bytes.
impl LineTag for CapturedPacket {
    fn packet(&self) -> &CapturedPacket {
        self
    }
}

/// Where finished lines go. Live sinks never fail here (they queue and
/// count their own losses); replay's output can.
pub trait LineSink {
    type Error;

    fn deliver(&mut self, alert: &Alert) -> Result<(), Self::Error>;
}

/// A line could not be made or delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum LineError<E> {
    /// The record names a rule id no loaded rule set had (counted).
    UnknownRule(u32),
    Sink(E),
}

impl LineError<Infallible> {
    /// Live sinks cannot fail: the only error left is an unknown rule.
    pub fn unknown_rule(self) -> u32 {
        match self {
            LineError::UnknownRule(sig_id) => sig_id,
            LineError::Sink(never) => match never {},
        }
    }
}

/// The watched interfaces' names by index: a live line's `in_iface` is
/// the name of the interface its record's `ifindex` says the packet
/// arrived on.
#[derive(Clone, Debug, Default)]
pub struct InterfaceNames {
    by_index: HashMap<u32, String>,
    /// With one interface watched, every line names it, whatever the index.
    only: Option<String>,
}

impl InterfaceNames {
    /// The interfaces `sensor run` was given (their indexes come with
    /// [`InterfaceNames::learn`]).
    pub fn new(names: &[String]) -> InterfaceNames {
        InterfaceNames {
            by_index: HashMap::new(),
            only: match names {
                [only] => Some(only.clone()),
                _ => None,
            },
        }
    }

    /// `name` has index `ifindex` (now or from an earlier life: an index
    /// is kept, so records still on their way after the interface went
    /// keep its name).
    pub fn learn(&mut self, ifindex: u32, name: &str) {
        if self
            .by_index
            .get(&ifindex)
            .is_none_or(|known| known != name)
        {
            self.by_index.insert(ifindex, name.to_owned());
        }
    }

    /// The name for a record's `ifindex`. An index never learnt cannot come
    /// from a watched interface; it is shown as `ifindex:N` (a name no
    /// interface can have) rather than dropped.
    pub fn name(&self, ifindex: u32) -> String {
        if let Some(only) = &self.only {
            return only.clone();
        }
        match self.by_index.get(&ifindex) {
            Some(name) => name.clone(),
            None => format!("ifindex:{ifindex}"),
        }
    }
}

/// Records → aggregation → lines, with the counts both commands report.
pub struct Pipeline<C, T> {
    clock: C,
    /// Names for `in_iface` (live only).
    interfaces: Option<InterfaceNames>,
    community_id_seed: u16,
    aggregator: Aggregator<T>,
    /// Every rule ever loaded, by id: records still in flight after a
    /// reload keep their rule's name.
    rules_by_id: HashMap<u32, RuleMeta>,
    /// Lines made, by rule id.
    lines_by_rule: HashMap<u32, u64>,
    lines: u64,
    /// Sum of the lines' counts.
    matches: u64,
    /// Records whose rule id is unknown (should never happen).
    unknown_rule: u64,
}

impl<C: RecordClock, T: LineTag> Pipeline<C, T> {
    pub fn new(clock: C, interfaces: Option<InterfaceNames>, community_id_seed: u16) -> Self {
        Pipeline {
            clock,
            interfaces,
            community_id_seed,
            aggregator: Aggregator::default(),
            rules_by_id: HashMap::new(),
            lines_by_rule: HashMap::new(),
            lines: 0,
            matches: 0,
            unknown_rule: 0,
        }
    }

    /// Remembers the rules' names and severities for their lines.
    pub fn learn_rules(&mut self, rules: &CompiledRules) {
        for meta in &rules.meta {
            self.rules_by_id.insert(meta.id, meta.clone());
        }
    }

    /// `name` has index `ifindex` (live only; see [`InterfaceNames::learn`]).
    pub fn learn_iface(&mut self, ifindex: u32, name: &str) {
        if let Some(interfaces) = &mut self.interfaces {
            interfaces.learn(ifindex, name);
        }
    }

    pub fn rule(&self, sig_id: u32) -> Option<&RuleMeta> {
        self.rules_by_id.get(&sig_id)
    }

    /// One record from the source: a line now, or accounted for a later
    /// sweep (rate-limited).
    pub fn on_record<S: LineSink>(
        &mut self,
        record: &AlertRecord,
        tag: T,
        sink: &mut S,
    ) -> Result<(), LineError<S::Error>> {
        match self.aggregator.on_tagged_record(record, tag.clone()) {
            Some(count) => self.write(record, &tag, count, sink),
            None => Ok(()),
        }
    }

    /// Lines for matches suppressed in windows that ended by `now_ns`;
    /// `entries` is the whole rate map.
    pub fn sweep<S: LineSink>(
        &mut self,
        entries: impl IntoIterator<Item = RateEntry>,
        now_ns: u64,
        sink: &mut S,
    ) -> Result<(), LineError<S::Error>> {
        let lines = self.aggregator.sweep(entries, now_ns);
        self.write_all(lines, sink)
    }

    /// Lines for every match not reported yet: shutdown, end of a capture.
    pub fn flush_all<S: LineSink>(
        &mut self,
        entries: impl IntoIterator<Item = RateEntry>,
        sink: &mut S,
    ) -> Result<(), LineError<S::Error>> {
        let lines = self.aggregator.flush_all(entries);
        self.write_all(lines, sink)
    }

    fn write_all<S: LineSink>(
        &mut self,
        lines: Vec<AggregatedLine<T>>,
        sink: &mut S,
    ) -> Result<(), LineError<S::Error>> {
        // An unknown rule does not hide the other lines (it is counted and
        // returned at the end); a failing sink stops the batch.
        let mut unknown = None;
        for line in lines {
            match self.write(&line.record, &line.tag, line.count, sink) {
                Ok(()) => {}
                Err(LineError::UnknownRule(sig_id)) => {
                    unknown.get_or_insert(sig_id);
                }
                Err(err @ LineError::Sink(_)) => return Err(err),
            }
        }
        unknown.map_or(Ok(()), |sig_id| Err(LineError::UnknownRule(sig_id)))
    }

    fn write<S: LineSink>(
        &mut self,
        record: &AlertRecord,
        tag: &T,
        count: u64,
        sink: &mut S,
    ) -> Result<(), LineError<S::Error>> {
        let Some(rule) = self.rules_by_id.get(&record.sig_id) else {
            self.unknown_rule += 1;
            return Err(LineError::UnknownRule(record.sig_id));
        };
        let timestamp = unix_ns_to_datetime(self.clock.unix_ns(record.timestamp_ns));
        let mut alert = Alert::new(
            record,
            tag.packet(),
            rule,
            count,
            timestamp,
            self.community_id_seed,
        );
        if let Some(interfaces) = &self.interfaces {
            alert = alert.with_iface(interfaces.name(record.ifindex));
        }
        let alert = tag.annotate(alert);
        sink.deliver(&alert).map_err(LineError::Sink)?;
        self.lines += 1;
        self.matches += count;
        *self.lines_by_rule.entry(record.sig_id).or_default() += 1;
        Ok(())
    }

    /// Lines made so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Sum of the lines' counts: the matches they stand for.
    pub fn matches(&self) -> u64 {
        self.matches
    }

    pub fn lines_of_rule(&self, sig_id: u32) -> u64 {
        self.lines_by_rule.get(&sig_id).copied().unwrap_or(0)
    }

    pub fn unknown_rule(&self) -> u64 {
        self.unknown_rule
    }
}

#[cfg(test)]
mod tests {
    use super::InterfaceNames;

    #[test]
    fn lines_name_the_interface_of_their_index() {
        let mut names = InterfaceNames::new(&["eth1".into(), "eth2".into()]);
        names.learn(7, "eth1");
        names.learn(9, "eth2");
        assert_eq!(names.name(7), "eth1");
        assert_eq!(names.name(9), "eth2");
        // eth2 came back with a new index: both of its indexes name it.
        names.learn(12, "eth2");
        assert_eq!(
            (names.name(9), names.name(12)),
            ("eth2".into(), "eth2".into())
        );
        assert_eq!(names.name(3), "ifindex:3", "never learnt");

        // One interface: every line names it (replayed records carry 0).
        let one = InterfaceNames::new(&["eq0".into()]);
        assert_eq!((one.name(0), one.name(5)), ("eq0".into(), "eq0".into()));
    }
}
