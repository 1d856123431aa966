//! `--summary SECS`: what the kernel's per-CPU summary maps counted for
//! the filtered traffic, turned into a report — top talkers (by source
//! address), protocol mix, TCP flag mix and a TTL histogram.
//!
//! The kernel's maps are cumulative. Each periodic report shows the
//! difference from the previous one (the last interval); the report
//! printed on exit shows the whole session.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;

use sensor_common::filter::TalkerStats;
use sensor_common::packet::AddrKey;

use crate::alert::{ip_addr, proto_name, rfc3339_micros, tcp_flag_letters};
use crate::kernel::loader::InspectSummary;

/// Talkers listed per report.
pub const TOP_TALKERS: usize = 10;

/// TTL / hop limit buckets: the usual initial values (32, 64, 128, 255)
/// end a bucket, so a bucket tells roughly which systems sent the packets.
pub const TTL_BUCKETS: [(u8, u8); 5] = [(0, 0), (1, 32), (33, 64), (65, 128), (129, 255)];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Since the previous report.
    Interval,
    /// Since the session started.
    Total,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Talker {
    pub src_ip: IpAddr,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtoCount {
    pub proto: String,
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagCount {
    pub tcp_flags: String,
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TtlCount {
    pub ttl: String,
    pub packets: u64,
}

/// One report; as JSON, one line with `event_type` `inspect_summary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(with = "rfc3339_micros")]
    pub timestamp: OffsetDateTime,
    pub event_type: &'static str,
    pub iface: String,
    pub scope: Scope,
    /// Length of the period the report covers.
    pub seconds: u64,
    /// Packets the filter matched in the period.
    pub packets: u64,
    /// Most active sources, by packets (at most [`TOP_TALKERS`]).
    pub top_talkers: Vec<Talker>,
    /// By packets, most first.
    pub protocols: Vec<ProtoCount>,
    /// TCP segments by their flag combination, most first.
    pub tcp_flags: Vec<FlagCount>,
    /// Every bucket of [`TTL_BUCKETS`], in order.
    pub ttl: Vec<TtlCount>,
    /// Drop mode (`sensor run`'s program): the sources blocked now, with
    /// why and for how long; absent when none is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<crate::kernel::drop_policy::BlockedNow>,
}

impl Report {
    /// The report of what `current` counted beyond `previous` (`None`:
    /// everything in `current`).
    pub fn new(
        previous: Option<&InspectSummary>,
        current: &InspectSummary,
        scope: Scope,
        seconds: u64,
        iface: &str,
        timestamp: OffsetDateTime,
    ) -> Report {
        let delta = |now: &[u64], before: Option<&Vec<u64>>, i: usize| -> u64 {
            let old = before.and_then(|b| b.get(i)).copied().unwrap_or(0);
            now[i].saturating_sub(old)
        };
        let protocols_delta: Vec<u64> = (0..current.protocols.len())
            .map(|i| delta(&current.protocols, previous.map(|p| &p.protocols), i))
            .collect();
        let packets = protocols_delta.iter().sum();

        let mut protocols: Vec<ProtoCount> = protocols_delta
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(proto, n)| ProtoCount {
                proto: proto_name(proto as u8),
                packets: *n,
            })
            .collect();
        protocols.sort_by_key(|p| std::cmp::Reverse(p.packets));

        let mut tcp_flags: Vec<FlagCount> = (0..current.tcp_flags.len())
            .map(|i| {
                (
                    i,
                    delta(&current.tcp_flags, previous.map(|p| &p.tcp_flags), i),
                )
            })
            .filter(|(_, n)| *n > 0)
            .map(|(flags, n)| FlagCount {
                tcp_flags: tcp_flag_letters(flags as u16),
                packets: n,
            })
            .collect();
        tcp_flags.sort_by_key(|f| std::cmp::Reverse(f.packets));

        let ttl_delta: Vec<u64> = (0..current.ttl.len())
            .map(|i| delta(&current.ttl, previous.map(|p| &p.ttl), i))
            .collect();
        let ttl = TTL_BUCKETS
            .iter()
            .map(|(low, high)| TtlCount {
                ttl: if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                },
                packets: ttl_delta
                    .iter()
                    .enumerate()
                    .filter(|(t, _)| (*low as usize..=*high as usize).contains(t))
                    .map(|(_, n)| n)
                    .sum(),
            })
            .collect();

        Report {
            timestamp,
            event_type: "inspect_summary",
            iface: iface.to_owned(),
            scope,
            seconds,
            packets,
            top_talkers: top_talkers(previous.map(|p| p.talkers.as_slice()), &current.talkers),
            protocols,
            tcp_flags,
            ttl,
            blocked: current.blocked.clone(),
        }
    }

    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a Report always serializes")
    }

    /// The report as text lines (each ending in a newline); `time` is the
    /// local time of day.
    pub fn to_text(&self, time: &str) -> String {
        let mut out = String::new();
        let period = match self.scope {
            Scope::Interval => format!("last {} s", self.seconds),
            Scope::Total => format!("total, {} s", self.seconds),
        };
        let _ = writeln!(
            out,
            "summary {time} ({period}): {} packets matched",
            self.packets
        );
        let _ = writeln!(out, "  top talkers (source, packets, bytes):");
        if self.top_talkers.is_empty() {
            let _ = writeln!(out, "    none");
        }
        for talker in &self.top_talkers {
            let _ = writeln!(
                out,
                "    {:<39} {:>10} {:>12}",
                talker.src_ip.to_string(),
                talker.packets,
                talker.bytes
            );
        }
        let percent = |n: u64| {
            if self.packets == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.packets as f64
            }
        };
        let protocols: Vec<String> = self
            .protocols
            .iter()
            .map(|p| format!("{} {} ({:.1}%)", p.proto, p.packets, percent(p.packets)))
            .collect();
        let _ = writeln!(out, "  protocols: {}", list_or_none(&protocols));
        let flags: Vec<String> = self
            .tcp_flags
            .iter()
            .map(|f| format!("[{}] {}", f.tcp_flags, f.packets))
            .collect();
        let _ = writeln!(out, "  tcp flags: {}", list_or_none(&flags));
        let ttl: Vec<String> = self
            .ttl
            .iter()
            .map(|t| format!("{}: {}", t.ttl, t.packets))
            .collect();
        let _ = writeln!(out, "  ttl:       {}", ttl.join(", "));
        out.push_str(&crate::kernel::drop_policy::blocked_text(&self.blocked));
        out
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The busiest sources of the period. An entry that went down since the
/// previous read was evicted from the kernel's LRU and counted afresh.
fn top_talkers(
    previous: Option<&[(AddrKey, TalkerStats)]>,
    current: &[(AddrKey, TalkerStats)],
) -> Vec<Talker> {
    let before: HashMap<AddrKey, TalkerStats> = previous.unwrap_or(&[]).iter().copied().collect();
    let mut talkers: Vec<(AddrKey, Talker)> = current
        .iter()
        .filter_map(|(key, now)| {
            let old = before.get(key).copied().unwrap_or_default();
            let (packets, bytes) = if now.packets >= old.packets {
                (
                    now.packets - old.packets,
                    now.bytes.saturating_sub(old.bytes),
                )
            } else {
                (now.packets, now.bytes)
            };
            (packets > 0).then(|| {
                (
                    *key,
                    Talker {
                        src_ip: ip_addr(key.version, &key.addr),
                        packets,
                        bytes,
                    },
                )
            })
        })
        .collect();
    talkers.sort_by(|(ka, a), (kb, b)| {
        b.packets
            .cmp(&a.packets)
            .then(b.bytes.cmp(&a.bytes))
            .then((ka.version, ka.addr).cmp(&(kb.version, kb.addr)))
    });
    talkers.truncate(TOP_TALKERS);
    talkers.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::unix_ns_to_datetime;
    use sensor_common::filter::summary;

    fn key(last: u8) -> AddrKey {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 0, 0, last]);
        AddrKey::new(4, addr)
    }

    fn empty() -> InspectSummary {
        InspectSummary {
            talkers: Vec::new(),
            protocols: vec![0; summary::PROTO_SLOTS as usize],
            tcp_flags: vec![0; summary::FLAG_SLOTS as usize],
            ttl: vec![0; summary::TTL_SLOTS as usize],
            blocked: Vec::new(),
        }
    }

    fn stats(packets: u64) -> TalkerStats {
        TalkerStats {
            packets,
            bytes: packets * 60,
        }
    }

    fn sample() -> InspectSummary {
        let mut s = empty();
        s.talkers = (1..=12).map(|i| (key(i), stats(u64::from(i)))).collect();
        s.protocols[6] = 70;
        s.protocols[17] = 8;
        s.protocols[1] = 0;
        s.tcp_flags[0x002] = 50;
        s.tcp_flags[0x012] = 20;
        s.ttl[64] = 60;
        s.ttl[128] = 15;
        s.ttl[0] = 1;
        s.ttl[255] = 2;
        s
    }

    #[test]
    fn total_report_sorts_and_buckets() {
        let report = Report::new(
            None,
            &sample(),
            Scope::Total,
            9,
            "eth0",
            unix_ns_to_datetime(0),
        );
        assert_eq!(report.packets, 78);
        assert_eq!(report.top_talkers.len(), TOP_TALKERS);
        assert_eq!(report.top_talkers[0].src_ip.to_string(), "10.0.0.12");
        assert_eq!(report.top_talkers[0].packets, 12);
        assert_eq!(report.top_talkers[9].packets, 3);
        assert_eq!(
            report.protocols,
            [
                ProtoCount {
                    proto: "TCP".into(),
                    packets: 70
                },
                ProtoCount {
                    proto: "UDP".into(),
                    packets: 8
                }
            ]
        );
        assert_eq!(report.tcp_flags[0].tcp_flags, "S");
        assert_eq!(report.tcp_flags[1].tcp_flags, "SA");
        let ttl: Vec<(&str, u64)> = report
            .ttl
            .iter()
            .map(|t| (t.ttl.as_str(), t.packets))
            .collect();
        assert_eq!(
            ttl,
            [
                ("0", 1),
                ("1-32", 0),
                ("33-64", 60),
                ("65-128", 15),
                ("129-255", 2)
            ]
        );
        let json = report.to_json_line();
        assert!(json.starts_with(
            r#"{"timestamp":"1970-01-01T00:00:00.000000Z","event_type":"inspect_summary","iface":"eth0","scope":"total","seconds":9,"packets":78,"top_talkers":[{"src_ip":"10.0.0.12","packets":12,"bytes":720}"#
        ), "{json}");
        assert!(
            json.contains(
                r#""protocols":[{"proto":"TCP","packets":70},{"proto":"UDP","packets":8}]"#
            )
        );
        assert!(json.contains(
            r#""tcp_flags":[{"tcp_flags":"S","packets":50},{"tcp_flags":"SA","packets":20}]"#
        ));
        let text = report.to_text("14:00:00");
        assert!(
            text.starts_with("summary 14:00:00 (total, 9 s): 78 packets matched\n"),
            "{text}"
        );
        assert!(
            text.contains("protocols: TCP 70 (89.7%), UDP 8 (10.3%)"),
            "{text}"
        );
        assert!(text.contains("tcp flags: [S] 50, [SA] 20"), "{text}");
        assert!(
            text.contains("ttl:       0: 1, 1-32: 0, 33-64: 60, 65-128: 15, 129-255: 2"),
            "{text}"
        );
    }

    #[test]
    fn interval_report_is_the_difference() {
        let before = sample();
        let mut after = sample();
        after.protocols[6] += 5;
        after.tcp_flags[0x002] += 5;
        after.ttl[64] += 5;
        // 10.0.0.1 sent 5 more; 10.0.0.2 was evicted and came back with 1.
        after.talkers[0].1 = stats(6);
        after.talkers[1].1 = stats(1);
        let report = Report::new(
            Some(&before),
            &after,
            Scope::Interval,
            5,
            "eth0",
            unix_ns_to_datetime(0),
        );
        assert_eq!(report.packets, 5);
        let talkers: Vec<(String, u64)> = report
            .top_talkers
            .iter()
            .map(|t| (t.src_ip.to_string(), t.packets))
            .collect();
        assert_eq!(talkers, [("10.0.0.1".into(), 5), ("10.0.0.2".into(), 1)]);
        assert_eq!(report.protocols.len(), 1);
        assert_eq!(report.tcp_flags.len(), 1);
        assert_eq!(report.ttl[2].packets, 5);
        let quiet = Report::new(
            Some(&after),
            &after,
            Scope::Interval,
            5,
            "eth0",
            unix_ns_to_datetime(0),
        );
        assert_eq!(quiet.packets, 0);
        let text = quiet.to_text("T");
        assert!(
            text.contains("    none\n") && text.contains("protocols: none"),
            "{text}"
        );
    }
}
