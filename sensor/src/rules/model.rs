//! A validated rule set, as plain data (no file positions except `origin`).

use ipnet::IpNet;
use sensor_common::packet::{event, tcp};

use crate::settings::Severity;

/// Every rule read from one rule path, in file order (files in name order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules that get a slot when compiled, in slot order.
    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Signature id, unique across the set.
    pub id: u32,
    /// Generator id (alert `gid`), 1 unless the rule says otherwise.
    pub gid: u32,
    /// Revision (alert `rev`), 1 unless the rule says otherwise.
    pub rev: u32,
    pub name: String,
    pub severity: Severity,
    pub action: Action,
    /// Drop rules only: overrides the configured block length (0: drop the
    /// packet without blocking its source).
    pub block_seconds: Option<u32>,
    pub enabled: bool,
    pub scope: Scope,
    pub matcher: Match,
    /// Where the rule was defined: `file:line`.
    pub origin: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    #[default]
    Alert,
    Drop,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Drop => "drop",
        }
    }
}

/// Conditions on the packet beyond the match; an empty list means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Source prefixes (host bits already cleared).
    pub src: Vec<IpNet>,
    pub dst: Vec<IpNet>,
    pub protocol: Protocol,
    pub dst_ports: Vec<u16>,
    /// TCP/UDP source ports (reflection: traffic from a service's port).
    pub src_ports: Vec<u16>,
    /// Outermost VLAN ids.
    pub vlan: Vec<u16>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Any => "any",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
        }
    }
}

/// A rule's match condition: exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Flags bits (see `sensor_common::packet::tcp`) that must be 1 / must be 0.
    TcpFlags {
        set: u16,
        clear: u16,
    },
    Ttl(TtlMatch),
    Fragment(FragmentMatch),
    SynFlood(SynFlood),
    Flood(Flood),
    Scan(Scan),
    Header(HeaderCheck),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlMatch {
    /// TTL / hop limit < N (N in 1..=255).
    Below(u8),
    /// TTL / hop limit > N (N in 0..=254).
    Above(u8),
    /// Hop count differs from the learned one by more than N (N in 0..=254).
    Deviation(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragmentMatch {
    /// First fragment carrying fewer than N bytes (N in 1..=256).
    TinyFirstBelow(u16),
    OffsetOne,
    Oversize,
    Atomic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynFlood {
    pub track: SynTrack,
    /// SYNs per window that raise the alert (≥ 1).
    pub threshold: u32,
    /// Window length in milliseconds (1..=3_600_000).
    pub window_ms: u32,
}

/// A `flood` rule: packets of one class per tracked address and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flood {
    pub packets: PacketClass,
    pub track: SynTrack,
    /// Packets per window that raise the alert; `None`: no packet threshold.
    pub threshold: Option<u32>,
    /// Bytes (frame lengths) per window that raise the alert; `None`: none.
    /// At least one of `threshold` and `bytes` is given, or `adaptive`.
    pub bytes: Option<u64>,
    /// A threshold learned per key instead of `threshold` / `bytes`.
    pub adaptive: Option<Adaptive>,
    /// Window length in milliseconds (1..=3_600_000).
    pub window_ms: u32,
}

/// A `scan` rule: distinct destination ports or hosts per source and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// `true`: distinct destination addresses (horizontal); `false`: ports.
    pub hosts: bool,
    /// Distinct values per window that raise the alert (1..=256).
    pub threshold: u32,
    /// Window length in milliseconds (1..=3_600_000).
    pub window_ms: u32,
}

/// `flood: { adaptive: { factor, min, learn_windows } }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adaptive {
    /// The factor × 256 (the factor has at most two decimals: exact).
    pub factor_256: u16,
    /// Packets a window must exceed whatever was learned (≥ 1).
    pub min: u32,
    /// K: about how many windows the learned normal averages (1..=1024).
    pub learn_windows: u16,
}

/// The packet classes a `flood` rule counts (`sensor_common::tables::flood_class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketClass {
    Syn,
    Ack,
    Rst,
    Fin,
    Udp,
    Icmp,
    Fragment,
    Any,
}

impl PacketClass {
    pub const ALL: [PacketClass; 8] = [
        PacketClass::Syn,
        PacketClass::Ack,
        PacketClass::Rst,
        PacketClass::Fin,
        PacketClass::Udp,
        PacketClass::Icmp,
        PacketClass::Fragment,
        PacketClass::Any,
    ];

    /// The name used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            PacketClass::Syn => "syn",
            PacketClass::Ack => "ack",
            PacketClass::Rst => "rst",
            PacketClass::Fin => "fin",
            PacketClass::Udp => "udp",
            PacketClass::Icmp => "icmp",
            PacketClass::Fragment => "fragment",
            PacketClass::Any => "any",
        }
    }

    /// Its bit number in the kernel tables.
    pub fn class(self) -> u32 {
        use sensor_common::tables::flood_class;
        match self {
            PacketClass::Syn => flood_class::SYN,
            PacketClass::Ack => flood_class::ACK,
            PacketClass::Rst => flood_class::RST,
            PacketClass::Fin => flood_class::FIN,
            PacketClass::Udp => flood_class::UDP,
            PacketClass::Icmp => flood_class::ICMP,
            PacketClass::Fragment => flood_class::FRAGMENT,
            PacketClass::Any => flood_class::ANY,
        }
    }

    /// What `sensor rules check` calls these packets.
    fn describe(self) -> &'static str {
        match self {
            PacketClass::Syn => "SYNs without ACK",
            PacketClass::Ack => "bare ACKs (no payload)",
            PacketClass::Rst => "RSTs",
            PacketClass::Fin => "FINs",
            PacketClass::Udp => "UDP packets",
            PacketClass::Icmp => "ICMP packets",
            PacketClass::Fragment => "fragments",
            PacketClass::Any => "IP packets",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynTrack {
    ByDst,
    BySrc,
}

impl SynTrack {
    pub fn name(self) -> &'static str {
        match self {
            SynTrack::ByDst => "by_dst",
            SynTrack::BySrc => "by_src",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderCheck {
    Land,
    BadIhl,
    BadTotalLength,
    BadTcpOffset,
    ZeroPort,
    MartianSrc,
    IpReservedBit,
    DfWithFragment,
    Ipv6RoutingType0,
    Ipv6DuplicateExtHeader,
    Ipv6HopByHopNotFirst,
    Ipv4SourceRoute,
    Ipv4OptionMalformed,
    TcpOptionMalformed,
}

impl HeaderCheck {
    pub const ALL: [HeaderCheck; 14] = [
        HeaderCheck::Land,
        HeaderCheck::BadIhl,
        HeaderCheck::BadTotalLength,
        HeaderCheck::BadTcpOffset,
        HeaderCheck::ZeroPort,
        HeaderCheck::MartianSrc,
        HeaderCheck::IpReservedBit,
        HeaderCheck::DfWithFragment,
        HeaderCheck::Ipv6RoutingType0,
        HeaderCheck::Ipv6DuplicateExtHeader,
        HeaderCheck::Ipv6HopByHopNotFirst,
        HeaderCheck::Ipv4SourceRoute,
        HeaderCheck::Ipv4OptionMalformed,
        HeaderCheck::TcpOptionMalformed,
    ];

    /// The name used in rule files.
    pub fn name(self) -> &'static str {
        match self {
            HeaderCheck::Land => "land",
            HeaderCheck::BadIhl => "bad_ihl",
            HeaderCheck::BadTotalLength => "bad_total_length",
            HeaderCheck::BadTcpOffset => "bad_tcp_offset",
            HeaderCheck::ZeroPort => "zero_port",
            HeaderCheck::MartianSrc => "martian_src",
            HeaderCheck::IpReservedBit => "ip_reserved_bit",
            HeaderCheck::DfWithFragment => "df_with_fragment",
            HeaderCheck::Ipv6RoutingType0 => "ipv6_routing_type0",
            HeaderCheck::Ipv6DuplicateExtHeader => "ipv6_duplicate_ext_header",
            HeaderCheck::Ipv6HopByHopNotFirst => "ipv6_hop_by_hop_not_first",
            HeaderCheck::Ipv4SourceRoute => "ipv4_source_route",
            HeaderCheck::Ipv4OptionMalformed => "ipv4_option_malformed",
            HeaderCheck::TcpOptionMalformed => "tcp_option_malformed",
        }
    }

    /// The decoder event that raises it.
    pub fn event(self) -> u8 {
        match self {
            HeaderCheck::Land => event::LAND,
            HeaderCheck::BadIhl => event::BAD_IHL,
            HeaderCheck::BadTotalLength => event::BAD_TOTAL_LENGTH,
            HeaderCheck::BadTcpOffset => event::BAD_TCP_OFFSET,
            HeaderCheck::ZeroPort => event::ZERO_PORT,
            HeaderCheck::MartianSrc => event::MARTIAN_SRC,
            HeaderCheck::IpReservedBit => event::IP_RESERVED_BIT,
            HeaderCheck::DfWithFragment => event::DF_WITH_FRAGMENT,
            HeaderCheck::Ipv6RoutingType0 => event::IPV6_ROUTING_TYPE0,
            HeaderCheck::Ipv6DuplicateExtHeader => event::IPV6_DUPLICATE_EXT_HEADER,
            HeaderCheck::Ipv6HopByHopNotFirst => event::IPV6_HOP_BY_HOP_NOT_FIRST,
            HeaderCheck::Ipv4SourceRoute => event::IPV4_SOURCE_ROUTE,
            HeaderCheck::Ipv4OptionMalformed => event::IPV4_OPTION_MALFORMED,
            HeaderCheck::TcpOptionMalformed => event::TCP_OPTION_MALFORMED,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            HeaderCheck::Land => "source address equals destination address",
            HeaderCheck::BadIhl => "IPv4 header length below 20 bytes",
            HeaderCheck::BadTotalLength => "IP length field disagrees with the bytes received",
            HeaderCheck::BadTcpOffset => "TCP data offset below 5 or beyond the packet",
            HeaderCheck::ZeroPort => "TCP/UDP port 0",
            HeaderCheck::MartianSrc => "source address that cannot appear on the wire",
            HeaderCheck::IpReservedBit => "IPv4 reserved flag set",
            HeaderCheck::DfWithFragment => "IPv4 don't-fragment set on a fragment",
            HeaderCheck::Ipv6RoutingType0 => "IPv6 routing header of type 0",
            HeaderCheck::Ipv6DuplicateExtHeader => {
                "IPv6 extension header more often than RFC 8200 allows"
            }
            HeaderCheck::Ipv6HopByHopNotFirst => "IPv6 hop-by-hop header not first",
            HeaderCheck::Ipv4SourceRoute => "IPv4 loose or strict source route option",
            HeaderCheck::Ipv4OptionMalformed => "IPv4 option length below 2 or past the header",
            HeaderCheck::TcpOptionMalformed => "TCP option length below 2 or past the header",
        }
    }
}

/// TCP flag names in rule files, with their bits, in header order.
pub const TCP_FLAG_NAMES: [(&str, u16); 9] = [
    ("FIN", tcp::FIN),
    ("SYN", tcp::SYN),
    ("RST", tcp::RST),
    ("PSH", tcp::PSH),
    ("ACK", tcp::ACK),
    ("URG", tcp::URG),
    ("ECE", tcp::ECE),
    ("CWR", tcp::CWR),
    ("NS", tcp::NS),
];

/// `bits` as flag names joined by commas: `SYN,FIN` style, header order.
pub fn flag_names(bits: u16) -> String {
    TCP_FLAG_NAMES
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

impl Match {
    /// The alert `category`.
    pub fn category(&self) -> &'static str {
        match self {
            Match::TcpFlags { .. } => "tcp_flags",
            Match::Ttl(_) => "ttl",
            Match::Fragment(_) => "fragment",
            Match::SynFlood(_) => "syn_flood",
            Match::Flood(_) => "flood",
            Match::Scan(_) => "scan",
            Match::Header(_) => "header",
        }
    }

    /// One line saying what the rule matches.
    pub fn describe(&self) -> String {
        match *self {
            Match::TcpFlags { set, clear } => match (set, clear) {
                (set, 0) => format!("{} set", flag_names(set)),
                (0, clear) => format!("{} clear", flag_names(clear)),
                (set, clear) => format!("{} set, {} clear", flag_names(set), flag_names(clear)),
            },
            Match::Ttl(TtlMatch::Below(n)) => format!("TTL/hop limit below {n}"),
            Match::Ttl(TtlMatch::Above(n)) => format!("TTL/hop limit above {n}"),
            Match::Ttl(TtlMatch::Deviation(n)) => {
                format!("hop count differs by more than {n} from the source's learned one")
            }
            Match::Fragment(FragmentMatch::TinyFirstBelow(n)) => {
                format!("first fragment carrying fewer than {n} bytes")
            }
            Match::Fragment(FragmentMatch::OffsetOne) => {
                "IPv4 TCP fragment at offset 1 (8 bytes)".into()
            }
            Match::Fragment(FragmentMatch::Oversize) => {
                "fragment reaching beyond 65535 bytes".into()
            }
            Match::Fragment(FragmentMatch::Atomic) => "IPv6 atomic fragment".into(),
            Match::SynFlood(SynFlood {
                track,
                threshold,
                window_ms,
            }) => {
                let whom = match track {
                    SynTrack::ByDst => "to one destination",
                    SynTrack::BySrc => "from one source",
                };
                format!("{threshold}+ SYNs without ACK {whom} within {window_ms} ms")
            }
            Match::Flood(Flood {
                packets,
                track,
                threshold,
                bytes,
                window_ms,
                adaptive,
            }) => {
                let whom = match track {
                    SynTrack::ByDst => "to one destination",
                    SynTrack::BySrc => "from one source",
                };
                if let Some(a) = adaptive {
                    return format!(
                        "{} {whom} within {window_ms} ms above max({}, {:.2} x the learned normal over ~{} windows)",
                        packets.describe(),
                        a.min,
                        f64::from(a.factor_256) / 256.0,
                        a.learn_windows
                    );
                }
                let how_many = match (threshold, bytes) {
                    (Some(n), Some(b)) => {
                        format!("{n}+ {} or {b}+ bytes of them", packets.describe())
                    }
                    (Some(n), None) => format!("{n}+ {}", packets.describe()),
                    (None, b) => format!("{}+ bytes of {}", b.unwrap_or(0), packets.describe()),
                };
                format!("{how_many} {whom} within {window_ms} ms")
            }
            Match::Scan(Scan {
                hosts,
                threshold,
                window_ms,
            }) => {
                let what = if hosts {
                    "destination addresses"
                } else {
                    "destination ports"
                };
                format!("{threshold}+ distinct {what} from one source within {window_ms} ms")
            }
            Match::Header(check) => format!("{} ({})", check.describe(), check.name()),
        }
    }
}

impl Scope {
    /// One line listing the scope's conditions, or `any`.
    pub fn describe(&self) -> String {
        let join = |items: Vec<String>| items.join(",");
        let mut parts = Vec::new();
        if self.protocol != Protocol::Any {
            parts.push(self.protocol.name().to_owned());
        }
        if !self.src.is_empty() {
            parts.push(format!(
                "src {}",
                join(self.src.iter().map(|n| n.to_string()).collect())
            ));
        }
        if !self.dst.is_empty() {
            parts.push(format!(
                "dst {}",
                join(self.dst.iter().map(|n| n.to_string()).collect())
            ));
        }
        if !self.dst_ports.is_empty() {
            parts.push(format!(
                "dst ports {}",
                join(self.dst_ports.iter().map(|p| p.to_string()).collect())
            ));
        }
        if !self.src_ports.is_empty() {
            parts.push(format!(
                "src ports {}",
                join(self.src_ports.iter().map(|p| p.to_string()).collect())
            ));
        }
        if !self.vlan.is_empty() {
            parts.push(format!(
                "vlan {}",
                join(self.vlan.iter().map(|v| v.to_string()).collect())
            ));
        }
        if parts.is_empty() {
            "any".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

impl Rule {
    /// `100001  high     tcp_flags  NAME — WHAT; scope: ...` (action not included).
    pub fn describe(&self) -> String {
        format!(
            "{:<7} {:<8} {:<10} {} — {}; scope: {}",
            self.id,
            self.severity.name(),
            self.matcher.category(),
            self.name,
            self.matcher.describe(),
            self.scope.describe()
        )
    }
}
