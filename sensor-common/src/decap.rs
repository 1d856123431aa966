//! Tunnels (docs/CONTRACT.md section 3, *Tunnels*): which encapsulations
//! are decapsulated ([`DecapConfig`], the `decap:` key), and recognising one
//! in a parsed outer packet: [`tunnel_candidate`] says which tunnel to look
//! for, [`open_tunnel`] records its facts in [`PacketMeta::tunnel`] and
//! says where the inner packet starts. The
//! parser (`parse`) then runs its same link / IP / transport steps again
//! from there, so the inner packet is parsed by the very code that parsed
//! the outer one.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::bytes::MAX_PARSE_OFFSET;
use crate::bytes::PacketBytes;
use crate::packet::{PROTO_UDP, PacketMeta, flag, tunnel};
use crate::parse::{ETH_P_IPV4, ETH_P_IPV6};

/// UDP destination ports per tunnel type (`decap.vxlan_ports`,
/// `decap.geneve_ports`); 0 marks an unused slot.
pub const MAX_DECAP_PORTS: usize = 4;
/// VXLAN's IANA port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// GENEVE's IANA port (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

/// Transparent Ethernet Bridging: an Ethernet frame follows. The parser
/// also uses it as the "ethertype" of a frame that starts with Ethernet.
pub const ETH_P_TEB: u16 = 0x6558;
/// GRE protocol type of ERSPAN type II.
pub const ETH_P_ERSPAN2: u16 = 0x88be;
/// GRE protocol type of ERSPAN type III.
pub const ETH_P_ERSPAN3: u16 = 0x22eb;

pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6_IN_IP: u8 = 41;
pub const PROTO_GRE: u8 = 47;

const UDP_HEADER: usize = 8;
const VXLAN_HEADER: usize = 8;
/// VXLAN's I flag: the VNI is valid (RFC 7348 section 5).
const VXLAN_FLAG_I: u8 = 0x08;
const GENEVE_HEADER: usize = 8;
const GRE_HEADER: usize = 4;
/// GRE flag bits (RFC 2784 / 2890) in the first 16 bits.
const GRE_CHECKSUM: u16 = 0x8000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQUENCE: u16 = 0x1000;
/// Bits 1, 4 and 5, which RFC 2784 says a receiver must discard a packet
/// for (RFC 1701's routing, strict source route, recursion), and the
/// version (0 only; version 1 is PPTP's enhanced GRE).
const GRE_REJECT: u16 = 0x4000 | 0x0800 | 0x0400 | 0x0007;
const ERSPAN2_HEADER: usize = 8;
const ERSPAN3_HEADER: usize = 12;
/// ERSPAN type III's optional platform-specific subheader (O bit).
const ERSPAN3_SUBHEADER: usize = 8;

/// The `decap:` configuration, as the kernel's `CONFIG` map holds it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DecapConfig {
    /// VXLAN's UDP destination ports (0: unused slot).
    pub vxlan_ports: [u16; MAX_DECAP_PORTS],
    /// GENEVE's UDP destination ports (0: unused slot).
    pub geneve_ports: [u16; MAX_DECAP_PORTS],
    /// 1: decapsulate; 0: judge every frame on its outermost packet.
    pub enabled: u8,
    pub _pad: u8,
}

impl DecapConfig {
    /// The contract's default: on, VXLAN on 4789, GENEVE on 6081.
    pub const DEFAULT: DecapConfig = DecapConfig {
        vxlan_ports: [VXLAN_PORT, 0, 0, 0],
        geneve_ports: [GENEVE_PORT, 0, 0, 0],
        enabled: 1,
        _pad: 0,
    };
    /// Decapsulation off.
    pub const OFF: DecapConfig = DecapConfig {
        vxlan_ports: [0; MAX_DECAP_PORTS],
        geneve_ports: [0; MAX_DECAP_PORTS],
        enabled: 0,
        _pad: 0,
    };
}

#[inline(always)]
fn listed(ports: &[u16; MAX_DECAP_PORTS], port: u16) -> bool {
    port != 0 && (ports[0] == port || ports[1] == port || ports[2] == port || ports[3] == port)
}

/// What [`tunnel_candidate`] found a packet may carry: the tunnel to look
/// for in it ([`open_tunnel`]). The kernel decides it in one program and
/// opens the tunnel in the next, so the decision is made once.
pub mod candidate {
    /// Nothing to decapsulate.
    pub const NONE: u8 = 0;
    /// UDP to a `decap.vxlan_ports` port.
    pub const VXLAN: u8 = 1;
    /// UDP to a `decap.geneve_ports` port (and to no VXLAN port).
    pub const GENEVE: u8 = 2;
    pub const GRE: u8 = 3;
    /// IP protocol 4: IPv4 inside.
    pub const IPV4_IN_IP: u8 = 4;
    /// IP protocol 41: IPv6 inside.
    pub const IPV6_IN_IP: u8 = 5;
}

/// Whether the outer packet in `meta` (its transport header at `l4`, its
/// IP packet ending at `ip_end`) carries the tunnel `candidate` names (as
/// [`tunnel_candidate`] returned for `meta`; [`candidate::NONE`]: none).
/// If so, writes the tunnel's facts into `meta.tunnel` and returns the
/// inner packet's ethertype ([`ETH_P_TEB`] for an Ethernet frame) and
/// offset.
#[inline(always)]
pub fn open_tunnel<B: PacketBytes + ?Sized>(
    bytes: &B,
    candidate: u8,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
) -> Option<(u16, usize)> {
    let (kind, ethertype, inner) = match candidate {
        candidate::VXLAN => vxlan_tunnel(bytes, l4, ip_end, meta)?,
        candidate::GENEVE => geneve_tunnel(bytes, l4, ip_end, meta)?,
        candidate::GRE => gre_tunnel(bytes, l4, ip_end, meta)?,
        candidate::IPV4_IN_IP => (tunnel::IPIP, ETH_P_IPV4, l4),
        candidate::IPV6_IN_IP => (tunnel::IPIP, ETH_P_IPV6, l4),
        _ => return None,
    };
    if inner >= ip_end {
        // No inner packet inside the outer one.
        meta.clear_tunnel();
        return None;
    }
    meta.tunnel.kind = kind;
    meta.tunnel.ip_version = meta.ip_version;
    meta.tunnel.proto = meta.proto;
    meta.tunnel.src_addr = meta.src_addr;
    meta.tunnel.dst_addr = meta.dst_addr;
    Some((ethertype, inner))
}

/// Whether an IP packet's upper-layer protocol can carry a tunnel this
/// parser opens (UDP: VXLAN, GENEVE; GRE; IP-in-IP): a look at one byte,
/// which the kernel takes before any other.
#[inline(always)]
pub const fn tunnel_protocol(proto: u8) -> bool {
    matches!(proto, PROTO_UDP | PROTO_GRE | PROTO_IPIP | PROTO_IPV6_IN_IP)
}

/// The cheap first look, before [`open_tunnel`]: which tunnel the packet
/// could carry ([`candidate`]), or [`candidate::NONE`] when there is
/// nothing to decapsulate (decapsulation off, not IP-in-IP, GRE, or UDP to
/// a VXLAN / GENEVE port; or a fragment, or an outer packet on which any
/// `header` check fired: those are judged on their outer packet alone).
/// The kernel asks it before handing the packet to the program that looks
/// further, so other packets cost no more than this.
#[inline(always)]
pub fn tunnel_candidate(meta: &PacketMeta, decap: &DecapConfig) -> u8 {
    if decap.enabled == 0 || meta.events != 0 || meta.has(flag::FRAGMENT) {
        return candidate::NONE;
    }
    match meta.proto {
        PROTO_GRE => candidate::GRE,
        PROTO_IPIP => candidate::IPV4_IN_IP,
        PROTO_IPV6_IN_IP => candidate::IPV6_IN_IP,
        PROTO_UDP if meta.has(flag::HAS_PORTS) => {
            if listed(&decap.vxlan_ports, meta.dst_port) {
                candidate::VXLAN
            } else if listed(&decap.geneve_ports, meta.dst_port) {
                candidate::GENEVE
            } else {
                candidate::NONE
            }
        }
        _ => candidate::NONE,
    }
}

/// VXLAN (RFC 7348): the I flag set, then an Ethernet frame.
#[inline(always)]
fn vxlan_tunnel<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
) -> Option<(u8, u16, usize)> {
    let header = l4 + UDP_HEADER;
    if ip_end < header + VXLAN_HEADER || bytes.u8_at(header)? & VXLAN_FLAG_I == 0 {
        return None;
    }
    // The VNI: the 24 bits after the flags word.
    record_udp_tunnel(meta, bytes.be32_at(header + 4)? >> 8);
    Some((tunnel::VXLAN, ETH_P_TEB, header + VXLAN_HEADER))
}

/// GENEVE (RFC 8926): version 0, options skipped by their length, then
/// the protocol type says what follows.
#[inline(always)]
fn geneve_tunnel<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
) -> Option<(u8, u16, usize)> {
    let header = l4 + UDP_HEADER;
    if ip_end < header + GENEVE_HEADER {
        return None;
    }
    let word = bytes.load::<[u8; GENEVE_HEADER]>(header)?;
    // Version (2 bits) and the options' length in 4-byte words.
    if word[0] >> 6 != 0 {
        return None;
    }
    let options = ((word[0] & 0x3f) as usize) * 4;
    let ethertype = u16::from_be_bytes([word[2], word[3]]);
    if !matches!(ethertype, ETH_P_TEB | ETH_P_IPV4 | ETH_P_IPV6) {
        return None;
    }
    record_udp_tunnel(meta, u32::from_be_bytes([0, word[4], word[5], word[6]]));
    Some((tunnel::GENEVE, ethertype, header + GENEVE_HEADER + options))
}

/// A VXLAN / GENEVE tunnel's network identifier and UDP ports.
#[inline(always)]
fn record_udp_tunnel(meta: &mut PacketMeta, vni: u32) {
    meta.tunnel.id = vni;
    meta.tunnel.has_id = 1;
    meta.tunnel.src_port = meta.src_port;
    meta.tunnel.dst_port = meta.dst_port;
}

/// GRE version 0 carrying IPv4, IPv6, Ethernet or ERSPAN II / III.
#[inline(always)]
fn gre_tunnel<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
) -> Option<(u8, u16, usize)> {
    let head = bytes.load::<[u8; GRE_HEADER]>(l4)?;
    let flags = u16::from_be_bytes([head[0], head[1]]);
    if flags & GRE_REJECT != 0 {
        return None;
    }
    let protocol = u16::from_be_bytes([head[2], head[3]]);
    let mut end = l4 + GRE_HEADER;
    if flags & GRE_CHECKSUM != 0 {
        end += 4;
    }
    let key_at = end;
    if flags & GRE_KEY != 0 {
        end += 4;
    }
    if flags & GRE_SEQUENCE != 0 {
        end += 4;
    }
    if end > ip_end {
        return None;
    }
    match protocol {
        ETH_P_IPV4 | ETH_P_IPV6 | ETH_P_TEB => {
            if flags & GRE_KEY != 0 {
                meta.tunnel.id = bytes.be32_at(key_at)?;
                meta.tunnel.has_id = 1;
            }
            Some((tunnel::GRE, protocol, end))
        }
        ETH_P_ERSPAN2 | ETH_P_ERSPAN3 => {
            let erspan = bytes.load::<[u8; 4]>(end)?;
            let version = erspan[0] >> 4;
            let header = if protocol == ETH_P_ERSPAN2 {
                // Type II: the sequence number is required (without it,
                // GRE 0x88be is type I, which has no ERSPAN header).
                if flags & GRE_SEQUENCE == 0 || version != 1 {
                    return None;
                }
                ERSPAN2_HEADER
            } else {
                if version != 2 {
                    return None;
                }
                // Byte 10: P, frame type (5 bits, 0: Ethernet), hardware
                // id; byte 11 ends with the O bit (a subheader follows).
                let tail = bytes.load::<[u8; 2]>(end + 10)?;
                if (tail[0] >> 2) & 0x1f != 0 {
                    return None;
                }
                if tail[1] & 1 != 0 {
                    ERSPAN3_HEADER + ERSPAN3_SUBHEADER
                } else {
                    ERSPAN3_HEADER
                }
            };
            meta.tunnel.id = u16::from_be_bytes([erspan[2], erspan[3]]) as u32 & 0x3ff;
            meta.tunnel.has_id = 1;
            Some((tunnel::ERSPAN, ETH_P_TEB, end + header))
        }
        _ => None,
    }
}

/// Whether an IP header of `ethertype`'s version starts at `l3` whole: the
/// inner packet can be parsed at all (else the frame is judged on its outer
/// packet alone).
#[inline(always)]
pub(crate) fn ip_header_present<B: PacketBytes + ?Sized>(
    bytes: &B,
    ethertype: u16,
    l3: usize,
) -> bool {
    let (version, len) = match ethertype {
        ETH_P_IPV4 => (4, 20),
        ETH_P_IPV6 => (6, 40),
        _ => return false,
    };
    // The same bounds as the parser's load of the header.
    l3 <= MAX_PARSE_OFFSET
        && l3 + len <= bytes.frame_len()
        && bytes.u8_at(l3).is_some_and(|b| b >> 4 == version)
}
