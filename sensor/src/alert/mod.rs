//! Alert lines: the EVE JSON object of CONTRACT.md section 3 (v2), built
//! from a kernel [`AlertRecord`], the frame bytes that came with it, and
//! what userspace knows about its rule.
//!
//! Every field Suricata's EVE defines has Suricata's name, type and
//! meaning (`packet` is the frame itself, base64; `timestamp` has a numeric
//! offset; `in_iface`; `alert.gid`/`rev`; `tcp` booleans); the sensor's own
//! facts sit in the `sensor` object. [`Alert`]'s field order is the line's
//! (serde writes fields in declaration order). Optional fields are left out
//! (not `null`) when the packet does not have them.

pub mod community_id;
pub mod format;

pub use self::format::{
    eve_timestamp, ip_addr, proto_name, rfc3339_micros, tcp_flag_letters, unix_ns_to_datetime,
    vlan_ids,
};

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use sensor_common::AlertRecord;
use sensor_common::alert::{aggregate, outcome};
use sensor_common::packet::{PacketMeta, flag, tcp, tunnel};

use crate::rules::RuleMeta;

/// pcap's LINKTYPE_ETHERNET: what the XDP program's frames start with.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The first bytes of the frame an alert is about, as received (live) or
/// as captured (replay), and the link type they start with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedPacket {
    pub linktype: u32,
    /// Shared: aggregated lines reuse the bytes of the record they show.
    pub bytes: Arc<[u8]>,
}

impl CapturedPacket {
    pub fn ethernet(bytes: &[u8]) -> CapturedPacket {
        CapturedPacket {
            linktype: LINKTYPE_ETHERNET,
            bytes: bytes.into(),
        }
    }
}

/// One alert line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Wall-clock time of the packet (the capture's time in `replay`).
    #[serde(with = "eve_timestamp")]
    pub timestamp: OffsetDateTime,
    /// Interface the packet arrived on; absent in `replay` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_iface: Option<String>,
    /// `replay` only: 1-based number of the packet in the capture. For an
    /// aggregated line, the packet the line describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcap_cnt: Option<u64>,
    pub event_type: EventType,
    /// VLAN ids, outermost first; absent when untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vec<u16>>,
    pub src_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// `TCP`, `UDP`, `ICMP`, `IPv6-ICMP`, or the protocol number.
    pub proto: String,
    /// 4 or 6.
    pub ip_v: u8,
    /// ICMP and ICMPv6 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Community ID v1 of the packet's flow; absent when it has none
    /// (non-first fragments, cut transport headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// The outer packet, when the alert is about a tunnel's inner packet
    /// (contract section 3, *Tunnels*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelInfo>,
    pub alert: AlertInfo,
    /// TCP segments whose whole 20-byte header was present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpInfo>,
    /// The frame's first bytes, base64 (absent when capture is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_info: Option<PacketInfo>,
    /// The sensor's own fields (Suricata defines none of them).
    pub sensor: SensorFields,
}

/// The `tunnel` object: the outer packet of a decapsulated frame. The
/// address, port, `proto` and `depth` fields are Suricata's; `type` and
/// the id fields the sensor's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelInfo {
    pub src_ip: IpAddr,
    /// The outer UDP ports (`vxlan`, `geneve` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// The outer packet's upper-layer protocol, named as `proto` is.
    pub proto: String,
    /// 1: the inner packet is one level in.
    pub depth: u8,
    /// `vxlan`, `geneve`, `gre`, `erspan` or `ipip`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gre_key: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erspan_session_id: Option<u32>,
}

impl TunnelInfo {
    /// The packet's tunnel, or `None` when it is the frame's outermost.
    pub fn from_meta(meta: &PacketMeta) -> Option<TunnelInfo> {
        let outer = &meta.tunnel;
        let kind = format::tunnel_name(outer.kind)?;
        let id = (outer.has_id != 0).then_some(outer.id);
        let udp = matches!(outer.kind, tunnel::VXLAN | tunnel::GENEVE);
        Some(TunnelInfo {
            src_ip: ip_addr(outer.ip_version, &outer.src_addr),
            src_port: udp.then_some(outer.src_port),
            dest_ip: ip_addr(outer.ip_version, &outer.dst_addr),
            dest_port: udp.then_some(outer.dst_port),
            proto: proto_name(outer.proto),
            depth: 1,
            kind: kind.to_owned(),
            vni: id.filter(|_| udp),
            gre_key: id.filter(|_| outer.kind == tunnel::GRE),
            erspan_session_id: id.filter(|_| outer.kind == tunnel::ERSPAN),
        })
    }
}

/// `event_type`: always `alert` for these lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Alert,
}

/// The `alert` object, in Suricata's field order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertInfo {
    pub action: AlertAction,
    /// The rule's `gid` (default 1).
    pub gid: u32,
    pub signature_id: u32,
    /// The rule's `rev` (default 1).
    pub rev: u32,
    pub signature: String,
    /// The rule's match kind: `tcp_flags`, `ttl`, `fragment`, `syn_flood`, `header`.
    pub category: String,
    /// 1 (critical) to 4 (low).
    pub severity: u8,
}

/// `alert.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertAction {
    Allowed,
    Blocked,
}

/// The `tcp` object as Suricata writes it: the flags byte in hex, and one
/// `true` per flag that is set (flags that are clear are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpInfo {
    /// The low 8 flag bits (CWR..FIN) as two lowercase hex digits.
    pub tcp_flags: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psh: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urg: Option<bool>,
    /// ECE (Suricata's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecn: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwr: Option<bool>,
}

/// `packet_info`: what `packet` starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketInfo {
    /// pcap link type: 1 (Ethernet) live; the capture's in replay.
    pub linktype: u32,
}

/// The `sensor` object: matching packets the line stands for, then the
/// header facts of the packet it shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorFields {
    /// Matching packets this line stands for (see `crate::engine::aggregate`).
    pub count: u64,
    /// `"rule"` on a storm line, whose count covers the rule's matches from
    /// many sources (contract §3, alert storms); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    /// Drop mode, lines of `drop` rules: what became of the source
    /// (`crate::alert::format::block_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    #[serde(flatten)]
    pub header: HeaderFacts,
}

/// Header facts Suricata's EVE has no field for; `sensor inspect --json`
/// shows the same ones under the same names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFacts {
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
}

impl Alert {
    /// The line for `record`, standing for `count` packets, stamped with
    /// `timestamp` (the packet's wall-clock time), showing `packet` (the
    /// frame's first bytes; empty: no `packet` field), with the flow's
    /// Community ID under `community_id_seed`. `in_iface` and `pcap_cnt`
    /// start absent: see [`Alert::with_iface`], [`Alert::with_pcap_cnt`].
    pub fn new(
        record: &AlertRecord,
        packet: &CapturedPacket,
        rule: &RuleMeta,
        count: u64,
        timestamp: OffsetDateTime,
        community_id_seed: u16,
    ) -> Alert {
        debug_assert_eq!(record.sig_id, rule.id, "alert record and rule disagree");
        let meta = &record.packet;
        let has_ports = meta.has(flag::HAS_PORTS);
        let has_icmp = meta.has(flag::HAS_ICMP);
        let captured = !packet.bytes.is_empty();
        Alert {
            timestamp,
            in_iface: None,
            pcap_cnt: None,
            event_type: EventType::Alert,
            vlan: vlan_ids(meta),
            src_ip: ip_addr(meta.ip_version, &meta.src_addr),
            src_port: has_ports.then_some(meta.src_port),
            dest_ip: ip_addr(meta.ip_version, &meta.dst_addr),
            dest_port: has_ports.then_some(meta.dst_port),
            proto: proto_name(meta.proto),
            ip_v: meta.ip_version,
            icmp_type: has_icmp.then_some(meta.icmp_type),
            icmp_code: has_icmp.then_some(meta.icmp_code),
            community_id: community_id::of_packet(meta, community_id_seed),
            tunnel: TunnelInfo::from_meta(meta),
            alert: AlertInfo {
                action: if record.action == outcome::BLOCKED {
                    AlertAction::Blocked
                } else {
                    AlertAction::Allowed
                },
                gid: rule.gid,
                signature_id: record.sig_id,
                rev: rule.rev,
                signature: rule.name.clone(),
                category: rule.category.to_owned(),
                severity: rule.severity.number(),
            },
            tcp: meta
                .has(flag::HAS_TCP_FLAGS)
                .then(|| TcpInfo::from_flags(meta.tcp_flags)),
            packet: captured.then(|| BASE64.encode(&packet.bytes)),
            packet_info: captured.then_some(PacketInfo {
                linktype: packet.linktype,
            }),
            sensor: SensorFields {
                count,
                aggregate: (record.aggregate == aggregate::RULE).then(|| "rule".to_owned()),
                block: crate::alert::format::block_name(record.block).map(str::to_owned),
                header: HeaderFacts::from_meta(meta),
            },
        }
    }

    pub fn with_iface(mut self, iface: impl Into<String>) -> Alert {
        self.in_iface = Some(iface.into());
        self
    }

    pub fn with_pcap_cnt(mut self, pcap_cnt: u64) -> Alert {
        self.pcap_cnt = Some(pcap_cnt);
        self
    }

    /// Matching packets this line stands for.
    pub fn count(&self) -> u64 {
        self.sensor.count
    }

    /// The bytes of `packet`, decoded (empty when absent or not base64).
    pub fn packet_bytes(&self) -> Vec<u8> {
        self.packet
            .as_deref()
            .and_then(|text| BASE64.decode(text).ok())
            .unwrap_or_default()
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

impl TcpInfo {
    /// Suricata's `tcp` object for a 9-bit flags field (NS has no place in
    /// it: the `sensor.tcp_flags` letters carry it).
    pub fn from_flags(flags: u16) -> TcpInfo {
        let set = |bit: u16| (flags & bit != 0).then_some(true);
        TcpInfo {
            tcp_flags: format!("{:02x}", flags & 0xff),
            syn: set(tcp::SYN),
            fin: set(tcp::FIN),
            rst: set(tcp::RST),
            psh: set(tcp::PSH),
            ack: set(tcp::ACK),
            urg: set(tcp::URG),
            ecn: set(tcp::ECE),
            cwr: set(tcp::CWR),
        }
    }
}

impl HeaderFacts {
    pub fn from_meta(packet: &PacketMeta) -> HeaderFacts {
        // IPv6 has identification / offset / MF only in a fragment header.
        let has_fragment_fields = packet.ip_version == 4 || packet.has(flag::IPV6_FRAG_HEADER);
        HeaderFacts {
            length: packet.frame_len,
            ttl: packet.ttl,
            ip_id: has_fragment_fields.then_some(packet.ip_id),
            frag_offset: has_fragment_fields.then_some(u32::from(packet.frag_offset) * 8),
            more_fragments: has_fragment_fields.then_some(packet.has(flag::MORE_FRAGMENTS)),
            tcp_flags: packet
                .has(flag::HAS_TCP_FLAGS)
                .then(|| tcp_flag_letters(packet.tcp_flags)),
        }
    }
}

/// The line as JSON, without the trailing newline.
pub fn to_json_line(alert: &Alert) -> String {
    // Cannot fail: every field is a string, number, bool or list, and the
    // timestamp is formatted by hand.
    serde_json::to_string(alert).expect("an Alert always serializes")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use sensor_common::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

    use super::*;
    use crate::rules::Severity;
    use sensor_common::packet::{event, flag};
    use sensor_common::tables::kind;

    fn rule() -> RuleMeta {
        RuleMeta {
            id: 100001,
            gid: 1,
            rev: 1,
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

    /// Eight bytes stand for the frame: enough to check the encoding.
    fn frame() -> CapturedPacket {
        CapturedPacket::ethernet(b"\x00\x11\x22\x33\x44\x55\x66\x77")
    }

    fn no_frame() -> CapturedPacket {
        CapturedPacket::default()
    }

    fn contract_time() -> OffsetDateTime {
        // 2026-11-26T13:07:51.123456Z
        unix_ns_to_datetime(1_795_698_471_123_456_000)
    }

    #[test]
    fn matches_the_contract_example_byte_for_byte() {
        let line = Alert::new(&syn_fin_record(), &frame(), &rule(), 1, contract_time(), 0)
            .with_iface("eth0")
            .to_json_line();
        let expected = concat!(
            r#"{"timestamp":"2026-11-26T13:07:51.123456+0000","in_iface":"eth0","event_type":"alert","#,
            r#""vlan":[100],"src_ip":"10.1.2.3","src_port":4242,"dest_ip":"192.0.2.10","dest_port":80,"#,
            r#""proto":"TCP","ip_v":4,"community_id":"1:b+sY6ndt4B8Zs9IgltPHTPiVvR4=","#,
            r#""alert":{"action":"allowed","gid":1,"signature_id":100001,"rev":1,"#,
            r#""signature":"TCP SYN and FIN set","category":"tcp_flags","severity":2},"#,
            r#""tcp":{"tcp_flags":"03","syn":true,"fin":true},"#,
            r#""packet":"ABEiM0RVZnc=","packet_info":{"linktype":1},"#,
            r#""sensor":{"count":1,"length":60,"ttl":64,"ip_id":1234,"frag_offset":0,"#,
            r#""more_fragments":false,"tcp_flags":"FS"}}"#
        );
        assert_eq!(line, expected);
    }

    #[test]
    fn round_trips_through_json() {
        let alert = Alert::new(&syn_fin_record(), &frame(), &rule(), 7, contract_time(), 0)
            .with_pcap_cnt(3);
        let line = alert.to_json_line();
        let parsed = Alert::from_json(&line).unwrap();
        assert_eq!(parsed, alert);
        assert_eq!(parsed.count(), 7);
        assert_eq!(parsed.packet_bytes(), &*frame().bytes);
        assert!(
            line.contains(r#""pcap_cnt":3,"event_type":"alert""#),
            "{line}"
        );
    }

    #[test]
    fn leaves_out_what_the_packet_does_not_have() {
        // A non-first IPv4 fragment of UDP: no ports, no flags; untagged;
        // replay; frame capture off.
        let mut record = syn_fin_record();
        record.packet.flags = flag::FRAGMENT | flag::MORE_FRAGMENTS;
        record.packet.frag_offset = 185;
        record.packet.proto = PROTO_UDP;
        record.packet.vlan_count = 0;
        let line = Alert::new(&record, &no_frame(), &rule(), 1, contract_time(), 0).to_json_line();
        for absent in [
            "in_iface",
            "src_port",
            "dest_port",
            "tcp",
            "tcp_flags",
            "vlan",
            "pcap_cnt",
            "icmp_type",
            "packet",
            "packet_info",
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
    fn tcp_object_is_suricatas_and_letters_keep_order() {
        let mut record = syn_fin_record();
        record.packet.tcp_flags = 0;
        let alert = Alert::new(&record, &frame(), &rule(), 1, contract_time(), 0);
        assert_eq!(alert.sensor.header.tcp_flags.as_deref(), Some(""));
        let line = alert.to_json_line();
        assert!(line.contains(r#""tcp":{"tcp_flags":"00"}"#), "{line}");
        assert!(line.contains(r#""tcp_flags":"""#), "{line}");
        assert_eq!(tcp_flag_letters(0x1ff), "FSRPAUECN");
        assert_eq!(tcp_flag_letters(tcp::ACK | tcp::PSH), "PA");
        let all = TcpInfo::from_flags(0x1ff);
        assert_eq!(all.tcp_flags, "ff", "NS has no place in the byte");
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"tcp_flags":"ff","syn":true,"fin":true,"rst":true,"psh":true,"ack":true,"urg":true,"ecn":true,"cwr":true}"#
        );
        assert_eq!(TcpInfo::from_flags(tcp::SYN | tcp::ACK).tcp_flags, "12");
    }

    #[test]
    fn ipv6_icmp_and_fragment_fields() {
        let mut record = syn_fin_record();
        record.packet.ip_version = 6;
        record.packet.src_addr = "2001:db8:1::2".parse::<Ipv6Addr>().unwrap().octets();
        record.packet.dst_addr = "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets();
        record.packet.proto = PROTO_ICMPV6;
        record.packet.flags = flag::HAS_ICMP;
        record.packet.icmp_type = 128;
        let alert = Alert::new(&record, &frame(), &rule(), 1, contract_time(), 0);
        let line = alert.to_json_line();
        assert!(
            line.contains(
                r#""src_ip":"2001:db8:1::2","dest_ip":"2001:db8:1::1","proto":"IPv6-ICMP","ip_v":6,"icmp_type":128,"icmp_code":0"#
            ),
            "{line}"
        );
        // No fragment header: no identification, offset or MF to report.
        assert_eq!(
            (alert.sensor.header.ip_id, alert.sensor.header.frag_offset),
            (None, None)
        );

        record.packet.flags |= flag::IPV6_FRAG_HEADER | flag::FRAGMENT;
        record.packet.events = event::bit(event::FRAG_ATOMIC);
        let alert = Alert::new(&record, &frame(), &rule(), 1, contract_time(), 0);
        assert_eq!(alert.sensor.header.ip_id, Some(1234));
        assert_eq!(alert.sensor.header.more_fragments, Some(false));

        assert_eq!(proto_name(PROTO_ICMP), "ICMP");
        assert_eq!(proto_name(132), "132");
    }

    #[test]
    fn blocked_action_severity_gid_and_rev() {
        let mut record = syn_fin_record();
        record.action = outcome::BLOCKED;
        let mut meta = rule();
        meta.severity = Severity::Critical;
        meta.gid = 3;
        meta.rev = 7;
        let alert = Alert::new(&record, &frame(), &meta, 1, contract_time(), 0);
        let line = alert.to_json_line();
        assert!(
            line.contains(r#""alert":{"action":"blocked","gid":3,"signature_id":100001,"rev":7,"#),
            "{line}"
        );
        assert!(line.contains(r#""severity":1}"#), "{line}");
    }

    #[test]
    fn timestamp_is_suricatas_and_parses_other_offsets() {
        assert_eq!(
            eve_timestamp::format(unix_ns_to_datetime(0)),
            "1970-01-01T00:00:00.000000+0000"
        );
        let line =
            Alert::new(&syn_fin_record(), &frame(), &rule(), 1, contract_time(), 0).to_json_line();
        for other in [
            "2026-11-26T14:07:51.123456+0100",
            "2026-11-26T14:07:51.123456+01:00",
            "2026-11-26T13:07:51.123456Z",
        ] {
            let line = line.replace("2026-11-26T13:07:51.123456+0000", other);
            assert_eq!(
                Alert::from_json(&line).unwrap().timestamp,
                contract_time(),
                "{other}"
            );
        }
    }

    #[test]
    fn rejects_unknown_fields_and_wrong_event_types() {
        let line =
            Alert::new(&syn_fin_record(), &frame(), &rule(), 1, contract_time(), 0).to_json_line();
        assert!(Alert::from_json(&line.replace(r#""ip_v":4"#, r#""ip_v":4,"extra":2"#)).is_err());
        assert!(
            Alert::from_json(&line.replace(r#""event_type":"alert""#, r#""event_type":"flow""#))
                .is_err()
        );
    }
}
