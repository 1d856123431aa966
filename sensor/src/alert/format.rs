//! Formatting helpers the alert line shares with inspect's output and the
//! syslog sink: addresses, protocol names, TCP flag letters, VLAN ids and
//! the two timestamp formats, tunnel type names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use time::OffsetDateTime;

use sensor_common::packet::{
    MAX_VLAN_TAGS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, tcp, tunnel,
};

/// The VLAN ids of `packet`, outermost first; `None` when untagged.
pub fn vlan_ids(packet: &PacketMeta) -> Option<Vec<u16>> {
    let vlan_count = (packet.vlan_count as usize).min(MAX_VLAN_TAGS);
    (vlan_count > 0).then(|| packet.vlan[..vlan_count].to_vec())
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

/// The contract's `tunnel.type` for a `Tunnel::kind`; `None` for a
/// packet found in no tunnel.
pub fn tunnel_name(kind: u8) -> Option<&'static str> {
    match kind {
        tunnel::VXLAN => Some("vxlan"),
        tunnel::GENEVE => Some("geneve"),
        tunnel::GRE => Some("gre"),
        tunnel::ERSPAN => Some("erspan"),
        tunnel::IPIP => Some("ipip"),
        _ => None,
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

/// `timestamp` as Suricata's EVE writes it: UTC with six fractional digits
/// and a numeric offset, "2026-11-26T13:07:51.123456+0000".
pub mod eve_timestamp {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;

    pub fn format(timestamp: OffsetDateTime) -> String {
        let mut text = super::rfc3339_micros::format(timestamp);
        text.pop(); // the 'Z'
        text.push_str("+0000");
        text
    }

    pub fn serialize<S: Serializer>(
        timestamp: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*timestamp))
    }

    /// Accepts Suricata's form with any offset, and RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let eve = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
        );
        OffsetDateTime::parse(&text, eve)
            .or_else(|_| OffsetDateTime::parse(&text, &Rfc3339))
            .map_err(D::Error::custom)
    }
}

/// RFC 3339 in UTC with exactly six fractional digits
/// ("2026-11-26T13:07:51.123456Z"): syslog headers and `sensor inspect`.
pub mod rfc3339_micros {
    use serde::Serializer;
    use time::OffsetDateTime;

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

    /// Accepts RFC 3339 (and Suricata's numeric-offset form).
    pub use super::eve_timestamp::deserialize;
}

/// The alert's `sensor.block` for an [`sensor_common::alert::block`] value (`None`: absent).
pub fn block_name(value: u8) -> Option<&'static str> {
    match value {
        sensor_common::alert::block::BLOCKED => Some("blocked"),
        sensor_common::alert::block::NOT_PROVEN => Some("not_proven"),
        sensor_common::alert::block::NOT_REPEATED => Some("not_repeated"),
        sensor_common::alert::block::DRY_RUN => Some("dry_run"),
        sensor_common::alert::block::DROP_ONLY => Some("drop_only"),
        _ => None,
    }
}
