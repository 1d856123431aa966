//! A small frame builder for tests, benchmarks and the demo: Ethernet with
//! optional VLAN tags, IPv4 (options, fragment fields), IPv6 with extension
//! headers, TCP, UDP, ICMP. Lengths and the IPv4 header checksum are
//! computed; everything else is what the caller says, so broken headers
//! can be built on purpose.

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// TCP flag bits.
pub mod flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
}

/// Ethernet header (fixed test MACs) with `tags` as (TPID, VLAN id), outermost first.
pub fn ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (tpid, vid) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 header; `build` prepends it to a payload.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub proto: u8,
    pub id: u16,
    /// Flags and fragment offset field (RB 0x8000, DF 0x4000, MF 0x2000, offset in 8-byte units).
    pub frag_field: u16,
    /// Option bytes (padded to a multiple of 4).
    pub options: Vec<u8>,
    /// Overrides the computed IHL (header words) when set.
    pub ihl: Option<u8>,
    /// Overrides the computed total length when set.
    pub total_len: Option<u16>,
}

impl Ipv4 {
    pub fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            ttl: 64,
            proto,
            id: 0x1234,
            frag_field: 0,
            options: Vec::new(),
            ihl: None,
            total_len: None,
        }
    }

    pub fn ttl(mut self, ttl: u8) -> Ipv4 {
        self.ttl = ttl;
        self
    }

    pub fn frag(mut self, frag_field: u16) -> Ipv4 {
        self.frag_field = frag_field;
        self
    }

    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut options = self.options.clone();
        while !options.len().is_multiple_of(4) {
            options.push(0);
        }
        let header_len = 20 + options.len();
        let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
        let total = self
            .total_len
            .unwrap_or((header_len + payload.len()) as u16);
        let mut h = Vec::with_capacity(header_len + payload.len());
        h.push(0x40 | (ihl & 0x0f));
        h.push(0);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag_field.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&options);
        let checksum = internet_checksum(&h);
        h[10..12].copy_from_slice(&checksum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

/// An IPv6 header; `build` prepends it to the already-chained extension
/// headers and upper-layer bytes in `payload`.
pub fn ipv6(
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    next_header: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next_header);
    h.push(hop_limit);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

/// An IPv6 extension header of 8 bytes (hop-by-hop, routing, dest options) before `rest`.
pub fn ipv6_ext(next_header: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next_header, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(rest);
    h
}

/// An IPv6 fragment header before `rest`.
pub fn ipv6_fragment(
    next_header: u8,
    offset_units: u16,
    more: bool,
    id: u32,
    rest: &[u8],
) -> Vec<u8> {
    let mut h = vec![next_header, 0];
    h.extend_from_slice(&((offset_units << 3) | more as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// A 20-byte TCP header with `flags` (9 bits), then `payload`.
pub fn tcp(src_port: u16, dst_port: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + payload.len());
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    let offset_and_flags: u16 = (5 << 12) | (flags & 0x01ff);
    h.extend_from_slice(&offset_and_flags.to_be_bytes());
    h.extend_from_slice(&64240u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h.extend_from_slice(payload);
    h
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// An ICMP (or ICMPv6) echo request.
pub fn icmp_echo(icmp_type: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut h = vec![icmp_type, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(b"sensor-test-echo");
    h
}

/// Ethernet + IPv4 + TCP with chosen sequence and acknowledgement numbers
/// (a handshake's segments).
pub fn ipv4_tcp_numbered(
    (src, dst): ([u8; 4], [u8; 4]),
    (src_port, dst_port): (u16, u16),
    flags: u16,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut segment = tcp(src_port, dst_port, flags, seq, &[]);
    segment[8..12].copy_from_slice(&ack.to_be_bytes());
    ethernet(&[], ETH_IPV4, &Ipv4::new(src, dst, 6).build(&segment))
}

/// Ethernet + IPv4 + TCP, the common case.
pub fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16, flags: u16) -> Vec<u8> {
    ethernet(
        &[],
        ETH_IPV4,
        &Ipv4::new(src, dst, 6).build(&tcp(src_port, dst_port, flags, 1000, &[])),
    )
}

/// RFC 1071 checksum.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A 16-byte IPv6 address in 2001:db8::/32 ending in `last`.
pub fn doc_v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

// ---- added for the per-kind detection tests (issue #3) ----------------------

/// ECE and CWR, and the NS bit (the ninth flag bit), for [`tcp`] and friends.
pub mod more_flags {
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
}

/// A TCP header of 20 bytes + `options` (padded to a multiple of 4) whose
/// data offset field says `data_offset_words` (4-byte words), then
/// `payload`: a wrong offset can be built on purpose.
pub fn tcp_raw(
    src_port: u16,
    dst_port: u16,
    flags: u16,
    data_offset_words: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = tcp(src_port, dst_port, flags, 1000, &[]);
    let field: u16 = (u16::from(data_offset_words & 0x0f) << 12) | (flags & 0x01ff);
    h[12..14].copy_from_slice(&field.to_be_bytes());
    let mut options = options.to_vec();
    while !options.len().is_multiple_of(4) {
        options.push(1); // NOP
    }
    h.extend_from_slice(&options);
    h.extend_from_slice(payload);
    h
}

/// A TCP header with the options a Linux SYN (or SYN+ACK) carries: MSS,
/// SACK permitted, timestamps, window scale (data offset 10, 40 bytes).
pub fn tcp_with_options(
    src_port: u16,
    dst_port: u16,
    flags: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let options = [
        2, 4, 0x05, 0xb4, // MSS 1460
        4, 2, // SACK permitted
        8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
        1, // NOP
        3, 3, 7, // window scale 7
    ];
    let mut h = tcp_raw(src_port, dst_port, flags, 10, &options, payload);
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h
}

/// An IPv6 extension header (hop-by-hop, routing, dest options) whose
/// length field is `len_field` (the header is `(len_field + 1) * 8` bytes:
/// PadN fills it), before `rest`.
pub fn ipv6_ext_sized(next_header: u8, len_field: u8, rest: &[u8]) -> Vec<u8> {
    let size = (usize::from(len_field) + 1) * 8;
    let mut h = vec![next_header, len_field, 1, (size - 4) as u8];
    h.resize(size, 0);
    h.extend_from_slice(rest);
    h
}

/// An ARP request (`op` 1) or reply (`op` 2) for IPv4 over Ethernet, as an
/// Ethernet frame.
pub fn arp(op: u16, sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    p.extend_from_slice(&sender_ip);
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&target_ip);
    ethernet(&[], 0x0806, &p)
}

/// `frame` with zero bytes appended up to `len` (Ethernet's 60-byte minimum
/// pads short packets on real links).
pub fn pad_to(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    if frame.len() < len {
        frame.resize(len, 0);
    }
    frame
}

/// Splits `payload` (the IPv4 payload: transport header and data) into
/// fragments of at most `chunk` bytes (a multiple of 8) as a router does:
/// each an IPv4 packet with `header`'s fields, MF on all but the last.
pub fn ipv4_fragments(header: &Ipv4, payload: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    assert!(
        chunk > 0 && chunk.is_multiple_of(8),
        "fragment size must be a multiple of 8"
    );
    let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let more = if i + 1 < pieces.len() { 0x2000 } else { 0 };
            let offset = ((i * chunk) / 8) as u16;
            header
                .clone()
                .frag((header.frag_field & 0x8000) | more | offset)
                .build(piece)
        })
        .collect()
}

/// Splits an IPv6 upper-layer `payload` (next header `next_header`) into
/// fragments of at most `chunk` bytes (a multiple of 8): each an IPv6
/// packet with a fragment header of identification `id`.
pub fn ipv6_fragments(
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    next_header: u8,
    payload: &[u8],
    chunk: usize,
    id: u32,
) -> Vec<Vec<u8>> {
    assert!(
        chunk > 0 && chunk.is_multiple_of(8),
        "fragment size must be a multiple of 8"
    );
    let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let more = i + 1 < pieces.len();
            let offset = ((i * chunk) / 8) as u16;
            ipv6(
                src,
                dst,
                hop_limit,
                44,
                &ipv6_fragment(next_header, offset, more, id, piece),
            )
        })
        .collect()
}

/// A 16-byte IPv6 address from its eight 16-bit groups.
pub fn v6(groups: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, g) in groups.iter().enumerate() {
        a[2 * i..2 * i + 2].copy_from_slice(&g.to_be_bytes());
    }
    a
}

/// Tunnel headers (docs/CONTRACT.md section 3, *Tunnels*), each followed
/// by what it carries.
pub mod tunnel {
    /// Transparent Ethernet Bridging: an Ethernet frame follows.
    pub const TEB: u16 = 0x6558;
    pub const ERSPAN2: u16 = 0x88be;
    pub const ERSPAN3: u16 = 0x22eb;
    /// GRE flag bits.
    pub const GRE_CHECKSUM: u16 = 0x8000;
    pub const GRE_KEY: u16 = 0x2000;
    pub const GRE_SEQUENCE: u16 = 0x1000;

    /// A VXLAN header (`flags`: 0x08 is the I flag) and the inner frame;
    /// to go in a UDP datagram to port 4789.
    pub fn vxlan(flags: u8, vni: u32, inner_frame: &[u8]) -> Vec<u8> {
        let mut h = vec![flags, 0, 0, 0];
        h.extend_from_slice(&(vni << 8).to_be_bytes());
        h.extend_from_slice(inner_frame);
        h
    }

    /// A GENEVE header of `version` with `options` (a multiple of 4
    /// bytes), protocol type `protocol`, and what it carries; to go in a
    /// UDP datagram to port 6081.
    pub fn geneve(version: u8, options: &[u8], protocol: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut h = vec![(version << 6) | (options.len() / 4) as u8 & 0x3f, 0];
        h.extend_from_slice(&protocol.to_be_bytes());
        h.extend_from_slice(&(vni << 8).to_be_bytes());
        h.extend_from_slice(options);
        h.extend_from_slice(inner);
        h
    }

    /// A GRE header (`flags` with the version in the low 3 bits; the
    /// checksum, key and sequence fields as its C, K and S bits say) and
    /// what it carries; IP protocol 47.
    pub fn gre(flags: u16, protocol: u16, key: u32, inner: &[u8]) -> Vec<u8> {
        let mut h = Vec::with_capacity(16 + inner.len());
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&protocol.to_be_bytes());
        if flags & GRE_CHECKSUM != 0 {
            h.extend_from_slice(&[0, 0, 0, 0]);
        }
        if flags & GRE_KEY != 0 {
            h.extend_from_slice(&key.to_be_bytes());
        }
        if flags & GRE_SEQUENCE != 0 {
            h.extend_from_slice(&1u32.to_be_bytes());
        }
        h.extend_from_slice(inner);
        h
    }

    /// An ERSPAN type II header (`version` 1 is right) and the mirrored
    /// frame; inside GRE protocol 0x88be with the S bit.
    pub fn erspan2(version: u8, session: u16, inner_frame: &[u8]) -> Vec<u8> {
        let mut h = vec![version << 4, 0];
        h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1]);
        h.extend_from_slice(inner_frame);
        h
    }

    /// An ERSPAN type III header (`version` 2 is right; frame type 0 is
    /// Ethernet; with the 8-byte subheader when `subheader`) and the
    /// mirrored frame; inside GRE protocol 0x22eb.
    pub fn erspan3(
        version: u8,
        session: u16,
        frame_type: u8,
        subheader: bool,
        inner_frame: &[u8],
    ) -> Vec<u8> {
        let mut h = vec![version << 4, 0];
        h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
        h.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0, 0]);
        h.push((frame_type & 0x1f) << 2);
        h.push(u8::from(subheader));
        if subheader {
            h.extend_from_slice(&[0xee; 8]);
        }
        h.extend_from_slice(inner_frame);
        h
    }
}
