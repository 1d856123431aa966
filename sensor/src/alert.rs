//! Alert lines: the JSON object of CONTRACT.md section 3, built from a
//! kernel [`AlertRecord`] and what userspace knows about its rule.
//!
//! [`Alert`] is the typed line. Its field order is the contract's, and
//! serde writes fields in declaration order, so `to_json_line` yields the
//! contract's layout. Optional fields are left out (not `null`) when the
//! packet does not have them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use sensor_common::AlertRecord;
use sensor_common::alert::outcome;
use sensor_common::packet::{
    MAX_VLAN_TAGS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, flag, tcp,
};

use crate::rules::RuleMeta;

/// One alert line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Wall-clock time of the packet (the capture's time in `replay`).
    #[serde(with = "rfc3339_micros")]
    pub timestamp: OffsetDateTime,
    pub event_type: EventType,
    /// Interface the packet arrived on; absent in `replay` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    pub src_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// `TCP`, `UDP`, `ICMP`, `IPv6-ICMP`, or the protocol number.
    pub proto: String,
    pub alert: AlertInfo,
    pub packet: PacketInfo,
    /// Matching packets this line stands for (see `crate::aggregate`).
    pub count: u64,
    /// `replay` only: 1-based number of the packet in the capture (Suricata
    /// EVE's name). For an aggregated line, the packet the line describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcap_cnt: Option<u64>,
}

/// `event_type`: always `alert` for these lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Alert,
}

/// The `alert` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertInfo {
    pub signature_id: u32,
    pub signature: String,
    /// The rule's match kind: `tcp_flags`, `ttl`, `fragment`, `syn_flood`, `header`.
    pub category: String,
    /// 1 (critical) to 4 (low).
    pub severity: u8,
    pub action: AlertAction,
}

/// `alert.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertAction {
    Allowed,
    Blocked,
}

/// The `packet` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketInfo {
    pub ip_version: u8,
    /// Frame length as received.
    pub length: u32,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification, or the IPv6 fragment header's; absent for IPv6
    /// packets without a fragment header (they have no such field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_id: Option<u32>,
    /// In bytes (the header field × 8); absent like `ip_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frag_offset: Option<u32>,
    /// Absent like `ip_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_fragments: Option<bool>,
    /// Letters F S R P A U E C N in that order; `""` when no flag is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// VLAN ids, outermost first; absent when untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vec<u16>>,
}

impl Alert {
    /// The line for `record`, standing for `count` packets, stamped with
    /// `timestamp` (the packet's wall-clock time). `iface` and `pcap_cnt`
    /// start absent: see [`Alert::with_iface`], [`Alert::with_pcap_cnt`].
    pub fn new(
        record: &AlertRecord,
        rule: &RuleMeta,
        count: u64,
        timestamp: OffsetDateTime,
    ) -> Alert {
        debug_assert_eq!(record.sig_id, rule.id, "alert record and rule disagree");
        let packet = &record.packet;
        let has_ports = packet.has(flag::HAS_PORTS);
        Alert {
            timestamp,
            event_type: EventType::Alert,
            iface: None,
            src_ip: ip_addr(packet.ip_version, &packet.src_addr),
            src_port: has_ports.then_some(packet.src_port),
            dest_ip: ip_addr(packet.ip_version, &packet.dst_addr),
            dest_port: has_ports.then_some(packet.dst_port),
            proto: proto_name(packet.proto),
            alert: AlertInfo {
                signature_id: record.sig_id,
                signature: rule.name.clone(),
                category: rule.category.to_owned(),
                severity: rule.severity.number(),
                action: if record.action == outcome::BLOCKED {
                    AlertAction::Blocked
                } else {
                    AlertAction::Allowed
                },
            },
            packet: PacketInfo::from_meta(packet),
            count,
            pcap_cnt: None,
        }
    }

    pub fn with_iface(mut self, iface: impl Into<String>) -> Alert {
        self.iface = Some(iface.into());
        self
    }

    pub fn with_pcap_cnt(mut self, pcap_cnt: u64) -> Alert {
        self.pcap_cnt = Some(pcap_cnt);
        self
    }

    /// The line as JSON, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        to_json_line(self)
    }

    /// Parses one line (as written by [`to_json_line`]).
    pub fn from_json(line: &str) -> Result<Alert, serde_json::Error> {
        serde_json::from_str(line)
    }
}

impl PacketInfo {
    /// The fields of `packet` that the contract's `packet` object carries.
    pub fn from_meta(packet: &PacketMeta) -> PacketInfo {
        // IPv6 has identification / offset / MF only in a fragment header.
        let has_fragment_fields = packet.ip_version == 4 || packet.has(flag::IPV6_FRAG_HEADER);
        let vlan_count = (packet.vlan_count as usize).min(MAX_VLAN_TAGS);
        PacketInfo {
            ip_version: packet.ip_version,
            length: packet.frame_len,
            ttl: packet.ttl,
            ip_id: has_fragment_fields.then_some(packet.ip_id),
            frag_offset: has_fragment_fields.then_some(u32::from(packet.frag_offset) * 8),
            more_fragments: has_fragment_fields.then_some(packet.has(flag::MORE_FRAGMENTS)),
            tcp_flags: packet
                .has(flag::HAS_TCP_FLAGS)
                .then(|| tcp_flag_letters(packet.tcp_flags)),
            vlan: (vlan_count > 0).then(|| packet.vlan[..vlan_count].to_vec()),
        }
    }
}

/// The line as JSON, without the trailing newline.
pub fn to_json_line(alert: &Alert) -> String {
    // Cannot fail: every field is a string, number, bool or list, and the
    // timestamp is formatted by hand.
    serde_json::to_string(alert).expect("an Alert always serializes")
}

/// The contract's `proto` value.
pub fn proto_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "TCP".to_owned(),
        PROTO_UDP => "UDP".to_owned(),
        PROTO_ICMP => "ICMP".to_owned(),
        PROTO_ICMPV6 => "IPv6-ICMP".to_owned(),
        other => other.to_string(),
    }
}

/// The contract's `tcp_flags` letters for a 9-bit flags field.
pub fn tcp_flag_letters(flags: u16) -> String {
    tcp::LETTERS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, letter)| *letter)
        .collect()
}

/// An address as the parser stores it: IPv4 in the first four bytes.
pub fn ip_addr(ip_version: u8, addr: &[u8; 16]) -> IpAddr {
    if ip_version == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    }
}

/// Wall-clock time from nanoseconds since the Unix epoch (capture time).
pub fn unix_ns_to_datetime(unix_ns: u64) -> OffsetDateTime {
    // Every u64 of nanoseconds (up to year 2554) is a valid date.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `timestamp`: RFC 3339 in UTC with exactly six fractional digits
/// ("2026-11-26T13:07:51.123456Z"), as in the contract's example.
pub mod rfc3339_micros {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn format(timestamp: OffsetDateTime) -> String {
        let utc = timestamp.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            utc.year(),
            u8::from(utc.month()),
            utc.day(),
            utc.hour(),
            utc.minute(),
            utc.second(),
            utc.microsecond()
        )
    }

    pub fn serialize<S: Serializer>(
        timestamp: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*timestamp))
    }

    /// Accepts any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;
    use sensor_common::packet::{event, flag};
    use sensor_common::tables::kind;

    fn rule() -> RuleMeta {
        RuleMeta {
            id: 100001,
            name: "TCP SYN and FIN set".to_owned(),
            severity: Severity::High,
            category: "tcp_flags",
            drop: false,
            origin: "test.yaml:3".to_owned(),
        }
    }

    fn syn_fin_record() -> AlertRecord {
        let mut packet = PacketMeta {
            frame_len: 60,
            ip_id: 1234,
            src_port: 4242,
            dst_port: 80,
            tcp_flags: tcp::SYN | tcp::FIN,
            flags: flag::HAS_PORTS | flag::HAS_TCP_FLAGS,
            ip_version: 4,
            ttl: 64,
            proto: PROTO_TCP,
            vlan_count: 1,
            ..PacketMeta::default()
        };
        packet.vlan[0] = 100;
        packet.src_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        packet.dst_addr[..4].copy_from_slice(&[192, 0, 2, 10]);
        AlertRecord {
            timestamp_ns: 1,
            count: 1,
            sig_id: 100001,
            kind: kind::TCP_FLAGS,
            packet,
            ..AlertRecord::default()
        }
    }

    fn contract_time() -> OffsetDateTime {
        // 2026-11-26T13:07:51.123456Z
        unix_ns_to_datetime(1_795_698_471_123_456_000)
    }

    #[test]
    fn matches_the_contract_example_byte_for_byte() {
        let line = Alert::new(&syn_fin_record(), &rule(), 1, contract_time())
            .with_iface("eth0")
            .to_json_line();
        let expected = concat!(
            r#"{"timestamp":"2026-11-26T13:07:51.123456Z","event_type":"alert","iface":"eth0","#,
            r#""src_ip":"10.1.2.3","src_port":4242,"dest_ip":"192.0.2.10","dest_port":80,"proto":"TCP","#,
            r#""alert":{"signature_id":100001,"signature":"TCP SYN and FIN set","category":"tcp_flags","#,
            r#""severity":2,"action":"allowed"},"#,
            r#""packet":{"ip_version":4,"length":60,"ttl":64,"ip_id":1234,"frag_offset":0,"#,
            r#""more_fragments":false,"tcp_flags":"FS","vlan":[100]},"#,
            r#""count":1}"#
        );
        assert_eq!(line, expected);
    }

    #[test]
    fn round_trips_through_json() {
        let alert = Alert::new(&syn_fin_record(), &rule(), 7, contract_time()).with_pcap_cnt(3);
        let parsed = Alert::from_json(&alert.to_json_line()).unwrap();
        assert_eq!(parsed, alert);
        assert!(alert.to_json_line().ends_with(r#""count":7,"pcap_cnt":3}"#));
    }

    #[test]
    fn leaves_out_what_the_packet_does_not_have() {
        // A non-first IPv4 fragment of UDP: no ports, no flags; untagged; replay.
        let mut record = syn_fin_record();
        record.packet.flags = flag::FRAGMENT | flag::MORE_FRAGMENTS;
        record.packet.frag_offset = 185;
        record.packet.proto = PROTO_UDP;
        record.packet.vlan_count = 0;
        let line = Alert::new(&record, &rule(), 1, contract_time()).to_json_line();
        for absent in [
            "iface",
            "src_port",
            "dest_port",
            "tcp_flags",
            "vlan",
            "pcap_cnt",
        ] {
            assert!(
                !line.contains(&format!("\"{absent}\":")),
                "{absent} in {line}"
            );
        }
        assert!(line.contains(r#""proto":"UDP""#), "{line}");
        assert!(
            line.contains(r#""frag_offset":1480,"more_fragments":true"#),
            "{line}"
        );
    }

    #[test]
    fn null_scan_has_empty_flag_letters_and_all_letters_keep_order() {
        let mut record = syn_fin_record();
        record.packet.tcp_flags = 0;
        let alert = Alert::new(&record, &rule(), 1, contract_time());
        assert_eq!(alert.packet.tcp_flags.as_deref(), Some(""));
        assert!(alert.to_json_line().contains(r#""tcp_flags":"""#));
        assert_eq!(tcp_flag_letters(0x1ff), "FSRPAUECN");
        assert_eq!(tcp_flag_letters(tcp::ACK | tcp::PSH), "PA");
    }

    #[test]
    fn ipv6_addresses_protocol_names_and_fragment_fields() {
        let mut record = syn_fin_record();
        record.packet.ip_version = 6;
        record.packet.src_addr = "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets();
        record.packet.dst_addr = "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets();
        record.packet.proto = PROTO_ICMPV6;
        record.packet.flags = flag::HAS_ICMP;
        let alert = Alert::new(&record, &rule(), 1, contract_time());
        let line = alert.to_json_line();
        assert!(
            line.contains(
                r#""src_ip":"2001:db8:1::2","dest_ip":"2001:db8:1::1","proto":"IPv6-ICMP""#
            )
        );
        // No fragment header: no identification, offset or MF to report.
        assert_eq!((alert.packet.ip_id, alert.packet.frag_offset), (None, None));

        record.packet.flags |= flag::IPV6_FRAG_HEADER | flag::FRAGMENT;
        record.packet.events = event::bit(event::FRAG_ATOMIC);
        let alert = Alert::new(&record, &rule(), 1, contract_time());
        assert_eq!(alert.packet.ip_id, Some(1234));
        assert_eq!(alert.packet.more_fragments, Some(false));

        assert_eq!(proto_name(PROTO_ICMP), "ICMP");
        assert_eq!(proto_name(132), "132");
    }

    #[test]
    fn blocked_action_and_severity_number() {
        let mut record = syn_fin_record();
        record.action = outcome::BLOCKED;
        let mut meta = rule();
        meta.severity = Severity::Critical;
        let alert = Alert::new(&record, &meta, 1, contract_time());
        assert!(
            alert
                .to_json_line()
                .contains(r#""severity":1,"action":"blocked""#)
        );
    }

    #[test]
    fn timestamp_is_utc_with_microseconds_and_parses_other_offsets() {
        assert_eq!(
            rfc3339_micros::format(unix_ns_to_datetime(0)),
            "1970-01-01T00:00:00.000000Z"
        );
        let line = Alert::new(&syn_fin_record(), &rule(), 1, contract_time())
            .to_json_line()
            .replace(
                "2026-11-26T13:07:51.123456Z",
                "2026-11-26T14:07:51.123456+01:00",
            );
        assert_eq!(Alert::from_json(&line).unwrap().timestamp, contract_time());
    }

    #[test]
    fn rejects_unknown_fields_and_wrong_event_types() {
        let line = Alert::new(&syn_fin_record(), &rule(), 1, contract_time()).to_json_line();
        assert!(Alert::from_json(&line.replace(r#""count":1"#, r#""count":1,"extra":2"#)).is_err());
        assert!(
            Alert::from_json(&line.replace(r#""event_type":"alert""#, r#""event_type":"flow""#))
                .is_err()
        );
    }
}
