//! The IPv6 extension-header chain checks: `ipv6_routing_type0`,
//! `ipv6_duplicate_ext_header`, `ipv6_hop_by_hop_not_first`.
//!
//! A walk of its own over the chain the parser walks (same headers, same
//! stopping points), one header per [`chain_step`], so that the kernel runs
//! it as a `bpf_loop` whose step the verifier checks once: inside the
//! parser's own walk these checks multiplied its verifier states past the
//! program's budget. Only packets whose IPv6 header names an extension
//! header pay for it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::bytes::PacketBytes;
use crate::packet::{MAX_IPV6_EXT_HEADERS, event};
use crate::parse::{IPV6_AH, IPV6_FRAGMENT, IPV6_HOP_BY_HOP, IPV6_ROUTING, is_ipv6_extension};

/// [`ChainWalk::seen`] bits: which extension headers the walk met.
pub mod seen {
    pub const HOP_BY_HOP: u8 = 1 << 0;
    pub const ROUTING: u8 = 1 << 1;
    pub const FRAGMENT: u8 = 1 << 2;
    pub const AH: u8 = 1 << 3;
    pub const DEST_OPTS: u8 = 1 << 4;
    /// Destination options a second time.
    pub const DEST_OPTS_TWICE: u8 = 1 << 5;
}

/// One walk over one packet's extension-header chain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ChainWalk {
    /// Where the next header starts.
    pub offset: u32,
    /// Where the IP packet ends.
    pub ip_end: u32,
    /// Headers walked so far.
    pub walked: u32,
    /// The events found so far.
    pub events: u32,
    /// The next header's type.
    pub next: u8,
    /// [`seen`] bits.
    pub seen: u8,
    pub _pad: [u8; 2],
}

impl ChainWalk {
    /// A walk from the first extension header at `offset`, of type `next`.
    #[inline(always)]
    pub fn new(offset: usize, ip_end: usize, next: u8) -> ChainWalk {
        ChainWalk {
            offset: offset as u32,
            ip_end: ip_end as u32,
            next,
            ..ChainWalk::default()
        }
    }
}

/// Checks the header at `walk.offset` and moves past it; false once the
/// walk is over, where the parser's walk stops too: an upper-layer header,
/// [`MAX_IPV6_EXT_HEADERS`] headers, a header cut by the payload length, a
/// second fragment header, or a later fragment's data.
#[inline(always)]
pub fn chain_step<B: PacketBytes + ?Sized>(bytes: &B, walk: &mut ChainWalk) -> bool {
    let next = walk.next;
    if !is_ipv6_extension(next) || walk.walked as usize >= MAX_IPV6_EXT_HEADERS {
        return false;
    }
    let offset = walk.offset as usize;
    let ip_end = walk.ip_end as usize;
    if offset + 2 > ip_end {
        return false;
    }
    let Some(head) = bytes.load::<[u8; 2]>(offset) else {
        return false;
    };
    let header_len = match next {
        IPV6_FRAGMENT => 8,
        IPV6_AH => (head[1] as usize + 2) * 4,
        _ => (head[1] as usize + 1) * 8,
    };
    if offset + header_len > ip_end {
        return false;
    }
    let once = match next {
        IPV6_HOP_BY_HOP => seen::HOP_BY_HOP,
        IPV6_ROUTING => seen::ROUTING,
        IPV6_FRAGMENT => seen::FRAGMENT,
        IPV6_AH => seen::AH,
        _ => 0,
    };
    let duplicate = if once != 0 {
        let again = walk.seen & once != 0;
        walk.seen |= once;
        again
    } else if walk.seen & seen::DEST_OPTS_TWICE != 0 {
        true
    } else if walk.seen & seen::DEST_OPTS != 0 {
        walk.seen |= seen::DEST_OPTS_TWICE;
        false
    } else {
        walk.seen |= seen::DEST_OPTS;
        false
    };
    if duplicate {
        walk.events |= event::bit(event::IPV6_DUPLICATE_EXT_HEADER);
    }
    if next == IPV6_HOP_BY_HOP && walk.walked != 0 {
        walk.events |= event::bit(event::IPV6_HOP_BY_HOP_NOT_FIRST);
    }
    // The routing type is the third byte; every routing header has eight.
    if next == IPV6_ROUTING && bytes.load::<u8>(offset + 2) == Some(0) {
        walk.events |= event::bit(event::IPV6_ROUTING_TYPE0);
    }
    if next == IPV6_FRAGMENT {
        // A second fragment header ends the parser's walk; so does a later
        // fragment (what follows is data, not headers).
        let later = bytes
            .load::<[u8; 2]>(offset + 2)
            .is_some_and(|field| u16::from_be_bytes(field) >> 3 != 0);
        if duplicate || later {
            return false;
        }
    }
    walk.next = head[0];
    walk.offset = (offset + header_len) as u32;
    walk.walked += 1;
    true
}
