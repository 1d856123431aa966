//! One line per inspected packet: text (like `tcpdump -nn -v`, fields
//! documented in `docs/inspect.md`) or JSON (field names shared with the
//! alert lines' `packet` object).

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use sensor_common::packet::{MAX_VLAN_TAGS, PacketMeta, flag};

use crate::alert::{
    HeaderFacts, TunnelInfo, ip_addr, proto_name, rfc3339_micros, tcp_flag_letters, vlan_ids,
};

/// A packet line in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacketLine {
    #[serde(with = "rfc3339_micros")]
    pub timestamp: OffsetDateTime,
    /// Always `packet`.
    pub event_type: String,
    pub iface: String,
    pub src_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// `TCP`, `UDP`, `ICMP`, `IPv6-ICMP`, or the protocol number.
    pub proto: String,
    /// The outer packet when this one was found in a tunnel: the alert
    /// line's `tunnel` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelInfo>,
    pub packet: PacketFields,
}

/// The `packet` object: the IP version, the header facts of the alert's
/// `sensor` object (the same struct, so the same names and meanings), the
/// VLAN ids, then what only inspect shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketFields {
    pub ip_version: u8,
    #[serde(flatten)]
    pub header: HeaderFacts,
    /// VLAN ids, outermost first; absent when untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<Vec<u16>>,
    /// IPv4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dont_fragment: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_seq: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_window: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
}

/// Whether the packet has identification / offset / MF fields (IPv6 only
/// in a fragment header).
fn has_fragment_fields(meta: &PacketMeta) -> bool {
    meta.ip_version == 4 || meta.has(flag::IPV6_FRAG_HEADER)
}

fn vlans(meta: &PacketMeta) -> &[u16] {
    &meta.vlan[..(meta.vlan_count as usize).min(MAX_VLAN_TAGS)]
}

impl PacketLine {
    pub fn new(meta: &PacketMeta, iface: &str, timestamp: OffsetDateTime) -> PacketLine {
        let has_ports = meta.has(flag::HAS_PORTS);
        let has_tcp = meta.has(flag::HAS_TCP_FLAGS);
        let has_icmp = meta.has(flag::HAS_ICMP);
        PacketLine {
            timestamp,
            event_type: "packet".to_owned(),
            iface: iface.to_owned(),
            src_ip: ip_addr(meta.ip_version, &meta.src_addr),
            src_port: has_ports.then_some(meta.src_port),
            dest_ip: ip_addr(meta.ip_version, &meta.dst_addr),
            dest_port: has_ports.then_some(meta.dst_port),
            proto: proto_name(meta.proto),
            tunnel: TunnelInfo::from_meta(meta),
            packet: PacketFields {
                ip_version: meta.ip_version,
                header: HeaderFacts::from_meta(meta),
                vlan: vlan_ids(meta),
                dont_fragment: (meta.ip_version == 4).then_some(meta.has(flag::DONT_FRAGMENT)),
                tcp_seq: has_tcp.then_some(meta.tcp_seq),
                tcp_window: has_tcp.then_some(meta.tcp_window),
                icmp_type: has_icmp.then_some(meta.icmp_type),
                icmp_code: has_icmp.then_some(meta.icmp_code),
            },
        }
    }

    /// The line as JSON, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a PacketLine always serializes")
    }
}

/// The text line, after `time` (the local time of day, see [`time_of_day`]):
///
/// `TIME [vlan ID[,ID..]] [TUNNEL OUTER_SRC[.PORT] > OUTER_DST[.PORT]
/// [vni|key|session N]:] IPv4|IPv6 SRC[.PORT] > DST[.PORT]: PROTO
/// [[FLAGS] seq N win N] [type N code N] ttl|hlim N [id N off N [MF] [DF]] len N`
///
/// A tunnel's inner packet shows both layers: the outer packet first
/// (`vxlan 192.0.2.1.51000 > 192.0.2.2.4789 vni 42:`), then the inner one.
pub fn text_line(meta: &PacketMeta, time: &str) -> String {
    let mut line = String::with_capacity(160);
    line.push_str(time);
    let vlan = vlans(meta);
    if !vlan.is_empty() {
        let ids: Vec<String> = vlan.iter().map(u16::to_string).collect();
        let _ = write!(line, " vlan {}", ids.join(","));
    }
    if let Some(outer) = TunnelInfo::from_meta(meta) {
        let _ = write!(line, " {} {}", outer.kind, outer.src_ip);
        if let Some(port) = outer.src_port {
            let _ = write!(line, ".{port}");
        }
        let _ = write!(line, " > {}", outer.dest_ip);
        if let Some(port) = outer.dest_port {
            let _ = write!(line, ".{port}");
        }
        let id = [
            ("vni", outer.vni),
            ("key", outer.gre_key),
            ("session", outer.erspan_session_id),
        ];
        for (name, value) in id {
            if let Some(value) = value {
                let _ = write!(line, " {name} {value}");
            }
        }
        line.push(':');
    }
    let _ = write!(line, " IPv{}", meta.ip_version);
    let src = ip_addr(meta.ip_version, &meta.src_addr);
    let dst = ip_addr(meta.ip_version, &meta.dst_addr);
    if meta.has(flag::HAS_PORTS) {
        let _ = write!(line, " {src}.{} > {dst}.{}:", meta.src_port, meta.dst_port);
    } else {
        let _ = write!(line, " {src} > {dst}:");
    }
    let _ = write!(line, " {}", proto_name(meta.proto));
    if meta.has(flag::HAS_TCP_FLAGS) {
        let _ = write!(
            line,
            " [{}] seq {} win {}",
            tcp_flag_letters(meta.tcp_flags),
            meta.tcp_seq,
            meta.tcp_window
        );
    }
    if meta.has(flag::HAS_ICMP) {
        let _ = write!(line, " type {} code {}", meta.icmp_type, meta.icmp_code);
    }
    let ttl_name = if meta.ip_version == 6 { "hlim" } else { "ttl" };
    let _ = write!(line, " {ttl_name} {}", meta.ttl);
    if has_fragment_fields(meta) {
        let _ = write!(
            line,
            " id {} off {}",
            meta.ip_id,
            u32::from(meta.frag_offset) * 8
        );
        if meta.has(flag::MORE_FRAGMENTS) {
            line.push_str(" MF");
        }
        if meta.has(flag::DONT_FRAGMENT) {
            line.push_str(" DF");
        }
    }
    let _ = write!(line, " len {}", meta.frame_len);
    line
}

/// `HH:MM:SS.uuuuuu` in the local time zone (as tcpdump prints it).
pub fn time_of_day(unix_ns: u64) -> String {
    let secs = (unix_ns / 1_000_000_000) as libc::time_t;
    let micros = (unix_ns % 1_000_000_000) / 1_000;
    // SAFETY: libc::tm is plain integers (and a nullable pointer): all
    // zeros is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `secs` and writes only into `tm`, which we
    // own; both outlive the call.
    let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
    if !ok {
        let day = unix_ns / 1_000_000_000 % 86_400;
        return format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            day / 3600,
            day / 60 % 60,
            day % 60
        );
    }
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::unix_ns_to_datetime;
    use crate::testing::frames::{self, Ipv4, flags};
    use sensor_common::parse::parse_ethernet;

    const A: [u8; 4] = [198, 51, 100, 7];
    const B: [u8; 4] = [192, 0, 2, 10];

    fn meta(frame: &[u8]) -> PacketMeta {
        parse_ethernet(frame)
    }

    #[test]
    fn tcp_text_line_has_every_promised_field() {
        let frame = frames::ethernet(
            &[(frames::TPID_8021Q, 100)],
            frames::ETH_IPV4,
            &Ipv4::new(A, B, 6).build(&frames::tcp(41000, 80, flags::SYN | flags::FIN, 1000, &[])),
        );
        assert_eq!(
            text_line(&meta(&frame), "14:07:51.123456"),
            "14:07:51.123456 vlan 100 IPv4 198.51.100.7.41000 > 192.0.2.10.80: TCP [FS] \
             seq 1000 win 64240 ttl 64 id 4660 off 0 len 58"
        );
    }

    #[test]
    fn tunnel_lines_show_both_layers() {
        use crate::testing::frames::tunnel;
        let inner = Ipv4::new(A, B, 6).build(&frames::tcp(41000, 80, flags::SYN, 1, &[]));
        let outer = |proto, payload: &[u8]| {
            let packet = Ipv4::new([203, 0, 113, 1], [203, 0, 113, 2], proto).build(payload);
            frames::ethernet(&[(frames::TPID_8021Q, 7)], frames::ETH_IPV4, &packet)
        };
        let inner_frame = frames::ethernet(&[(frames::TPID_8021Q, 300)], frames::ETH_IPV4, &inner);
        let vxlan = outer(
            17,
            &frames::udp(51515, 4789, &tunnel::vxlan(8, 42, &inner_frame)),
        );
        assert_eq!(
            text_line(&meta(&vxlan), "T"),
            format!(
                "T vlan 7,300 vxlan 203.0.113.1.51515 > 203.0.113.2.4789 vni 42: IPv4 \
                 198.51.100.7.41000 > 192.0.2.10.80: TCP [S] seq 1 win 64240 ttl 64 id 4660 \
                 off 0 len {}",
                vxlan.len()
            )
        );
        let gre = outer(
            47,
            &tunnel::gre(tunnel::GRE_KEY, frames::ETH_IPV4, 9, &inner),
        );
        let line = text_line(&meta(&gre), "T");
        assert!(
            line.starts_with(
                "T vlan 7 gre 203.0.113.1 > 203.0.113.2 key 9: IPv4 198.51.100.7.41000"
            ),
            "{line}"
        );
        let json = PacketLine::new(&meta(&gre), "eth0", unix_ns_to_datetime(0)).to_json_line();
        assert!(
            json.contains(r#""tunnel":{"src_ip":"203.0.113.1","dest_ip":"203.0.113.2","proto":"47","depth":1,"type":"gre","gre_key":9}"#),
            "{json}"
        );
    }

    #[test]
    fn fragments_icmp_ipv6_and_qinq() {
        let udp = frames::udp(53000, 53, &[0u8; 40]);
        let pieces: Vec<Vec<u8>> = frames::ipv4_fragments(&Ipv4::new(A, B, 17), &udp, 24)
            .iter()
            .map(|p| frames::ethernet(&[], frames::ETH_IPV4, p))
            .collect();
        assert_eq!(
            text_line(&meta(&pieces[0]), "T"),
            "T IPv4 198.51.100.7.53000 > 192.0.2.10.53: UDP ttl 64 id 4660 off 0 MF len 58"
        );
        assert_eq!(
            text_line(&meta(&pieces[1]), "T"),
            "T IPv4 198.51.100.7 > 192.0.2.10: UDP ttl 64 id 4660 off 24 len 58"
        );
        let df = frames::ethernet(
            &[(frames::TPID_8021AD, 10), (frames::TPID_8021Q, 20)],
            frames::ETH_IPV4,
            &Ipv4::new(A, B, 1)
                .frag(0x4000)
                .ttl(3)
                .build(&frames::icmp_echo(8, 1, 1)),
        );
        assert_eq!(
            text_line(&meta(&df), "T"),
            "T vlan 10,20 IPv4 198.51.100.7 > 192.0.2.10: ICMP type 8 code 0 ttl 3 id 4660 \
             off 0 DF len 66"
        );
        let v6 = frames::ethernet(
            &[],
            frames::ETH_IPV6,
            &frames::ipv6(
                frames::doc_v6(2),
                frames::doc_v6(1),
                255,
                6,
                &frames::tcp(443, 50000, flags::ACK, 7, &[]),
            ),
        );
        assert_eq!(
            text_line(&meta(&v6), "T"),
            "T IPv6 2001:db8::2.443 > 2001:db8::1.50000: TCP [A] seq 7 win 64240 hlim 255 len 74"
        );
        let null = frames::ipv4_tcp(A, B, 1, 2, 0);
        assert!(text_line(&meta(&null), "T").contains("TCP [] seq 1000"));
    }

    #[test]
    fn json_line_shares_the_alert_field_names() {
        let frame = frames::ethernet(
            &[(frames::TPID_8021Q, 100)],
            frames::ETH_IPV4,
            &Ipv4::new(A, B, 6).build(&frames::tcp(41000, 80, flags::SYN | flags::FIN, 1000, &[])),
        );
        let line = PacketLine::new(
            &meta(&frame),
            "eth0",
            unix_ns_to_datetime(1_795_698_471_123_456_000),
        )
        .to_json_line();
        assert_eq!(
            line,
            concat!(
                r#"{"timestamp":"2026-11-26T13:07:51.123456Z","event_type":"packet","iface":"eth0","#,
                r#""src_ip":"198.51.100.7","src_port":41000,"dest_ip":"192.0.2.10","dest_port":80,"#,
                r#""proto":"TCP","packet":{"ip_version":4,"length":58,"ttl":64,"ip_id":4660,"#,
                r#""frag_offset":0,"more_fragments":false,"tcp_flags":"FS","vlan":[100],"#,
                r#""dont_fragment":false,"tcp_seq":1000,"tcp_window":64240}}"#
            )
        );
        let parsed: PacketLine = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed.to_json_line(), line);
    }

    #[test]
    fn json_leaves_out_what_the_packet_lacks() {
        let v6 = frames::ethernet(
            &[],
            frames::ETH_IPV6,
            &frames::ipv6(
                frames::doc_v6(2),
                frames::doc_v6(1),
                64,
                58,
                &frames::icmp_echo(128, 1, 1),
            ),
        );
        let line = PacketLine::new(&meta(&v6), "veth0", unix_ns_to_datetime(0)).to_json_line();
        for absent in [
            "src_port",
            "dest_port",
            "ip_id",
            "frag_offset",
            "more_fragments",
            "tcp_flags",
            "vlan",
            "dont_fragment",
            "tcp_seq",
            "tcp_window",
        ] {
            assert!(
                !line.contains(&format!("\"{absent}\":")),
                "{absent} in {line}"
            );
        }
        assert!(line.contains(r#""proto":"IPv6-ICMP""#), "{line}");
        assert!(line.contains(r#""icmp_type":128,"icmp_code":0"#), "{line}");
    }

    #[test]
    fn time_of_day_is_hours_to_microseconds() {
        let text = time_of_day(1_795_698_471_123_456_789);
        assert_eq!(text.len(), "13:07:51.123456".len(), "{text}");
        assert!(text.ends_with(":51.123456"), "{text}");
    }
}
