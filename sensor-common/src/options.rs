//! IPv4 and TCP options (one format: End of Option List, No-Operation, and
//! type-length-value options): the walk behind `ipv4_source_route`,
//! `ipv4_option_malformed` and `tcp_option_malformed`.
//!
//! The walk runs over a copy of the options, one option per [`option_step`],
//! so that the kernel can run it as a `bpf_loop` whose step the verifier
//! checks once, rather than unrolling up to 40 turns in every context the
//! parser reaches it from.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::packet::event;

/// The most option bytes a header can carry (IPv4 IHL 15, TCP data offset
/// 15: 60 - 20 bytes).
pub const MAX_OPTION_BYTES: usize = 40;
/// Room for the options, a power of two so that a masked index is always
/// inside it (which is how the verifier sees every read in bounds).
pub const OPTION_BUFFER: usize = 64;

const END_OF_LIST: u8 = 0;
const NO_OPERATION: u8 = 1;
const IPV4_LSRR: u8 = 131;
const IPV4_SSRR: u8 = 137;

/// One walk over one header's options.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct OptionWalk {
    pub bytes: [u8; OPTION_BUFFER],
    /// Where the next option starts.
    pub at: u32,
    /// Option bytes present (at most [`MAX_OPTION_BYTES`]).
    pub len: u32,
    /// The event bit raised by a malformed option.
    pub malformed: u32,
    /// The events found so far.
    pub events: u32,
    /// 1: IPv4 options, where LSRR and SSRR raise `ipv4_source_route`.
    pub source_route: u32,
}

impl OptionWalk {
    pub const EMPTY: OptionWalk = OptionWalk {
        bytes: [0; OPTION_BUFFER],
        at: 0,
        len: 0,
        malformed: 0,
        events: 0,
        source_route: 0,
    };

    /// Starts a walk over `len` option bytes (copied in by the caller).
    #[inline(always)]
    pub fn start(&mut self, len: usize, malformed: u32, source_route: bool) {
        self.at = 0;
        self.len = if len > MAX_OPTION_BYTES {
            MAX_OPTION_BYTES as u32
        } else {
            len as u32
        };
        self.malformed = malformed;
        self.events = 0;
        self.source_route = source_route as u32;
    }
}

/// Looks at the option at `walk.at` and moves past it; false once the walk
/// is over (the end, End of Option List, or a malformed option: an option
/// whose length byte is missing, below 2, or runs past the end).
#[inline(always)]
pub fn option_step(walk: &mut OptionWalk) -> bool {
    let at = walk.at as usize;
    let end = walk.len as usize;
    if at >= end {
        return false;
    }
    let kind = walk.bytes[at & (OPTION_BUFFER - 1)];
    if kind == END_OF_LIST {
        return false;
    }
    if kind == NO_OPERATION {
        walk.at += 1;
        return true;
    }
    if walk.source_route != 0 && (kind == IPV4_LSRR || kind == IPV4_SSRR) {
        walk.events |= event::bit(event::IPV4_SOURCE_ROUTE);
    }
    if at + 1 >= end {
        walk.events |= walk.malformed;
        return false;
    }
    let len = walk.bytes[(at + 1) & (OPTION_BUFFER - 1)] as usize;
    if len < 2 || at + len > end {
        walk.events |= walk.malformed;
        return false;
    }
    walk.at = (at + len) as u32;
    true
}
