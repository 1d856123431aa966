//! The primitives' tests as expressions, and the values they take (hosts,
//! networks, ports, protocol numbers, TCP flag letters), each checked with
//! its column.

use std::net::{IpAddr, Ipv4Addr};

use sensor_common::filter::{FilterOp, net_mask, op};
use sensor_common::packet::tcp;

use super::parser::*;
use super::*;

pub(super) fn proto_test(proto: u8) -> Expr {
    Expr::Test(FilterOp {
        code: op::PROTO,
        value: u32::from(proto),
        ..FilterOp::default()
    })
}

pub(super) fn version_test(version: u32) -> Expr {
    Expr::Test(FilterOp {
        code: op::IP_VERSION,
        value: version,
        ..FilterOp::default()
    })
}

pub(super) fn net_test(code: u8, addr: IpAddr, prefix_len: u8) -> Expr {
    let key = crate::rules::compile::addr_key(addr);
    Expr::Test(FilterOp {
        code,
        addr: key,
        net_mask: net_mask(prefix_len),
        ..FilterOp::default()
    })
}

pub(super) fn port_test(code: u8, port: u16) -> Expr {
    Expr::Test(FilterOp {
        code,
        value: u32::from(port),
        ..FilterOp::default()
    })
}

pub(super) fn flags_test(mask: u16, value: u16) -> Expr {
    Expr::Test(FilterOp {
        code: op::TCP_FLAGS,
        mask,
        value: u32::from(value),
        ..FilterOp::default()
    })
}

/// `(src X)`, `(dst X)`, either or both, for a pair of src/dst tests.
pub(super) fn directed(dir: Dir, src: Expr, dst: Expr) -> Expr {
    match dir {
        Dir::Src => src,
        Dir::Dst => dst,
        Dir::Either => Expr::or(src, dst),
        Dir::Both => Expr::and(src, dst),
    }
}

/// pcap-filter words this first version does not have, with a hint.
pub(super) fn unsupported(word: &str) -> Option<&'static str> {
    Some(match word {
        "ether" | "fddi" | "tr" | "wlan" | "arp" | "rarp" | "decnet" | "atalk" | "aarp" | "ipx"
        | "iso" | "stp" | "netbeui" | "lat" | "moprc" | "mopdl" | "sca" | "llc" | "mpls"
        | "pppoed" | "pppoes" | "geneve" | "vxlan" | "ifname" | "on" | "rnr" | "rulenum"
        | "reason" | "rset" | "srnr" | "subrulenum" | "action" | "type" | "subtype" | "dir"
        | "ra" | "ta" | "addr1" | "addr2" | "addr3" | "addr4" | "inbound" | "outbound"
        | "iso-proto" | "esis" | "isis" | "clnp" | "l1" | "l2" | "iih" | "lsp" | "snp" | "csnp"
        | "psnp" | "es-is" | "is-is" | "ah" | "esp" | "pim" | "vrrp" | "carp" | "igmp" | "igrp"
        | "sctp" | "ip6protochain" | "protochain" => {
            "the kernel filter tests IPv4/IPv6 fields only (use `proto N` for another IP protocol)"
        }
        "portrange" => "port ranges are not supported: combine `port N` tests with `or`",
        "less" | "greater" | "len" => "packet length tests are not supported",
        "gateway" | "broadcast" | "multicast" => {
            "link-layer and broadcast/multicast tests are not supported"
        }
        "mask" => "write the network as CIDR instead: `net 10.0.0.0/8`",
        _ => return None,
    })
}

/// `flags & mask == value`, or its negation restricted to TCP packets with
/// flags (as pcap's `tcp[13] & M != V` never matches a non-TCP packet).
pub(super) fn flags_relation(mask: u16, value: u16, negate: bool) -> Expr {
    if !negate {
        return flags_test(mask, value);
    }
    // One flag bit: `!= 0` is `== bit` and `!= bit` is `== 0`.
    if mask.count_ones() == 1 {
        return flags_test(mask, mask ^ value);
    }
    Expr::and(flags_test(0, 0), Expr::not(flags_test(mask, value)))
}

pub(super) fn flag_letters(text: &str, column: usize, empty_ok: bool) -> Result<u16, FilterError> {
    if text == "0" || (text.is_empty() && empty_ok) {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(FilterError::at(
            column,
            "expected flag letters (F S R P A U E C N)",
        ));
    }
    let mut bits = 0u16;
    for (i, c) in text.chars().enumerate() {
        let upper = c.to_ascii_uppercase();
        let Some((bit, _)) = tcp::LETTERS.iter().find(|(_, letter)| *letter == upper) else {
            return Err(FilterError::at(
                column + i,
                format!("`{c}` is not a TCP flag letter (F S R P A U E C N, or 0 for none)"),
            ));
        };
        bits |= bit;
    }
    Ok(bits)
}

/// Words that cannot be a value (so `host and` says what is missing).
pub(super) fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "and"
            | "or"
            | "not"
            | "host"
            | "net"
            | "port"
            | "src"
            | "dst"
            | "tcp"
            | "udp"
            | "icmp"
            | "icmp6"
            | "ip"
            | "ip6"
            | "vlan"
            | "proto"
            | "flags"
    )
}

/// The kind an unqualified value implies: an address is a host, a CIDR a net.
pub(super) fn classify(text: &str) -> Option<Kind> {
    if text.parse::<IpAddr>().is_ok() {
        Some(Kind::Host)
    } else if text
        .split_once('/')
        .is_some_and(|(a, p)| a.parse::<IpAddr>().is_ok() && p.parse::<u8>().is_ok())
    {
        Some(Kind::Net)
    } else {
        None
    }
}

/// Decimal, or hexadecimal with `0x`.
pub(super) fn parse_number(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x") {
        u32::from_str_radix(hex, 16).ok()
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

pub(super) fn build_value(q: Qualifiers, text: &str, column: usize) -> Result<Expr, FilterError> {
    let test = match q.kind {
        Kind::Host => {
            let addr = parse_host(text, column)?;
            let full = if addr.is_ipv4() { 32 } else { 128 };
            directed(
                q.dir,
                net_test(op::SRC_NET, addr, full),
                net_test(op::DST_NET, addr, full),
            )
        }
        Kind::Net => {
            let (addr, prefix) = parse_net(text, column)?;
            directed(
                q.dir,
                net_test(op::SRC_NET, addr, prefix),
                net_test(op::DST_NET, addr, prefix),
            )
        }
        Kind::Port => {
            let port = match parse_number(text) {
                Some(n) if n <= 65535 => n as u16,
                Some(_) => return Err(FilterError::at(column, "a port is 0-65535")),
                None => {
                    return Err(FilterError::at(
                        column,
                        format!("`{text}` is not a port number (service names are not looked up)"),
                    ));
                }
            };
            directed(
                q.dir,
                port_test(op::SRC_PORT, port),
                port_test(op::DST_PORT, port),
            )
        }
    };
    Ok(match q.proto {
        Some(proto) => Expr::and(proto.test(), test),
        None => test,
    })
}

pub(super) fn parse_host(text: &str, column: usize) -> Result<IpAddr, FilterError> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(addr);
    }
    if text.contains('/') {
        return Err(FilterError::at(
            column,
            format!("`host` takes one address; for a network write `net {text}`"),
        ));
    }
    Err(FilterError::at(
        column,
        format!("`{text}` is not an IPv4 or IPv6 address (host names are not resolved)"),
    ))
}

/// `A/len`, a whole address (a /32 or /128), or pcap's short IPv4 forms
/// (`10` = 10.0.0.0/8, `192.168` = /16, `192.168.1` = /24).
pub(super) fn parse_net(text: &str, column: usize) -> Result<(IpAddr, u8), FilterError> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = match addr_text.parse::<IpAddr>() {
        Ok(addr) => addr,
        Err(_) if prefix_text.is_none() => match short_ipv4(addr_text) {
            Some(net) => return Ok(net),
            None => {
                return Err(FilterError::at(
                    column,
                    format!("`{text}` is not a network (write it as CIDR, e.g. 10.0.0.0/8)"),
                ));
            }
        },
        Err(_) => {
            return Err(FilterError::at(
                column,
                format!("`{addr_text}` is not an IPv4 or IPv6 address"),
            ));
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                let prefix_column = column + addr_text.chars().count() + 1;
                return Err(FilterError::at(
                    prefix_column,
                    format!(
                        "the prefix length of an IPv{} network is 0-{max}",
                        if max == 32 { 4 } else { 6 }
                    ),
                ));
            }
        },
    };
    let network = network_of(addr, prefix);
    if network != addr {
        return Err(FilterError::at(
            column,
            format!("`{text}` has host bits set: did you mean {network}/{prefix}?"),
        ));
    }
    Ok((addr, prefix))
}

pub(super) fn short_ipv4(text: &str) -> Option<(IpAddr, u8)> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        octets[i] = part.parse().ok()?;
    }
    Some((IpAddr::V4(Ipv4Addr::from(octets)), (parts.len() * 8) as u8))
}

pub(super) fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    let mask = net_mask(prefix);
    match addr {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            for (byte, m) in o.iter_mut().zip(mask) {
                *byte &= m;
            }
            IpAddr::V4(o.into())
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            for (byte, m) in o.iter_mut().zip(mask) {
                *byte &= m;
            }
            IpAddr::V6(o.into())
        }
    }
}
