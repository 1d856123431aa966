//! The header parser: one function per layer, each anomaly a named
//! [`event`]. It never reads outside the frame (every access goes through
//! [`PacketBytes::load`]) and never trusts a length field it has not checked.
//!
//! Lengths: the end of the IP packet is taken from the IP length fields
//! (IPv4 total length, IPv6 40 + payload length), never from the frame, so
//! Ethernet padding is not mistaken for payload.

use crate::bytes::PacketBytes;
use crate::decap::{self, DecapConfig, ETH_P_TEB};
use crate::packet::{
    MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
    PacketMeta, event, flag,
};

pub const ETH_HEADER_LEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_QINQ_9100: u16 = 0x9100;

const IPV4_MIN_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_MIN_HEADER: usize = 20;
/// Where the data offset sits in the TCP header.
const TCP_DATA_OFFSET_BYTE: usize = 12;

pub(crate) const IPV6_HOP_BY_HOP: u8 = 0;
pub(crate) const IPV6_ROUTING: u8 = 43;
pub(crate) const IPV6_FRAGMENT: u8 = 44;
pub(crate) const IPV6_AH: u8 = 51;
pub(crate) const IPV6_DEST_OPTS: u8 = 60;

/// Largest IP datagram a fragment may build up to.
const MAX_DATAGRAM: u32 = 65_535;

/// Parses an Ethernet frame (with any VLAN tags), decapsulating tunnels
/// as the contract's default (`DecapConfig::DEFAULT`) says.
#[inline(always)]
pub fn parse_ethernet<B: PacketBytes + ?Sized>(bytes: &B) -> PacketMeta {
    parse_ethernet_with(bytes, &DecapConfig::DEFAULT)
}

/// [`parse_ethernet`] with the given `decap:` settings.
#[inline(always)]
pub fn parse_ethernet_with<B: PacketBytes + ?Sized>(bytes: &B, decap: &DecapConfig) -> PacketMeta {
    let mut meta = PacketMeta::default();
    parse_ethernet_into(bytes, &mut meta, decap);
    meta
}

/// [`parse_ethernet_with`] into caller-provided storage.
#[inline(always)]
pub fn parse_ethernet_into<B: PacketBytes + ?Sized>(
    bytes: &B,
    meta: &mut PacketMeta,
    decap: &DecapConfig,
) {
    if let Some((l4, ip_end)) = parse_outer(bytes, meta)
        && let Some((ethertype, l3)) = find_inner(bytes, l4, ip_end, meta, decap)
    {
        parse_inner(bytes, ethertype, l3, meta);
    }
}

/// The first of [`parse_ethernet_into`]'s three steps: the frame's packet.
/// Returns where its transport header starts and where the IP packet
/// ends, when the parse got that far. The kernel program runs the steps
/// in two programs (a tail call between them), each with its own stack and
/// verifier budget; replay runs them one after the other.
#[inline(always)]
pub fn parse_outer<B: PacketBytes + ?Sized>(
    bytes: &B,
    meta: &mut PacketMeta,
) -> Option<(usize, usize)> {
    meta.clear();
    meta.frame_len = bytes.frame_len() as u32;
    let (ethertype, l3) = walk_link(bytes, 0, 0, meta)?;
    parse_l3(bytes, ethertype, l3, meta)
}

/// The second step: when the packet carries a tunnel to decapsulate
/// ([`decap::tunnel_candidate`], [`decap::open_tunnel`]) whose inner packet
/// can be parsed, records the tunnel, clears the outer packet's fields
/// (keeping the frame length and the VLAN tags, the inner frame's
/// appended) and returns where the inner IP header starts and its
/// ethertype, for [`parse_inner`]. Otherwise leaves the packet as it is:
/// judged on its outer packet.
#[inline(always)]
pub fn find_inner<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
    decap: &DecapConfig,
) -> Option<(u16, usize)> {
    open_inner(
        bytes,
        decap::tunnel_candidate(meta, decap),
        l4,
        ip_end,
        meta,
    )
}

/// [`find_inner`] once [`decap::tunnel_candidate`] has said which tunnel to
/// look for (the kernel asks it in one program and opens the tunnel in the
/// next).
#[inline(always)]
pub fn open_inner<B: PacketBytes + ?Sized>(
    bytes: &B,
    candidate: u8,
    l4: usize,
    ip_end: usize,
    meta: &mut PacketMeta,
) -> Option<(u16, usize)> {
    let (inner_type, inner_start) = decap::open_tunnel(bytes, candidate, l4, ip_end, meta)?;
    let outer_tags = meta.vlan_count;
    let link = if inner_type == ETH_P_TEB {
        walk_link(bytes, inner_start, outer_tags as usize, meta)
    } else {
        Some((inner_type, inner_start))
    };
    match link {
        Some((inner_type, inner_l3)) if decap::ip_header_present(bytes, inner_type, inner_l3) => {
            meta.clear_for_inner();
            Some((inner_type, inner_l3))
        }
        _ => {
            // The inner packet cannot be parsed at all (no whole IP header
            // of the right version): the frame is judged on its outer one.
            meta.abandon_inner(outer_tags);
            None
        }
    }
}

/// The third step: the inner packet, whose IP header of `ethertype`'s
/// version starts at `l3` (as [`find_inner`] returned).
#[inline(always)]
pub fn parse_inner<B: PacketBytes + ?Sized>(
    bytes: &B,
    ethertype: u16,
    l3: usize,
    meta: &mut PacketMeta,
) {
    let _ = parse_l3(bytes, ethertype, l3, meta);
}

/// Parses a frame whose first byte is an IP header (pcap link type RAW),
/// or whose IP header starts at `l3` after some other link header.
#[inline(always)]
pub fn parse_ip_at<B: PacketBytes + ?Sized>(bytes: &B, ethertype: u16, l3: usize) -> PacketMeta {
    parse_ip_at_with(bytes, ethertype, l3, &DecapConfig::DEFAULT)
}

/// [`parse_ip_at`] with the given `decap:` settings.
#[inline(always)]
pub fn parse_ip_at_with<B: PacketBytes + ?Sized>(
    bytes: &B,
    ethertype: u16,
    l3: usize,
    decap: &DecapConfig,
) -> PacketMeta {
    let mut meta = PacketMeta {
        frame_len: bytes.frame_len() as u32,
        ..PacketMeta::default()
    };
    if let Some((l4, ip_end)) = parse_l3(bytes, ethertype, l3, &mut meta)
        && let Some((inner_type, inner_l3)) = find_inner(bytes, l4, ip_end, &mut meta, decap)
    {
        parse_inner(bytes, inner_type, inner_l3, &mut meta);
    }
    meta
}

/// Only the source address (and IP version): what drop mode needs to
/// drop a blocked source before paying for the rest of the parse.
#[inline(always)]
pub fn peek_source<B: PacketBytes + ?Sized>(bytes: &B) -> Option<crate::packet::AddrKey> {
    let mut key = crate::packet::AddrKey::default();
    peek_source_with(bytes, &mut PacketMeta::default(), &mut key).then_some(key)
}

/// [`peek_source`] into caller-provided room: `scratch` for the link
/// layer's fields, `key` for the source (the kernel passes per-CPU buffers
/// to spare its stack). Returns whether `key` holds a source.
#[inline(always)]
pub fn peek_source_with<B: PacketBytes + ?Sized>(
    bytes: &B,
    scratch: &mut PacketMeta,
    key: &mut crate::packet::AddrKey,
) -> bool {
    let Some((ethertype, l3)) = walk_link(bytes, 0, 0, scratch) else {
        return false;
    };
    let version = match ethertype {
        ETH_P_IPV4 => 4,
        ETH_P_IPV6 => 6,
        _ => return false,
    };
    if bytes.u8_at(l3).is_none_or(|byte| byte >> 4 != version) {
        return false;
    }
    // Written straight into `key` (the kernel's lives in map memory).
    key._pad = [0; 3];
    key.addr = [0; 16];
    let found = if version == 4 {
        match bytes.load::<[u8; 4]>(l3 + 12) {
            Some(src) => {
                key.addr[..4].copy_from_slice(&src);
                true
            }
            None => false,
        }
    } else {
        bytes.load_addr(l3 + 8, &mut key.addr)
    };
    key.version = version;
    found
}

/// The Ethernet header at `start` and its VLAN tags: returns the inner
/// ethertype and where the network header starts. The tags go after the
/// `tags_before` already in `meta` (an inner frame's after the outer
/// frame's), as many as there is room for.
#[inline(always)]
fn walk_link<B: PacketBytes + ?Sized>(
    bytes: &B,
    start: usize,
    tags_before: usize,
    meta: &mut PacketMeta,
) -> Option<(u16, usize)> {
    let mut ethertype = bytes.be16_at(start + 12)?;
    let mut offset = start + ETH_HEADER_LEN;
    for tag in 0..MAX_VLAN_TAGS {
        if !matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100) {
            return Some((ethertype, offset));
        }
        let slot = tags_before + tag;
        if slot >= MAX_VLAN_TAGS {
            break;
        }
        let tci = bytes.be16_at(offset)?;
        meta.vlan[slot] = tci & 0x0fff;
        meta.vlan_count = slot as u8 + 1;
        ethertype = bytes.be16_at(offset + 2)?;
        offset += 4;
    }
    // Still tagged after MAX_VLAN_TAGS: the ethertype is a TPID, not IP, and
    // the frame is left unparsed.
    Some((ethertype, offset))
}

/// The IP packet at `l3`; when its transport header was reached, returns
/// where that header starts and where the IP packet ends.
#[inline(always)]
fn parse_l3<B: PacketBytes + ?Sized>(
    bytes: &B,
    ethertype: u16,
    l3: usize,
    meta: &mut PacketMeta,
) -> Option<(usize, usize)> {
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(bytes, l3, meta),
        ETH_P_IPV6 => parse_ipv6(bytes, l3, meta),
        _ => None,
    }
}

#[inline(always)]
fn parse_ipv4<B: PacketBytes + ?Sized>(
    bytes: &B,
    l3: usize,
    meta: &mut PacketMeta,
) -> Option<(usize, usize)> {
    let hdr = bytes.load::<[u8; IPV4_MIN_HEADER]>(l3)?;
    if hdr[0] >> 4 != 4 {
        return None;
    }
    meta.ip_version = 4;
    meta.ttl = hdr[8];
    meta.proto = hdr[9];
    meta.ip_id = u16::from_be_bytes([hdr[4], hdr[5]]) as u32;
    meta.src_addr[..4].copy_from_slice(&hdr[12..16]);
    meta.dst_addr[..4].copy_from_slice(&hdr[16..20]);

    let frag_field = u16::from_be_bytes([hdr[6], hdr[7]]);
    let reserved = frag_field & 0x8000 != 0;
    let dont_fragment = frag_field & 0x4000 != 0;
    let more_fragments = frag_field & 0x2000 != 0;
    let offset = frag_field & 0x1fff;
    meta.frag_offset = offset;
    if dont_fragment {
        meta.flags |= flag::DONT_FRAGMENT;
    }
    if more_fragments {
        meta.flags |= flag::MORE_FRAGMENTS;
    }
    let is_fragment = more_fragments || offset != 0;
    if is_fragment {
        meta.flags |= flag::FRAGMENT;
    }
    if reserved {
        meta.events |= event::bit(event::IP_RESERVED_BIT);
    }
    if dont_fragment && is_fragment {
        meta.events |= event::bit(event::DF_WITH_FRAGMENT);
    }
    address_checks(meta);

    let header_len = ((hdr[0] & 0x0f) as usize) * 4;
    if header_len < IPV4_MIN_HEADER {
        meta.events |= event::bit(event::BAD_IHL);
        return None;
    }
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    let present = bytes.frame_len().saturating_sub(l3);
    if total_len < header_len || total_len > present {
        meta.events |= event::bit(event::BAD_TOTAL_LENGTH);
        return None;
    }
    if header_len > IPV4_MIN_HEADER {
        meta.events |= bytes.option_events(
            l3 + IPV4_MIN_HEADER,
            header_len - IPV4_MIN_HEADER,
            event::bit(event::IPV4_OPTION_MALFORMED),
            true,
        );
    }
    let payload = total_len - header_len;
    meta.l3_payload_len = payload as u32;
    fragment_checks(meta, offset, more_fragments, payload as u32);
    if offset == 1 && meta.proto == PROTO_TCP {
        meta.events |= event::bit(event::FRAG_OFFSET_ONE);
    }
    if offset != 0 {
        return None;
    }
    parse_l4(bytes, l3 + header_len, l3 + total_len, meta);
    Some((l3 + header_len, l3 + total_len))
}

#[inline(always)]
fn parse_ipv6<B: PacketBytes + ?Sized>(
    bytes: &B,
    l3: usize,
    meta: &mut PacketMeta,
) -> Option<(usize, usize)> {
    // The fixed fields, then the addresses straight into `meta` (a 40-byte
    // copy of the header would cost the kernel program stack it lacks).
    let hdr = bytes.load::<[u8; 8]>(l3)?;
    // The destination first: when it is in the frame, so is the source,
    // and a header cut short leaves `meta` untouched.
    if hdr[0] >> 4 != 6
        || !bytes.load_addr(l3 + 24, &mut meta.dst_addr)
        || !bytes.load_addr(l3 + 8, &mut meta.src_addr)
    {
        return None;
    }
    meta.ip_version = 6;
    meta.ttl = hdr[7];
    address_checks(meta);

    let mut next = hdr[6];
    meta.proto = next;
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    let present = bytes.frame_len().saturating_sub(l3);
    if IPV6_HEADER + payload_len > present {
        meta.events |= event::bit(event::BAD_TOTAL_LENGTH);
        return None;
    }
    let ip_end = l3 + IPV6_HEADER + payload_len;
    let mut offset = l3 + IPV6_HEADER;
    if is_ipv6_extension(next) {
        // Routing type 0, duplicates, hop-by-hop not first: a walk of its
        // own over the same chain (in the kernel a `bpf_loop`).
        meta.events |= bytes.ipv6_chain_events(offset, ip_end, next);
    }
    // Where the fragment header is (0: none). Its fields are judged after
    // the walk, which keeps the loop body small for the verifier.
    let mut fragment_at = 0;
    let mut later_fragment = false;
    let mut walked_all = false;
    let mut cut_short = false;
    // One turn more than the headers allowed: the last turn can only find
    // the upper-layer header.
    for walked in 0..=MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_extension(next) {
            walked_all = true;
            break;
        }
        if walked == MAX_IPV6_EXT_HEADERS || offset + 2 > ip_end {
            // Too many headers, or one cut off by the payload length.
            cut_short = true;
            break;
        }
        let (Some(following), Some(len_field)) = (bytes.u8_at(offset), bytes.u8_at(offset + 1))
        else {
            cut_short = true;
            break;
        };
        let header_len = match next {
            IPV6_FRAGMENT => 8,
            IPV6_AH => (len_field as usize + 2) * 4,
            _ => (len_field as usize + 1) * 8,
        };
        // An extension header running past the packet: stop here.
        if offset + header_len > ip_end {
            cut_short = true;
            break;
        }
        // A second fragment header (RFC 8200 allows one): stop here too.
        if next == IPV6_FRAGMENT && fragment_at != 0 {
            cut_short = true;
            break;
        }
        if next == IPV6_FRAGMENT {
            fragment_at = offset;
            // A later fragment: what follows is the middle of the datagram,
            // not headers.
            later_fragment = bytes
                .be16_at(offset + 2)
                .is_some_and(|field| field >> 3 != 0);
        }
        next = following;
        offset = bytes.opaque(offset + header_len);
        if later_fragment {
            walked_all = true;
            break;
        }
    }
    if fragment_at != 0 {
        let (Some(field), Some(id)) = (
            bytes.be16_at(fragment_at + 2),
            bytes.be32_at(fragment_at + 4),
        ) else {
            return None;
        };
        let frag_offset = field >> 3;
        let more = field & 1 != 0;
        meta.frag_offset = frag_offset;
        meta.ip_id = id;
        meta.flags |= flag::FRAGMENT | flag::IPV6_FRAG_HEADER;
        if more {
            meta.flags |= flag::MORE_FRAGMENTS;
        } else if frag_offset == 0 {
            meta.events |= event::bit(event::FRAG_ATOMIC);
        }
        // Judged on the bytes after the fragment header, so that a first
        // fragment whose header chain is cut short (the RFC 7112 evasion)
        // is still a first fragment; it then carries 0 bytes after its
        // headers (`l3_payload_len` stays 0).
        fragment_checks(meta, frag_offset, more, (ip_end - (fragment_at + 8)) as u32);
    }
    if cut_short {
        meta.proto = next;
        return None;
    }
    meta.proto = next;
    meta.l3_payload_len = (ip_end - offset) as u32;
    if !walked_all || later_fragment {
        return None;
    }
    parse_l4(bytes, offset, ip_end, meta);
    Some((offset, ip_end))
}

#[inline(always)]
pub(crate) fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AH | IPV6_FRAGMENT
    )
}

/// Conditions on the fragment fields shared by IPv4 and IPv6.
#[inline(always)]
fn fragment_checks(meta: &mut PacketMeta, offset: u16, more_fragments: bool, payload: u32) {
    if offset == 0 && more_fragments {
        meta.events |= event::bit(event::FIRST_FRAGMENT);
    }
    if (offset != 0 || more_fragments) && (offset as u32) * 8 + payload > MAX_DATAGRAM {
        meta.events |= event::bit(event::FRAG_OVERSIZE);
    }
}

/// Transport header starting at `l4`; `ip_end` is where the IP packet ends.
#[inline(always)]
fn parse_l4<B: PacketBytes + ?Sized>(bytes: &B, l4: usize, ip_end: usize, meta: &mut PacketMeta) {
    let available = ip_end.saturating_sub(l4);
    match meta.proto {
        PROTO_TCP => parse_tcp(bytes, l4, available, meta),
        PROTO_UDP => parse_ports(bytes, l4, available, meta),
        PROTO_ICMP | PROTO_ICMPV6 => {
            if available >= 2
                && let Some(type_code) = bytes.load::<[u8; 2]>(l4)
            {
                meta.icmp_type = type_code[0];
                meta.icmp_code = type_code[1];
                meta.flags |= flag::HAS_ICMP;
            }
        }
        _ => {}
    }
}

#[inline(always)]
fn parse_ports<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    available: usize,
    meta: &mut PacketMeta,
) {
    if available < 4 {
        return;
    }
    let Some(ports) = bytes.load::<[u8; 4]>(l4) else {
        return;
    };
    meta.src_port = u16::from_be_bytes([ports[0], ports[1]]);
    meta.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    meta.flags |= flag::HAS_PORTS;
    if meta.src_port == 0 || meta.dst_port == 0 {
        meta.events |= event::bit(event::ZERO_PORT);
    }
}

#[inline(always)]
fn parse_tcp<B: PacketBytes + ?Sized>(
    bytes: &B,
    l4: usize,
    available: usize,
    meta: &mut PacketMeta,
) {
    parse_ports(bytes, l4, available, meta);
    if available < TCP_MIN_HEADER {
        // An unfragmented packet whose TCP header is cut short, with its
        // data offset byte present: that offset points beyond the packet.
        // (In a first fragment the header may go on in the next one.)
        if available > TCP_DATA_OFFSET_BYTE && !meta.has(flag::MORE_FRAGMENTS) {
            meta.events |= event::bit(event::BAD_TCP_OFFSET);
        }
        return;
    }
    let Some(hdr) = bytes.load::<[u8; TCP_MIN_HEADER]>(l4) else {
        return;
    };
    meta.tcp_seq = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    meta.tcp_ack = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    meta.tcp_flags = u16::from_be_bytes([hdr[12], hdr[13]]) & 0x01ff;
    meta.tcp_window = u16::from_be_bytes([hdr[14], hdr[15]]);
    meta.flags |= flag::HAS_TCP_FLAGS;
    let data_offset = ((hdr[12] >> 4) as usize) * 4;
    if data_offset < TCP_MIN_HEADER || data_offset > available {
        meta.events |= event::bit(event::BAD_TCP_OFFSET);
    } else {
        if available > data_offset {
            meta.flags |= flag::TCP_PAYLOAD;
        }
        if data_offset > TCP_MIN_HEADER && !is_timestamps_only(bytes, l4, data_offset) {
            meta.events |= bytes.option_events(
                l4 + TCP_MIN_HEADER,
                data_offset - TCP_MIN_HEADER,
                event::bit(event::TCP_OPTION_MALFORMED),
                false,
            );
        }
    }
    let syn_ack = crate::packet::tcp::SYN | crate::packet::tcp::ACK;
    if meta.tcp_flags & syn_ack == crate::packet::tcp::SYN {
        meta.events |= event::bit(event::SYN_NO_ACK);
    }
}

/// The options of nearly every segment of an established connection: NOP,
/// NOP, timestamps (12 bytes), which cannot be malformed; the option walk
/// is skipped for them to keep the common packet's cost flat.
#[inline(always)]
fn is_timestamps_only<B: PacketBytes + ?Sized>(bytes: &B, l4: usize, data_offset: usize) -> bool {
    data_offset == TCP_MIN_HEADER + 12
        && bytes.load::<[u8; 4]>(l4 + TCP_MIN_HEADER) == Some([1, 1, 8, 10])
}

/// `land` and `martian_src`: judged on the addresses alone.
#[inline(always)]
fn address_checks(meta: &mut PacketMeta) {
    if meta.src_addr == meta.dst_addr {
        meta.events |= event::bit(event::LAND);
    }
    if is_martian_src(meta.ip_version, &meta.src_addr) {
        meta.events |= event::bit(event::MARTIAN_SRC);
    }
}

/// 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4, 255.255.255.255; ::1, ff00::/8.
#[inline(always)]
pub fn is_martian_src(ip_version: u8, addr: &[u8; 16]) -> bool {
    if ip_version == 4 {
        let first = addr[0];
        first == 0
            || first == 127
            || first & 0xf0 == 224
            || (addr[0] == 255 && addr[1] == 255 && addr[2] == 255 && addr[3] == 255)
    } else {
        let loopback = addr[..15].iter().all(|b| *b == 0) && addr[15] == 1;
        loopback || addr[0] == 0xff
    }
}

/// Whether a frame of this outer ethertype can hold an IP packet the parser
/// would find: IPv4, IPv6 or a VLAN tag. The kernel program asks first, so
/// that ARP, LLDP and the like cost one load and no parse.
#[inline(always)]
pub fn may_carry_ip(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ETH_P_IPV4 | ETH_P_IPV6 | ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100
    )
}
