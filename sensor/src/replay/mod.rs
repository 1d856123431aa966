//! `sensor replay`: runs a pcap or pcapng capture through the same parser
//! and rule evaluation as the kernel program (`sensor_common::parse`,
//! `sensor_common::detect::process`), with the capture's timestamps as the
//! clock, and turns the records into alert lines the way the live sensor
//! does (rate limiting and [`Aggregator`] accounting included).
//!
//! - Formats: pcap (micro- and nanosecond, either byte order) and pcapng
//!   (enhanced, simple and obsolete packet blocks; per-interface link types
//!   and `if_tsresol` / `if_tsoffset`). Link types: see
//!   [`SUPPORTED_LINK_TYPES`].
//! - Clock: each packet's capture time in nanoseconds since the epoch is the
//!   kernel's `now`; the aggregator is swept whenever capture time has moved
//!   on by [`RATE_WINDOW_NS`] since the last sweep (as the live engine does
//!   on its timer) and flushed at the end, so line counts add up to matches.
//!   Simple packet blocks have no timestamp and take the previous packet's.
//! - Lines have no `iface`, their `timestamp` is the capture's, and they
//!   carry `pcap_cnt`, the 1-based packet number (non-IP frames count).
//! - Frames cut by the capture's snap length: the parser sees the length on
//!   the wire (so IP length checks judge the packet, not the capture), but
//!   only the captured bytes, so fields whose bytes were not captured are
//!   absent and cannot match. [`ReplayStats::snapped`] counts such frames.
//! - Errors: a missing file, a file that is not a capture, or an unsupported
//!   link type fail before any line is written. A truncated or corrupt
//!   record half-way: every alert of the packets before it is still written
//!   (aggregated remainders included), then [`ReplayError::Corrupt`] names
//!   the byte offset and how many packets were read; the CLI exits 1.

mod capture;
pub mod state;

use self::capture::*;

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

use sensor_common::AlertRecord;
use sensor_common::alert::DEFAULT_ALERT_PACKET_BYTES;
use sensor_common::detect::{AlertHead, process};
use sensor_common::packet::IP_VERSION_NONE;
use sensor_common::tables::RATE_WINDOW_NS;

use crate::alert::{Alert, CapturedPacket};
use crate::engine::aggregate::RateEntry;
use crate::engine::pipeline::{CaptureTime, LineError, LineSink, LineTag, Pipeline};
use crate::replay::state::MemoryState;
use crate::rules::{CompiledRules, MemoryTables};

/// What `replay` reads, for messages.
pub const SUPPORTED_LINK_TYPES: &str = "Ethernet (1), raw IP (101, and 12 / 14 as written by some systems), \
     raw IPv4 (228), raw IPv6 (229), Linux cooked SLL (113), Linux cooked SLL2 (276)";

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const PCAP_HEADER_LEN: u64 = 24;
const PCAP_RECORD_HEADER_LEN: u64 = 16;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const SLL_HEADER_LEN: usize = 16;
const SLL_PROTOCOL_OFFSET: usize = 14;
const SLL2_HEADER_LEN: usize = 20;
/// Replay is one "CPU": one set of per-source state.
const REPLAY_CPU: u32 = 0;

/// Counts for one replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Packets read (every link-layer frame).
    pub packets: u64,
    /// Frames without a readable IP header.
    pub not_ip: u64,
    /// Frames captured shorter than they were on the wire.
    pub snapped: u64,
    /// Alert lines written.
    pub alerts: u64,
    /// Sum of the lines' `count`s.
    pub alert_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("{} is not a pcap or pcapng capture: {reason}", path.display())]
    NotACapture { path: PathBuf, reason: String },
    #[error(
        "{}: link type {linktype} ({name}) is not supported; supported link types: {SUPPORTED_LINK_TYPES}",
        path.display()
    )]
    UnsupportedLinkType {
        path: PathBuf,
        linktype: u32,
        name: String,
    },
    #[error(
        "{}: truncated or corrupt record at byte offset {offset}, after {packets_read} good packets: {reason}",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        /// Packets read (and evaluated) before the bad record.
        packets_read: u64,
        /// Where the bad record starts in the file.
        offset: u64,
        reason: String,
    },
    #[error("{}: read error at byte offset {offset}: {source}", path.display())]
    Read {
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },
    #[error("compiled rules have no metadata for signature id {0}")]
    UnknownRule(u32),
    #[error("cannot write alert: {0}")]
    Output(#[source] io::Error),
}

/// How to replay (the CLI's flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Captured bytes of each alerting frame shown in `packet` (0: none).
    pub packet_bytes: u16,
    /// Seed of the lines' `community_id`.
    pub community_id_seed: u16,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            packet_bytes: DEFAULT_ALERT_PACKET_BYTES,
            community_id_seed: 0,
        }
    }
}

/// Replays `pcap` against `rules` with the default options, handing each
/// alert line to `out` in order. See the module docs for time, partial
/// results and errors.
pub fn replay(
    pcap: &Path,
    rules: &CompiledRules,
    out: &mut dyn FnMut(&Alert) -> io::Result<()>,
) -> Result<ReplayStats, ReplayError> {
    replay_with(pcap, rules, ReplayOptions::default(), out)
}

/// [`replay`] with `options`.
pub fn replay_with(
    pcap: &Path,
    rules: &CompiledRules,
    options: ReplayOptions,
    out: &mut dyn FnMut(&Alert) -> io::Result<()>,
) -> Result<ReplayStats, ReplayError> {
    let mut file = File::open(pcap).map_err(|source| ReplayError::Open {
        path: pcap.to_owned(),
        source,
    })?;
    let prefix = read_prefix(&mut file, 12).map_err(|source| ReplayError::Open {
        path: pcap.to_owned(),
        source,
    })?;
    let format = detect_format(&prefix).map_err(|reason| ReplayError::NotACapture {
        path: pcap.to_owned(),
        reason,
    })?;
    let input = Cursor::new(prefix.clone()).chain(file);

    let mut detector = Detector::new(rules, options, out);
    let mut capture = CaptureFile {
        path: pcap,
        packets_read: 0,
    };
    let read = match format {
        Format::Pcap => capture.read_pcap(input, &mut detector),
        Format::PcapNg => capture.read_pcapng(input, &prefix, &mut detector),
    };
    match read {
        Err(error @ ReplayError::Output(_)) => Err(error),
        // Report what the packets before a bad record matched, then fail.
        Err(error) => detector.finish().and(Err(error)),
        Ok(()) => detector.finish().map(|()| detector.stats),
    }
}

/// What replay attaches to a record: its packet number and captured bytes.
#[derive(Clone, Debug)]
struct NumberedPacket {
    pcap_cnt: u64,
    packet: CapturedPacket,
}

impl LineTag for NumberedPacket {
    fn packet(&self) -> &CapturedPacket {
        &self.packet
    }

    fn annotate(&self, alert: Alert) -> Alert {
        alert.with_pcap_cnt(self.pcap_cnt)
    }
}

/// The caller's output as the pipeline's sink.
struct Output<'o>(&'o mut dyn FnMut(&Alert) -> io::Result<()>);

impl LineSink for Output<'_> {
    type Error = io::Error;

    fn deliver(&mut self, alert: &Alert) -> io::Result<()> {
        (self.0)(alert)
    }
}

impl From<LineError<io::Error>> for ReplayError {
    fn from(err: LineError<io::Error>) -> Self {
        match err {
            LineError::UnknownRule(sig_id) => ReplayError::UnknownRule(sig_id),
            LineError::Sink(err) => ReplayError::Output(err),
        }
    }
}

/// Detection state for one replay, feeding the shared pipeline.
struct Detector<'r, 'o> {
    tables: MemoryTables<'r>,
    state: MemoryState,
    options: ReplayOptions,
    pipeline: Pipeline<CaptureTime, NumberedPacket>,
    last_sweep_ns: Option<u64>,
    records: Vec<AlertRecord>,
    stats: ReplayStats,
    out: Output<'o>,
}

impl<'r, 'o> Detector<'r, 'o> {
    fn new(
        rules: &'r CompiledRules,
        options: ReplayOptions,
        out: &'o mut dyn FnMut(&Alert) -> io::Result<()>,
    ) -> Self {
        let mut pipeline = Pipeline::new(CaptureTime, None, options.community_id_seed);
        pipeline.learn_rules(rules);
        Detector {
            tables: MemoryTables {
                rules,
                drop_mode: false,
            },
            state: MemoryState::new(),
            options,
            pipeline,
            last_sweep_ns: None,
            records: Vec::new(),
            stats: ReplayStats::default(),
            out: Output(out),
        }
    }

    fn on_frame(
        &mut self,
        pcap_cnt: u64,
        now_ns: u64,
        (link, linktype): (Link, u32),
        frame: &CapturedFrame,
    ) -> Result<(), ReplayError> {
        self.stats.packets += 1;
        if frame.bytes.len() < frame.wire_len {
            self.stats.snapped += 1;
        }
        self.sweep_if_due(now_ns)?;
        let meta = link.parse(frame);
        if meta.ip_version == IP_VERSION_NONE {
            self.stats.not_ip += 1;
            return Ok(());
        }
        let records = &mut self.records;
        records.clear();
        process(
            &meta,
            now_ns,
            &self.tables,
            &mut self.state,
            &mut |head: &AlertHead| {
                records.push(head.record(&meta, now_ns, REPLAY_CPU));
            },
        );
        if self.records.is_empty() {
            return Ok(());
        }
        // The first bytes as captured, as the kernel sends a received frame's.
        let shown = frame
            .bytes
            .len()
            .min(usize::from(self.options.packet_bytes));
        let tag = NumberedPacket {
            pcap_cnt,
            packet: CapturedPacket {
                linktype,
                bytes: frame.bytes[..shown].into(),
            },
        };
        for record in std::mem::take(&mut self.records) {
            self.pipeline
                .on_record(&record, tag.clone(), &mut self.out)?;
        }
        Ok(())
    }

    /// Sweeps as the live engine's timer would, on capture time.
    fn sweep_if_due(&mut self, now_ns: u64) -> Result<(), ReplayError> {
        let last = *self.last_sweep_ns.get_or_insert(now_ns);
        if now_ns.saturating_sub(last) < RATE_WINDOW_NS {
            return Ok(());
        }
        self.last_sweep_ns = Some(now_ns);
        let entries = self.rate_entries();
        Ok(self.pipeline.sweep(entries, now_ns, &mut self.out)?)
    }

    /// Reports what the aggregator still holds: the end of the capture.
    fn finish(&mut self) -> Result<(), ReplayError> {
        let entries = self.rate_entries();
        let flushed = self.pipeline.flush_all(entries, &mut self.out);
        self.stats.alerts = self.pipeline.lines();
        self.stats.alert_count = self.pipeline.matches();
        Ok(flushed?)
    }

    fn rate_entries(&self) -> Vec<RateEntry> {
        self.state
            .rate_states()
            .map(|(key, state)| RateEntry {
                sig_id: key.sig_id,
                src: key.addr,
                cpu: REPLAY_CPU,
                state: *state,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use pcap_file::pcapng::blocks::{
        ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, SECTION_HEADER_BLOCK,
    };

    use super::capture::*;
    use super::*;
    use crate::rules::{RuleMeta, Severity};
    use crate::testing::frames::{ETH_IPV4, ETH_IPV6, Ipv4, doc_v6, ethernet, ipv6, tcp};
    use sensor_common::packet::event;
    use sensor_common::tables::{
        ANY_BASE, EVENT_BASE, FLAGS_BASE, PROTO_BASE, RuleInfo, any, kind, proto_class,
    };
    use std::io::Write as _;

    const NULL_SCAN: u32 = 720102;
    const BAD_LENGTH: u32 = 720403;
    /// 2026-11-26T13:07:51Z
    const T0_NS: u64 = 1_795_698_471 * NANOS_PER_SECOND;
    const MS: u64 = 1_000_000;

    /// A NULL-scan rule and a bad_total_length rule, compiled by hand.
    fn rules() -> CompiledRules {
        let mut compiled = CompiledRules::default();
        let specs = [
            (
                NULL_SCAN,
                kind::TCP_FLAGS,
                "tcp_flags",
                vec![FLAGS_BASE, FLAGS_BASE + 0x100],
            ),
            (
                BAD_LENGTH,
                kind::HEADER,
                "header",
                vec![EVENT_BASE + u32::from(event::BAD_TOTAL_LENGTH)],
            ),
        ];
        for (slot, (sig_id, kind, category, rows)) in specs.into_iter().enumerate() {
            let unscoped =
                [any::SRC, any::DST, any::PORT, any::VLAN, any::ENABLED].map(|row| ANY_BASE + row);
            let protocols = (0..proto_class::COUNT).map(|class| PROTO_BASE + class);
            for row in unscoped.into_iter().chain(protocols).chain(rows) {
                compiled.masks[row as usize].insert(slot as u32);
            }
            compiled.rules.push(RuleInfo {
                sig_id,
                kind,
                ..RuleInfo::default()
            });
            compiled.meta.push(RuleMeta {
                id: sig_id,
                gid: 1,
                rev: 1,
                name: format!("rule {sig_id}"),
                severity: Severity::Medium,
                category,
                drop: false,
                origin: "test".to_owned(),
            });
        }
        crate::rules::compile::fill_event_sets(&mut compiled.masks);
        compiled
    }

    fn null_scan_ip(src: [u8; 4]) -> Vec<u8> {
        Ipv4::new(src, [192, 0, 2, 1], 6).build(&tcp(1234, 80, 0, 1, &[]))
    }

    fn null_scan_eth(src: [u8; 4]) -> Vec<u8> {
        ethernet(&[], ETH_IPV4, &null_scan_ip(src))
    }

    fn arp() -> Vec<u8> {
        ethernet(&[], 0x0806, &[0; 28])
    }

    /// A little-endian microsecond pcap; packets are (time, captured bytes, wire length).
    fn pcap(linktype: u32, packets: &[(u64, &[u8], u32)]) -> Vec<u8> {
        let mut file = 0xA1B2_C3D4u32.to_le_bytes().to_vec();
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&4u16.to_le_bytes());
        for word in [0u32, 0, 65_535, linktype] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        for (time_ns, bytes, wire_len) in packets {
            let fields = [
                (time_ns / NANOS_PER_SECOND) as u32,
                ((time_ns % NANOS_PER_SECOND) / 1_000) as u32,
                bytes.len() as u32,
                *wire_len,
            ];
            for word in fields {
                file.extend_from_slice(&word.to_le_bytes());
            }
            file.extend_from_slice(bytes);
        }
        file
    }

    fn whole(time_ns: u64, bytes: &[u8]) -> (u64, &[u8], u32) {
        (time_ns, bytes, bytes.len() as u32)
    }

    fn pcapng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut padded = body.to_vec();
        padded.resize(body.len().div_ceil(4) * 4, 0);
        let len = (12 + padded.len()) as u32;
        let mut block = Vec::new();
        block.extend_from_slice(&block_type.to_le_bytes());
        block.extend_from_slice(&len.to_le_bytes());
        block.extend_from_slice(&padded);
        block.extend_from_slice(&len.to_le_bytes());
        block
    }

    /// A little-endian pcapng with one interface; packets are (interface, timestamp units, bytes).
    fn pcapng(linktype: u16, tsresol: Option<u8>, packets: &[(u32, u64, &[u8])]) -> Vec<u8> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&PCAPNG_BYTE_ORDER_MAGIC.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut idb = Vec::new();
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65_535u32.to_le_bytes());
        if let Some(resolution) = tsresol {
            idb.extend_from_slice(&9u16.to_le_bytes());
            idb.extend_from_slice(&1u16.to_le_bytes());
            idb.extend_from_slice(&[resolution, 0, 0, 0]);
            idb.extend_from_slice(&[0, 0, 0, 0]);
        }
        let mut file = pcapng_block(SECTION_HEADER_BLOCK, &shb);
        file.extend(pcapng_block(INTERFACE_DESCRIPTION_BLOCK, &idb));
        for (interface, units, bytes) in packets {
            let mut epb = Vec::new();
            for word in [
                *interface,
                (units >> 32) as u32,
                *units as u32,
                bytes.len() as u32,
                bytes.len() as u32,
            ] {
                epb.extend_from_slice(&word.to_le_bytes());
            }
            epb.extend_from_slice(bytes);
            file.extend(pcapng_block(ENHANCED_PACKET_BLOCK, &epb));
        }
        file
    }

    fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        file
    }

    fn run(bytes: &[u8], rules: &CompiledRules) -> (Vec<Alert>, Result<ReplayStats, ReplayError>) {
        let file = write_temp(bytes);
        let mut alerts = Vec::new();
        let result = replay(file.path(), rules, &mut |alert| {
            alerts.push(alert.clone());
            Ok(())
        });
        (alerts, result)
    }

    fn summary(alerts: &[Alert]) -> Vec<(u32, Option<u64>, u64)> {
        alerts
            .iter()
            .map(|a| (a.alert.signature_id, a.pcap_cnt, a.count()))
            .collect()
    }

    #[test]
    fn alerts_carry_capture_time_and_packet_number_but_no_iface() {
        let packets = [
            arp(),
            null_scan_eth([10, 1, 0, 1]),
            null_scan_eth([10, 1, 0, 2]),
        ];
        let capture = pcap(
            1,
            &[
                whole(T0_NS, &packets[0]),
                whole(T0_NS + 123_456_000, &packets[1]),
                whole(T0_NS + 5 * MS, &packets[2]),
            ],
        );
        let (alerts, result) = run(&capture, &rules());
        let stats = result.unwrap();
        assert_eq!(
            summary(&alerts),
            vec![(NULL_SCAN, Some(2), 1), (NULL_SCAN, Some(3), 1)]
        );
        let line = alerts[0].to_json_line();
        assert!(line.starts_with(r#"{"timestamp":"2026-11-26T13:07:51.123456+0000","pcap_cnt":2,"event_type":"alert","src_ip":"10.1.0.1","src_port":1234,"#), "{line}");
        assert!(line.contains(r#""sensor":{"count":1,"#), "{line}");
        // `packet` is the captured frame (shorter than the default cap).
        assert_eq!(alerts[0].packet_bytes(), packets[1]);
        assert_eq!(alerts[0].packet_info.as_ref().map(|p| p.linktype), Some(1));
        assert_eq!(
            stats,
            ReplayStats {
                packets: 3,
                not_ip: 1,
                snapped: 0,
                alerts: 2,
                alert_count: 2,
            }
        );
    }

    #[test]
    fn every_supported_link_type_reaches_the_ip_header() {
        let v4 = null_scan_ip([10, 1, 0, 1]);
        let v6 = ipv6(doc_v6(1), doc_v6(2), 64, 6, &tcp(1, 2, 0, 0, &[]));
        let sll = |protocol: u16, ip: &[u8]| {
            let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
            frame.extend_from_slice(&protocol.to_be_bytes());
            frame.extend_from_slice(ip);
            frame
        };
        let sll2 = |protocol: u16, ip: &[u8]| {
            let mut frame = protocol.to_be_bytes().to_vec();
            frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            frame.extend_from_slice(ip);
            frame
        };
        let cases: [(u32, Vec<u8>, &str); 10] = [
            (
                1,
                ethernet(&[(0x8100, 100), (0x8100, 200)], ETH_IPV4, &v4),
                "10.1.0.1",
            ),
            (101, v4.clone(), "10.1.0.1"),
            (101, v6.clone(), "2001:db8::1"),
            (12, v4.clone(), "10.1.0.1"),
            (14, v6.clone(), "2001:db8::1"),
            (228, v4.clone(), "10.1.0.1"),
            (229, v6.clone(), "2001:db8::1"),
            (113, sll(ETH_IPV4, &v4), "10.1.0.1"),
            (276, sll2(ETH_IPV6, &v6), "2001:db8::1"),
            (276, sll2(ETH_IPV4, &v4), "10.1.0.1"),
        ];
        for (linktype, frame, src) in cases {
            let (alerts, result) = run(&pcap(linktype, &[whole(T0_NS, &frame)]), &rules());
            result.unwrap_or_else(|e| panic!("link type {linktype}: {e}"));
            assert_eq!(
                summary(&alerts),
                vec![(NULL_SCAN, Some(1), 1)],
                "link type {linktype}"
            );
            assert_eq!(alerts[0].src_ip.to_string(), src, "link type {linktype}");
            // `packet` starts where the capture's frames start.
            assert_eq!(alerts[0].packet_bytes(), frame, "link type {linktype}");
            let info = alerts[0].packet_info.as_ref().map(|p| p.linktype);
            assert_eq!(info, Some(linktype));
        }
    }

    #[test]
    fn pcapng_timestamps_follow_if_tsresol() {
        let frame = null_scan_eth([10, 1, 0, 1]);
        let micros = T0_NS / 1_000 + 123_456;
        let nanos = T0_NS + 123_456_789;
        for (tsresol, units) in [(None, micros), (Some(9), nanos), (Some(6), micros)] {
            let (alerts, result) = run(&pcapng(1, tsresol, &[(0, units, &frame)]), &rules());
            result.unwrap();
            assert_eq!(summary(&alerts), vec![(NULL_SCAN, Some(1), 1)]);
            let line = alerts[0].to_json_line();
            assert!(
                line.contains("2026-11-26T13:07:51.123456+0000"),
                "if_tsresol {tsresol:?}: {line}"
            );
        }
        let binary = Interface {
            linktype: 1,
            resolution: 0x80 | 10,
            offset_s: 2,
        };
        assert_eq!(
            binary.timestamp_ns(1024 * 3 + 512),
            5_500_000_000,
            "2^-10 s units plus if_tsoffset"
        );
    }

    #[test]
    fn rate_limited_matches_are_aggregated_and_add_up() {
        let frame = null_scan_eth([10, 1, 0, 1]);
        let mut packets: Vec<_> = (0..20).map(|i| whole(T0_NS + i * MS, &frame)).collect();
        packets.extend((0..10).map(|i| whole(T0_NS + 3_000 * MS + i * MS, &frame)));
        let (alerts, result) = run(&pcap(1, &packets), &rules());
        let stats = result.unwrap();
        let mut expected: Vec<_> = (1..=5).map(|n| (NULL_SCAN, Some(n), 1)).collect();
        expected.push((NULL_SCAN, Some(5), 15)); // swept when time reaches packet 21
        expected.extend((21..=25).map(|n| (NULL_SCAN, Some(n), 1)));
        expected.push((NULL_SCAN, Some(25), 5)); // flushed at the end
        assert_eq!(summary(&alerts), expected);
        assert_eq!(stats.alert_count, 30);
        // The aggregated line shows its packet at that packet's time.
        assert_eq!(alerts[5].timestamp, alerts[4].timestamp);
    }

    /// A storm from more new sources a second than the alert budget: the
    /// budget's worth of per-source lines, then one rule-wide line per
    /// second, and every match counted exactly once.
    #[test]
    fn a_storm_from_many_sources_is_aggregated_per_rule_and_adds_up() {
        use sensor_common::tables::ALERT_BUDGET;
        const PER_SECOND: u64 = 3_000;
        const SECONDS: u64 = 3;
        let frames: Vec<_> = (0..PER_SECOND * SECONDS)
            .map(|i| null_scan_eth([10, 2, (i >> 8) as u8, i as u8]))
            .collect();
        let packets: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(i, frame)| {
                let i = i as u64;
                let time = T0_NS + (i / PER_SECOND) * 1_000 * MS + (i % PER_SECOND) * 300_000;
                whole(time, frame)
            })
            .collect();
        let (alerts, result) = run(&pcap(1, &packets), &rules());
        let stats = result.unwrap();
        assert_eq!(stats.alert_count, PER_SECOND * SECONDS, "the account");
        let total: u64 = alerts.iter().map(|a| a.count()).sum();
        assert_eq!(total, PER_SECOND * SECONDS);
        let (storm, single): (Vec<_>, Vec<_>) = alerts
            .iter()
            .partition(|a| a.sensor.aggregate.as_deref() == Some("rule"));
        // Each second: the budget's worth of per-source lines, each for one packet.
        assert_eq!(single.len() as u64, ALERT_BUDGET as u64 * SECONDS);
        assert!(single.iter().all(|a| a.count() == 1));
        // The rest: the first overflowing packet of each second, then lines
        // for the matches behind it (swept each second, or flushed at the end).
        let first_over = |second: u64| Some(second * PER_SECOND + ALERT_BUDGET as u64 + 1);
        let shown: Vec<_> = storm.iter().map(|a| a.pcap_cnt).collect();
        for second in 0..SECONDS {
            assert!(shown.contains(&first_over(second)), "{shown:?}");
        }
        assert!(storm.len() as u64 <= 2 * SECONDS, "{shown:?}");
        let storm_total: u64 = storm.iter().map(|a| a.count()).sum();
        assert_eq!(storm_total, (PER_SECOND - ALERT_BUDGET as u64) * SECONDS);
        let line = storm[0].to_json_line();
        assert!(
            line.contains(r#""sensor":{"count":1,"aggregate":"rule","#),
            "{line}"
        );
    }

    /// Past the budget, a source stays on its own lines while its account
    /// counted a match of the rule in the current tick (2^30 ns) or the one
    /// before; after two ticks of silence its match joins the rule's line.
    #[test]
    fn a_source_is_tracked_through_the_next_tick_only() {
        use sensor_common::tables::{ALERT_BUDGET, TRACK_TICK_SHIFT};
        use std::net::{IpAddr, Ipv4Addr};
        const TICK: u64 = 1 << TRACK_TICK_SHIFT;
        let tracked = [10, 3, 0, 1];
        let storm_source = |phase: u8, i: u64| [10, 4 + phase, (i >> 8) as u8, i as u8];
        // Tick k: the source has its line. Tick k+1 (a new budget second):
        // the budget spent by new sources, then the source (tracked). Tick
        // k+4: the same, and the source has matched nothing since k+1.
        let k = (T0_NS >> TRACK_TICK_SHIFT) + 1;
        let mut timed = vec![(k * TICK + MS, null_scan_eth(tracked))];
        for (phase, tick) in [(0u8, k + 1), (1, k + 4)] {
            let start = tick * TICK + MS;
            for i in 0..ALERT_BUDGET as u64 {
                timed.push((start + i * 10_000, null_scan_eth(storm_source(phase, i))));
            }
            timed.push((start + 100 * MS, null_scan_eth(tracked)));
        }
        let packets: Vec<_> = timed
            .iter()
            .map(|(time, frame)| whole(*time, frame))
            .collect();
        let (alerts, result) = run(&pcap(1, &packets), &rules());
        let stats = result.unwrap();
        let total = 2 * ALERT_BUDGET as u64 + 3;
        assert_eq!(stats.alert_count, total);
        assert_eq!(
            alerts.iter().map(|a| a.count()).sum::<u64>(),
            total,
            "the account"
        );
        let from_tracked = IpAddr::V4(Ipv4Addr::from(tracked));
        let (rule_lines, own_lines): (Vec<_>, Vec<_>) = alerts
            .iter()
            .filter(|a| a.src_ip == from_tracked)
            .partition(|a| a.sensor.aggregate.as_deref() == Some("rule"));
        // Its line at tick k, and its match at k+1 on its own account
        // (reported by the sweep); its match at k+4 is the rule's.
        assert_eq!(own_lines.iter().map(|a| a.count()).sum::<u64>(), 2);
        assert_eq!(rule_lines.len(), 1, "{rule_lines:?}");
        assert_eq!(rule_lines[0].count(), 1);
        assert_eq!(rule_lines[0].pcap_cnt, Some(packets.len() as u64));
    }

    #[test]
    fn packet_shows_the_first_packet_bytes_or_nothing() {
        let ip =
            Ipv4::new([10, 1, 0, 1], [192, 0, 2, 1], 6).build(&tcp(1234, 80, 0, 1, &[0xab; 300]));
        let frame = ethernet(&[], ETH_IPV4, &ip);
        let file = write_temp(&pcap(1, &[whole(T0_NS, &frame)]));
        for (packet_bytes, shown) in [(128, 128), (16, 16), (1024, frame.len()), (0, 0)] {
            let mut alerts = Vec::new();
            let options = ReplayOptions {
                packet_bytes,
                ..ReplayOptions::default()
            };
            replay_with(file.path(), &rules(), options, &mut |alert| {
                alerts.push(alert.clone());
                Ok(())
            })
            .unwrap();
            assert_eq!(alerts.len(), 1);
            assert_eq!(
                alerts[0].packet_bytes(),
                &frame[..shown],
                "cap {packet_bytes}"
            );
            assert_eq!(alerts[0].packet_info.is_some(), shown > 0);
        }
    }

    #[test]
    fn snapped_frames_are_judged_by_their_wire_length() {
        let ip =
            Ipv4::new([10, 1, 0, 1], [192, 0, 2, 1], 6).build(&tcp(1234, 80, 0, 1, &[0xab; 100]));
        let frame = ethernet(&[], ETH_IPV4, &ip);
        let snapped = (T0_NS, &frame[..54], frame.len() as u32);
        let (alerts, result) = run(&pcap(1, &[snapped]), &rules());
        assert_eq!(result.unwrap().snapped, 1);
        assert_eq!(
            summary(&alerts),
            vec![(NULL_SCAN, Some(1), 1)],
            "no bad_total_length from the snap"
        );
        assert_eq!(alerts[0].sensor.header.length, frame.len() as u32);
        assert_eq!(alerts[0].packet_bytes(), &frame[..54], "what was captured");

        // Cut inside the TCP header: ports are there, flags are not.
        let (alerts, _) = run(
            &pcap(1, &[(T0_NS, &frame[..40], frame.len() as u32)]),
            &rules(),
        );
        assert!(alerts.is_empty(), "{alerts:?}");

        // Really shorter than its IP length: bad_total_length.
        let (alerts, _) = run(&pcap(1, &[whole(T0_NS, &frame[..100])]), &rules());
        assert_eq!(summary(&alerts), vec![(BAD_LENGTH, Some(1), 1)]);
    }

    #[test]
    fn files_that_are_not_captures_are_refused() {
        let missing = replay(Path::new("/nonexistent/x.pcap"), &rules(), &mut |_| Ok(()));
        assert!(
            matches!(missing, Err(ReplayError::Open { .. })),
            "{missing:?}"
        );
        for (bytes, reason) in [
            (&b""[..], "only 0 bytes"),
            (b"GET / HTTP/1.1\r\n", "unknown magic number 0x47455420"),
            (&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0][..], "gzip"),
            (
                &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0][..],
                "pcap file header is truncated",
            ),
        ] {
            let (_, result) = run(bytes, &rules());
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains("is not a pcap or pcapng capture") && message.contains(reason),
                "{message}"
            );
        }
    }

    #[test]
    fn unsupported_link_types_are_named() {
        for capture in [pcap(105, &[]), pcapng(105, None, &[(0, 0, &arp())])] {
            let (_, result) = run(&capture, &rules());
            let error = result.unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(
                    error,
                    ReplayError::UnsupportedLinkType { linktype: 105, .. }
                ),
                "{message}"
            );
            assert!(
                message.contains("IEEE802_11") && message.contains("Ethernet (1)"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_truncated_record_reports_what_came_before_then_fails() {
        let frame = null_scan_eth([10, 1, 0, 1]);
        let mut packets: Vec<_> = (0..8).map(|i| whole(T0_NS + i * MS, &frame)).collect();
        packets.push(whole(T0_NS + 9 * MS, &frame));
        let mut capture = pcap(1, &packets);
        capture.truncate(capture.len() - 10);
        let (alerts, result) = run(&capture, &rules());
        assert_eq!(
            alerts.iter().map(|a| a.count()).sum::<u64>(),
            8,
            "{:?}",
            summary(&alerts)
        );
        let record_len = (16 + frame.len()) as u64;
        match result {
            Err(ReplayError::Corrupt {
                packets_read,
                offset,
                ..
            }) => {
                assert_eq!((packets_read, offset), (8, 24 + 8 * record_len));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_pcapng_blocks_are_located() {
        let frame = null_scan_eth([10, 1, 0, 1]);
        let capture = pcapng(1, None, &[(0, 1, &frame), (3, 2, &frame)]);
        let (alerts, result) = run(&capture, &rules());
        assert_eq!(alerts.len(), 1);
        let first_packet_block = 28 + 20 + pcapng_block(ENHANCED_PACKET_BLOCK, &[0; 20 + 54]).len();
        let error = result.unwrap_err();
        assert!(
            matches!(&error, ReplayError::Corrupt { packets_read: 1, offset, .. } if *offset == first_packet_block as u64),
            "{error}"
        );
        assert!(error.to_string().contains("interface 3"), "{error}");

        let mut capture = pcapng(1, None, &[(0, 1, &frame)]);
        let len = capture.len();
        capture[len - 4] ^= 0xff; // trailer length no longer matches
        let (_, result) = run(&capture, &rules());
        assert!(
            matches!(
                result,
                Err(ReplayError::Corrupt {
                    packets_read: 0,
                    offset: 48,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn output_errors_stop_the_replay() {
        let frame = null_scan_eth([10, 1, 0, 1]);
        let file = write_temp(&pcap(1, &[whole(T0_NS, &frame), whole(T0_NS + 1, &frame)]));
        let mut calls = 0;
        let result = replay(file.path(), &rules(), &mut |_| {
            calls += 1;
            Err(io::Error::new(ErrorKind::BrokenPipe, "closed"))
        });
        assert!(matches!(result, Err(ReplayError::Output(_))), "{result:?}");
        assert_eq!(calls, 1);
    }
}
