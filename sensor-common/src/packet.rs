//! What the parser extracts from one frame.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// VLAN tags (802.1Q, 802.1ad, 0x9100) walked and recorded, outermost first.
/// A frame with more tags is not parsed further (no IP fields, no alerts).
pub const MAX_VLAN_TAGS: usize = 4;
/// IPv6 extension headers walked before the upper-layer header: twice what
/// an RFC 8200 packet can carry (each header at most once, destination
/// options twice), so only a chain padded on purpose goes past it; its
/// transport header is then not read (documented in docs/rules.md).
pub const MAX_IPV6_EXT_HEADERS: usize = 16;

pub const IP_VERSION_NONE: u8 = 0;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// `PacketMeta::flags` bits: which fields are present and the IP fragment bits.
pub mod flag {
    /// `src_port` / `dst_port` are valid (4 bytes of TCP/UDP header present).
    pub const HAS_PORTS: u16 = 1 << 0;
    /// `tcp_flags`, `tcp_seq`, `tcp_ack`, `tcp_window` are valid (whole 20-byte TCP header).
    pub const HAS_TCP_FLAGS: u16 = 1 << 1;
    /// IPv4 MF or IPv6 fragment header M flag.
    pub const MORE_FRAGMENTS: u16 = 1 << 2;
    /// IPv4 don't-fragment flag.
    pub const DONT_FRAGMENT: u16 = 1 << 3;
    /// IPv4 MF/offset set, or any IPv6 fragment header (atomic ones too).
    pub const FRAGMENT: u16 = 1 << 4;
    /// `icmp_type` / `icmp_code` are valid.
    pub const HAS_ICMP: u16 = 1 << 5;
    /// An IPv6 fragment header was seen.
    pub const IPV6_FRAG_HEADER: u16 = 1 << 6;
    /// Bytes follow a valid TCP header within the IP length (the segment
    /// carries payload): a `flood` rule's `ack` class excludes it.
    pub const TCP_PAYLOAD: u16 = 1 << 7;
}

/// Decoder events: header anomalies and fragment conditions, one bit each.
/// The bit number is also the event's row in the compiled rule tables, so
/// the numbering is part of the kernel/userspace ABI.
pub mod event {
    pub const LAND: u8 = 0;
    pub const BAD_IHL: u8 = 1;
    pub const BAD_TOTAL_LENGTH: u8 = 2;
    pub const BAD_TCP_OFFSET: u8 = 3;
    pub const ZERO_PORT: u8 = 4;
    pub const MARTIAN_SRC: u8 = 5;
    pub const IP_RESERVED_BIT: u8 = 6;
    pub const DF_WITH_FRAGMENT: u8 = 7;
    pub const FRAG_OFFSET_ONE: u8 = 8;
    pub const FRAG_OVERSIZE: u8 = 9;
    pub const FRAG_ATOMIC: u8 = 10;
    /// A first fragment (offset 0, more-fragments set): `tiny_first_below` applies.
    pub const FIRST_FRAGMENT: u8 = 11;
    /// TCP SYN without ACK: what `syn_flood` rules count.
    pub const SYN_NO_ACK: u8 = 12;
    // The option and extension-header checks (docs/CONTRACT.md section 2).
    // They are a region of their own in the rule tables (see
    // `tables::OPTION_EVENT_SET_BASE`), so they must stay the top bits.
    /// An IPv6 routing header of type 0 (RFC 5095).
    pub const IPV6_ROUTING_TYPE0: u8 = 13;
    /// An IPv6 extension header more often than RFC 8200 4.1 allows.
    pub const IPV6_DUPLICATE_EXT_HEADER: u8 = 14;
    /// An IPv6 hop-by-hop header that is not the first extension header.
    pub const IPV6_HOP_BY_HOP_NOT_FIRST: u8 = 15;
    /// An IPv4 LSRR or SSRR option.
    pub const IPV4_SOURCE_ROUTE: u8 = 16;
    /// An IPv4 option whose length is below 2 or runs past the header.
    pub const IPV4_OPTION_MALFORMED: u8 = 17;
    /// A TCP option whose length is below 2 or runs past the header.
    pub const TCP_OPTION_MALFORMED: u8 = 18;
    /// Rows in the event table.
    pub const COUNT: u32 = 19;

    #[inline(always)]
    pub const fn bit(event: u8) -> u32 {
        1 << event
    }
}

/// TCP flag bits as they sit in the header's 9-bit flags field.
pub mod tcp {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
    /// Every value of the 9-bit field.
    pub const FLAG_VALUES: u32 = 512;
    /// Contract order for the alert's `tcp_flags` letters: F S R P A U E C N.
    pub const LETTERS: [(u16, char); 9] = [
        (FIN, 'F'),
        (SYN, 'S'),
        (RST, 'R'),
        (PSH, 'P'),
        (ACK, 'A'),
        (URG, 'U'),
        (ECE, 'E'),
        (CWR, 'C'),
        (NS, 'N'),
    ];
}

/// `Tunnel::kind` values: the encapsulation a frame's inner packet was
/// found in (the alert's `tunnel.type`).
pub mod tunnel {
    /// Not decapsulated: the packet is the frame's outermost.
    pub const NONE: u8 = 0;
    pub const VXLAN: u8 = 1;
    pub const GENEVE: u8 = 2;
    pub const GRE: u8 = 3;
    pub const ERSPAN: u8 = 4;
    /// IPv4-in-IPv4, 6in4, 4in6, 6in6.
    pub const IPIP: u8 = 5;
}

/// The outer packet of a decapsulated frame (`crate::decap`); all zero
/// when the packet was not found inside a tunnel. `kind` and `has_id`
/// share its last word, which `PacketMeta::clear` reads.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Tunnel {
    /// The outer packet's addresses; IPv4 in the first four bytes.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// VXLAN / GENEVE VNI, GRE key or ERSPAN session id (`has_id`).
    pub id: u32,
    /// The outer UDP ports (VXLAN, GENEVE; else 0).
    pub src_port: u16,
    pub dst_port: u16,
    /// [`tunnel`] value.
    pub kind: u8,
    /// The outer packet's IP version.
    pub ip_version: u8,
    /// The outer packet's upper-layer protocol (17, 47, 4 or 41).
    pub proto: u8,
    /// 1 when `id` holds the tunnel's identifier.
    pub has_id: u8,
}

/// A 20-byte address key: IP version, three zero bytes, then the address (IPv4 in the first
/// four bytes, the rest zero). Used for LPM tries and per-source state so
/// that IPv4 and IPv6 never collide.
///
/// Aligned to 4 so that the address sits on a word boundary: copying it in
/// or out is four word moves, not sixteen byte moves (which the kernel
/// program pays on every packet, and its verifier on every path).
#[repr(C, align(4))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct AddrKey {
    pub version: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}

impl AddrKey {
    /// The bits before the address (the version byte and three zero
    /// bytes): every LPM trie prefix covers them.
    pub const PREFIX_BITS: u32 = 32;
    /// A whole key, as an exact-address LPM lookup uses it.
    pub const BITS: u32 = Self::PREFIX_BITS + 128;

    #[inline(always)]
    pub const fn new(version: u8, addr: [u8; 16]) -> AddrKey {
        AddrKey {
            version,
            _pad: [0; 3],
            addr,
        }
    }
}

/// Every header field the sensor reports, from one frame.
///
/// `#[repr(C)]` because it travels to userspace inside [`crate::AlertRecord`];
/// 8-aligned (it sits at an 8-byte offset there anyway) so that `clear`
/// can zero it 8 bytes at a time.
#[repr(C, align(8))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PacketMeta {
    /// Source address; IPv4 in the first four bytes.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Frame length as received.
    pub frame_len: u32,
    /// IPv4 identification, or the IPv6 fragment header's identification.
    pub ip_id: u32,
    /// Bytes after the IP header(s), measured with the IP length fields:
    /// after the IPv4 header, or after all IPv6 extension headers walked.
    pub l3_payload_len: u32,
    pub tcp_seq: u32,
    /// The acknowledgement number (whatever the ACK flag says).
    pub tcp_ack: u32,
    /// Fragment offset in 8-byte units (the header field).
    pub frag_offset: u16,
    pub src_port: u16,
    pub dst_port: u16,
    /// The 9-bit TCP flags field (see [`tcp`]).
    pub tcp_flags: u16,
    pub tcp_window: u16,
    /// VLAN ids, outermost first; `vlan_count` of them are valid.
    pub vlan: [u16; MAX_VLAN_TAGS],
    /// [`flag`] bits.
    pub flags: u16,
    /// [`event`] bits.
    pub events: u32,
    /// 4, 6, or [`IP_VERSION_NONE`] when no IP header could be read.
    pub ip_version: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    pub vlan_count: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Explicit padding: the record is copied to userspace byte for byte,
    /// so no byte of it may be left undefined.
    pub _pad: [u8; 2],
    /// Where the packet was found: `tunnel.kind` is [`tunnel::NONE`] for the
    /// frame's outermost packet. The parser keeps it last: an inner
    /// packet's parse clears everything before it.
    pub tunnel: Tunnel,
}

impl PacketMeta {
    #[inline(always)]
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    #[inline(always)]
    pub fn has_event(&self, event: u8) -> bool {
        self.events & event::bit(event) != 0
    }

    #[inline(always)]
    pub fn outer_vlan(&self) -> Option<u16> {
        if self.vlan_count > 0 {
            Some(self.vlan[0])
        } else {
            None
        }
    }

    /// Sets every byte to zero, eight bytes at a time. A plain
    /// `*self = PacketMeta::default()` compiles, for BPF, to a call of a
    /// byte-at-a-time `memset` (about 450 instructions per packet); volatile
    /// word stores cannot be merged back into that call. `tunnel` is
    /// cleared only when it is not clear already (the kernel reuses one
    /// per-CPU record, and most packets come through no tunnel): its last
    /// word holds `kind` and `has_id`, at least one of which the
    /// decapsulation sets before or with any other of its fields.
    #[inline(always)]
    pub fn clear(&mut self) {
        const TUNNEL: usize = core::mem::offset_of!(PacketMeta, tunnel);
        const LAST_WORD: usize = core::mem::size_of::<PacketMeta>() - 4;
        self.zero(0, TUNNEL);
        // SAFETY: `PacketMeta` is 8-aligned and its size a multiple of 8
        // (sensor_common::layout): the 4 bytes at LAST_WORD are its last
        // word, aligned, inside `self`; every bit pattern is a valid u32.
        let last = unsafe {
            core::ptr::from_mut(self)
                .cast::<u8>()
                .add(LAST_WORD)
                .cast::<u32>()
        };
        // SAFETY: as above.
        if unsafe { core::ptr::read_volatile(last) } != 0 {
            self.clear_tunnel();
        }
    }

    /// Clears the packet's fields for the inner packet of a tunnel: every
    /// byte before `tunnel`, keeping the frame's length and VLAN tags.
    #[inline(always)]
    pub fn clear_for_inner(&mut self) {
        let frame_len = self.frame_len;
        let vlan = self.vlan;
        let vlan_count = self.vlan_count;
        self.zero(0, core::mem::offset_of!(PacketMeta, tunnel));
        self.frame_len = frame_len;
        self.vlan = vlan;
        self.vlan_count = vlan_count;
    }

    /// Back to the outer packet after a tunnel's inner packet turned out
    /// unparsable: the inner frame's VLAN tags (those past `outer_tags`)
    /// and the tunnel's facts are cleared.
    #[inline(always)]
    pub fn abandon_inner(&mut self, outer_tags: u8) {
        for i in 0..MAX_VLAN_TAGS {
            if i >= outer_tags as usize {
                self.vlan[i] = 0;
            }
        }
        self.vlan_count = outer_tags;
        self.clear_tunnel();
    }

    /// Zeroes `tunnel` (see `clear`).
    #[inline(always)]
    pub fn clear_tunnel(&mut self) {
        self.zero(
            core::mem::offset_of!(PacketMeta, tunnel),
            core::mem::size_of::<PacketMeta>(),
        );
    }

    /// Zeroes bytes `start..end` (multiples of 4, constants once inlined)
    /// with volatile stores: one 4-byte store to reach an 8-byte boundary,
    /// 8-byte stores, and a 4-byte store for a remainder.
    #[inline(always)]
    fn zero(&mut self, start: usize, end: usize) {
        debug_assert!(
            start.is_multiple_of(4) && end.is_multiple_of(4) && end <= core::mem::size_of::<Self>()
        );
        let base = core::ptr::from_mut(self).cast::<u8>();
        let mut at = start;
        if !at.is_multiple_of(8) && at < end {
            // SAFETY: `PacketMeta` is 8-aligned and its size a multiple of
            // 8 (sensor_common::layout), `at` a multiple of 4 below `end`,
            // which is inside `self`: the word is aligned and inside; every
            // bit pattern is valid (FromBytes).
            unsafe { core::ptr::write_volatile(base.add(at).cast::<u32>(), 0) };
            at += 4;
        }
        while at + 8 <= end {
            // SAFETY: as above; `at` is now a multiple of 8.
            unsafe { core::ptr::write_volatile(base.add(at).cast::<u64>(), 0) };
            at += 8;
        }
        if at < end {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(base.add(at).cast::<u32>(), 0) };
        }
    }

    /// Whether the packet is the inner packet of a tunnel.
    #[inline(always)]
    pub fn in_tunnel(&self) -> bool {
        self.tunnel.kind != tunnel::NONE
    }

    #[inline(always)]
    pub fn src_key(&self) -> AddrKey {
        AddrKey::new(self.ip_version, self.src_addr)
    }

    #[inline(always)]
    pub fn dst_key(&self) -> AddrKey {
        AddrKey::new(self.ip_version, self.dst_addr)
    }
}

// `PacketMeta::clear` reads the last word to tell whether `tunnel` needs
// clearing: `tunnel` must end the struct, with `kind` and `has_id` in it.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(PacketMeta, tunnel) + size_of::<Tunnel>() == size_of::<PacketMeta>());
    assert!(offset_of!(Tunnel, kind) >= size_of::<Tunnel>() - 4);
    assert!(offset_of!(Tunnel, has_id) >= size_of::<Tunnel>() - 4);
};
