//! Bounded byte access: the only way the parser reads a packet.

use zerocopy::FromBytes;

use crate::ipv6_chain::{ChainWalk, chain_step};
use crate::options::{MAX_OPTION_BYTES, OptionWalk, option_step};
use crate::packet::MAX_IPV6_EXT_HEADERS;

/// The furthest offset the parser ever reads at: a jumbo frame (9 KiB), so
/// no header inside a frame the sensor can receive is out of reach (long
/// IPv6 extension headers must not hide the transport header). Every load is
/// checked against it before any pointer arithmetic, which is what lets the
/// BPF verifier accept variable offsets (VLAN tags, IHL, extension headers).
pub const MAX_PARSE_OFFSET: usize = 9216;

/// Read-only, bounds-checked access to a frame.
pub trait PacketBytes {
    /// Bytes in the frame as received.
    fn frame_len(&self) -> usize;

    /// Reads a `T` (plain bytes, any alignment) at `offset`, or `None` when
    /// it does not lie wholly inside the frame or beyond [`MAX_PARSE_OFFSET`].
    fn load<T: Copy + FromBytes>(&self, offset: usize) -> Option<T>;

    /// Returns `value` unchanged, but in the kernel forgets what the
    /// verifier knows of it (by a round trip through map memory). The
    /// parser calls it on the running offset at the end of each IPv6
    /// extension header, so that every path through one header reaches the
    /// next with the same verifier state and is checked once, not once per
    /// combination of header lengths.
    #[inline(always)]
    fn opaque(&self, value: usize) -> usize {
        value
    }

    /// The events of the IPv4 or TCP options in the `len` bytes at `start`
    /// (see [`crate::options`]): `malformed` for a malformed option, and
    /// with `source_route` the IPv4 LSRR/SSRR event. The kernel runs the
    /// same steps in a `bpf_loop`.
    #[inline(always)]
    fn option_events(&self, start: usize, len: usize, malformed: u32, source_route: bool) -> u32 {
        let mut walk = OptionWalk::EMPTY;
        walk.start(len, malformed, source_route);
        for i in 0..walk.len as usize {
            match self.u8_at(start + i) {
                Some(byte) => walk.bytes[i] = byte,
                None => {
                    // Not reached: the options lie inside the header.
                    walk.len = i as u32;
                    break;
                }
            }
        }
        for _ in 0..MAX_OPTION_BYTES {
            if !option_step(&mut walk) {
                break;
            }
        }
        walk.events
    }

    /// The events of the IPv6 extension-header chain that starts at
    /// `offset` with a header of type `next` (see [`crate::ipv6_chain`]).
    /// The kernel runs the same steps in a `bpf_loop`.
    #[inline(always)]
    fn ipv6_chain_events(&self, offset: usize, ip_end: usize, next: u8) -> u32 {
        let mut walk = ChainWalk::new(offset, ip_end, next);
        for _ in 0..MAX_IPV6_EXT_HEADERS {
            if !chain_step(self, &mut walk) {
                break;
            }
        }
        walk.events
    }

    /// Copies the 16 bytes at `offset` into `out` (an IPv6 address),
    /// or returns false when they do not lie wholly inside the frame. The
    /// kernel reads them as four words.
    #[inline(always)]
    fn load_addr(&self, offset: usize, out: &mut [u8; 16]) -> bool {
        match self.load::<[u8; 16]>(offset) {
            Some(addr) => {
                *out = addr;
                true
            }
            None => false,
        }
    }

    #[inline(always)]
    fn u8_at(&self, offset: usize) -> Option<u8> {
        self.load::<u8>(offset)
    }

    #[inline(always)]
    fn be16_at(&self, offset: usize) -> Option<u16> {
        self.load::<[u8; 2]>(offset).map(u16::from_be_bytes)
    }

    #[inline(always)]
    fn be32_at(&self, offset: usize) -> Option<u32> {
        self.load::<[u8; 4]>(offset).map(u32::from_be_bytes)
    }
}

impl PacketBytes for [u8] {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn load<T: Copy + FromBytes>(&self, offset: usize) -> Option<T> {
        if offset > MAX_PARSE_OFFSET {
            return None;
        }
        let end = offset.checked_add(core::mem::size_of::<T>())?;
        if end > self.len() {
            return None;
        }
        // SAFETY: offset..end is inside the slice, read unaligned, and T is
        // FromBytes: every bit pattern of its size is a valid T.
        Some(unsafe { core::ptr::read_unaligned(self.as_ptr().add(offset).cast::<T>()) })
    }
}
