//! Reading captures: pcap (both byte orders and time resolutions) and
//! pcapng (section, interface and packet blocks), link types down to the IP
//! header, and where a bad record starts.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::path::Path;

use pcap_file::pcap::{PcapHeader, PcapReader};
use pcap_file::pcapng::PcapNgReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use sensor_common::PacketBytes;
use sensor_common::packet::PacketMeta;
use sensor_common::parse::{ETH_P_IPV4, ETH_P_IPV6, parse_ethernet, parse_ip_at};
use sensor_common::zerocopy::FromBytes;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Pcap,
    PcapNg,
}

pub(super) fn read_prefix(file: &mut File, len: usize) -> io::Result<Vec<u8>> {
    let mut prefix = Vec::with_capacity(len);
    file.by_ref().take(len as u64).read_to_end(&mut prefix)?;
    Ok(prefix)
}

pub(super) fn detect_format(prefix: &[u8]) -> Result<Format, String> {
    let Some(magic) = prefix.get(..4) else {
        return Err(format!("the file has only {} bytes", prefix.len()));
    };
    match u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]) {
        0xA1B2_C3D4 | 0xA1B2_3C4D | 0xD4C3_B2A1 | 0x4D3C_B2A1 => Ok(Format::Pcap),
        0x0A0D_0D0A => Ok(Format::PcapNg),
        magic if magic >> 16 == 0x1F8B => {
            Err("it is gzip-compressed; decompress it first".to_owned())
        }
        magic => Err(format!("unknown magic number {magic:#010x}")),
    }
}

/// How a link type's frames reach the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Link {
    Ethernet,
    /// IPv4 or IPv6, told apart by the version nibble.
    RawIp,
    Ipv4,
    Ipv6,
    LinuxSll,
    LinuxSll2,
}

impl Link {
    pub(super) fn from_linktype(linktype: u32) -> Option<Link> {
        match linktype {
            1 => Some(Link::Ethernet),
            12 | 14 | 101 => Some(Link::RawIp),
            228 => Some(Link::Ipv4),
            229 => Some(Link::Ipv6),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            _ => None,
        }
    }

    pub(super) fn parse(self, frame: &CapturedFrame) -> PacketMeta {
        match self {
            Link::Ethernet => parse_ethernet(frame),
            Link::RawIp => {
                let ethertype = match frame.u8_at(0).map(|b| b >> 4) {
                    Some(4) => ETH_P_IPV4,
                    Some(6) => ETH_P_IPV6,
                    _ => 0,
                };
                parse_ip_at(frame, ethertype, 0)
            }
            Link::Ipv4 => parse_ip_at(frame, ETH_P_IPV4, 0),
            Link::Ipv6 => parse_ip_at(frame, ETH_P_IPV6, 0),
            Link::LinuxSll => {
                let protocol = frame.be16_at(SLL_PROTOCOL_OFFSET).unwrap_or(0);
                parse_ip_at(frame, protocol, SLL_HEADER_LEN)
            }
            Link::LinuxSll2 => {
                let protocol = frame.be16_at(0).unwrap_or(0);
                parse_ip_at(frame, protocol, SLL2_HEADER_LEN)
            }
        }
    }
}

/// The link type's parser, and the number itself (for `packet_info`).
pub(super) fn link_for(path: &Path, linktype: u32) -> Result<(Link, u32), ReplayError> {
    match Link::from_linktype(linktype) {
        Some(link) => Ok((link, linktype)),
        None => Err(ReplayError::UnsupportedLinkType {
            path: path.to_owned(),
            linktype,
            name: format!("{:?}", DataLink::from(linktype)),
        }),
    }
}

/// A frame as captured: `bytes` may stop short of the frame's length on the
/// wire (snap length). The parser sees the wire length, so IP length fields
/// are judged against the real packet, and only the captured bytes, so
/// what was not captured is absent rather than invented.
pub(super) struct CapturedFrame<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) wire_len: usize,
}

impl PacketBytes for CapturedFrame<'_> {
    fn frame_len(&self) -> usize {
        self.wire_len.max(self.bytes.len())
    }

    fn load<T: Copy + FromBytes>(&self, offset: usize) -> Option<T> {
        self.bytes.load(offset)
    }
}

/// Reading position in one capture file, for error messages.
pub(super) struct CaptureFile<'p> {
    pub(super) path: &'p Path,
    pub(super) packets_read: u64,
}

impl CaptureFile<'_> {
    pub(super) fn read_pcap(
        &mut self,
        input: impl Read,
        detector: &mut Detector<'_, '_>,
    ) -> Result<(), ReplayError> {
        let mut reader =
            PcapReader::new(input).map_err(|error| self.header_error(error, "pcap file header"))?;
        let header: PcapHeader = reader.header();
        let link = link_for(self.path, header.datalink.into())?;
        let fraction_ns: u64 = match header.ts_resolution {
            TsResolution::MicroSecond => 1_000,
            TsResolution::NanoSecond => 1,
        };
        let mut offset = PCAP_HEADER_LEN;
        while let Some(next) = reader.next_raw_packet() {
            let packet = next.map_err(|error| self.record_error(error, offset))?;
            self.packets_read += 1;
            let now_ns = u64::from(packet.ts_sec) * NANOS_PER_SECOND
                + u64::from(packet.ts_frac) * fraction_ns;
            let frame = CapturedFrame {
                bytes: &packet.data,
                wire_len: packet.orig_len as usize,
            };
            detector.on_frame(self.packets_read, now_ns, link, &frame)?;
            offset += PCAP_RECORD_HEADER_LEN + u64::from(packet.incl_len);
        }
        Ok(())
    }

    pub(super) fn read_pcapng(
        &mut self,
        input: impl Read,
        prefix: &[u8],
        detector: &mut Detector<'_, '_>,
    ) -> Result<(), ReplayError> {
        let mut offset = first_block_len(prefix).ok_or_else(|| ReplayError::NotACapture {
            path: self.path.to_owned(),
            reason: "the pcapng section header is truncated".to_owned(),
        })?;
        let mut reader = PcapNgReader::new(input)
            .map_err(|error| self.header_error(error, "pcapng section header"))?;
        let mut section = Section::of(&reader);
        // Simple packet blocks have no timestamp: they take the last one seen.
        let mut last_ns = 0;
        while let Some(next) = reader.next_raw_block() {
            let block = next.map_err(|error| self.record_error(error, offset))?;
            let block_len = u64::from(block.initial_len);
            let packet = match block.type_ {
                ENHANCED_PACKET_BLOCK | PACKET_BLOCK | SIMPLE_PACKET_BLOCK => Some(
                    PacketBlock::parse(block.type_, &block.body, section.endianness).ok_or_else(
                        || {
                            self.corrupt(
                                offset,
                                "packet block shorter than its captured length".to_owned(),
                            )
                        },
                    )?,
                ),
                _ => None,
            };
            if let Some(packet) = packet {
                let interface = section
                    .interfaces
                    .get(packet.interface as usize)
                    .ok_or_else(|| {
                        self.corrupt(
                            offset,
                            format!(
                                "packet of interface {} that was never described",
                                packet.interface
                            ),
                        )
                    })?;
                let link = link_for(self.path, interface.linktype)?;
                self.packets_read += 1;
                if let Some(units) = packet.timestamp {
                    last_ns = interface.timestamp_ns(units);
                }
                let frame = CapturedFrame {
                    bytes: packet.data,
                    wire_len: packet.wire_len as usize,
                };
                detector.on_frame(self.packets_read, last_ns, link, &frame)?;
            } else if matches!(
                block.type_,
                SECTION_HEADER_BLOCK | INTERFACE_DESCRIPTION_BLOCK
            ) {
                section = Section::of(&reader);
            }
            offset += block_len;
        }
        Ok(())
    }

    pub(super) fn corrupt(&self, offset: u64, reason: String) -> ReplayError {
        ReplayError::Corrupt {
            path: self.path.to_owned(),
            packets_read: self.packets_read,
            offset,
            reason,
        }
    }

    pub(super) fn record_error(&self, error: PcapError, offset: u64) -> ReplayError {
        match error {
            PcapError::IoError(source) if source.kind() == ErrorKind::UnexpectedEof => self
                .corrupt(
                    offset,
                    "the file ends inside this record (truncated file, or a corrupt length field)"
                        .to_owned(),
                ),
            PcapError::IoError(source) => ReplayError::Read {
                path: self.path.to_owned(),
                offset,
                source,
            },
            other => self.corrupt(offset, other.to_string()),
        }
    }

    pub(super) fn header_error(&self, error: PcapError, what: &str) -> ReplayError {
        match error {
            PcapError::IoError(source) if source.kind() != ErrorKind::UnexpectedEof => {
                ReplayError::Read {
                    path: self.path.to_owned(),
                    offset: 0,
                    source,
                }
            }
            PcapError::IoError(_) => ReplayError::NotACapture {
                path: self.path.to_owned(),
                reason: format!("the {what} is truncated"),
            },
            other => ReplayError::NotACapture {
                path: self.path.to_owned(),
                reason: format!("bad {what}: {other}"),
            },
        }
    }
}

/// Length of the pcapng file's first block (its section header), read from
/// the prefix in the byte order its byte-order magic gives.
pub(super) fn first_block_len(prefix: &[u8]) -> Option<u64> {
    let len: [u8; 4] = prefix.get(4..8)?.try_into().ok()?;
    let magic: [u8; 4] = prefix.get(8..12)?.try_into().ok()?;
    if u32::from_be_bytes(magic) == PCAPNG_BYTE_ORDER_MAGIC {
        Some(u64::from(u32::from_be_bytes(len)))
    } else {
        Some(u64::from(u32::from_le_bytes(len)))
    }
}

/// What a pcapng section says about its interfaces.
pub(super) struct Section {
    pub(super) endianness: Endianness,
    pub(super) interfaces: Vec<Interface>,
}

pub(super) struct Interface {
    pub(super) linktype: u32,
    /// `if_tsresol`: the bit 7 flag and the exponent.
    pub(super) resolution: u8,
    /// `if_tsoffset`, seconds.
    pub(super) offset_s: u64,
}

impl Section {
    pub(super) fn of<R: Read>(reader: &PcapNgReader<R>) -> Section {
        let interfaces = reader
            .interfaces()
            .iter()
            .map(|idb| {
                let mut interface = Interface {
                    linktype: idb.linktype.into(),
                    resolution: 6, // microseconds unless said otherwise
                    offset_s: 0,
                };
                for option in &idb.options {
                    match option {
                        InterfaceDescriptionOption::IfTsResol(resolution) => {
                            interface.resolution = *resolution
                        }
                        InterfaceDescriptionOption::IfTsOffset(offset) => {
                            interface.offset_s = *offset
                        }
                        _ => {}
                    }
                }
                interface
            })
            .collect();
        Section {
            endianness: reader.section().endianness,
            interfaces,
        }
    }
}

impl Interface {
    /// Nanoseconds since the epoch for a timestamp in this interface's units.
    pub(super) fn timestamp_ns(&self, units: u64) -> u64 {
        let exponent = u32::from(self.resolution & 0x7f);
        let nanos = u128::from(units) * u128::from(NANOS_PER_SECOND);
        let nanos = if self.resolution & 0x80 != 0 {
            nanos.checked_shr(exponent).unwrap_or(0)
        } else {
            10u128
                .checked_pow(exponent)
                .map_or(0, |divisor| nanos / divisor)
        };
        let offset = u128::from(self.offset_s) * u128::from(NANOS_PER_SECOND);
        u64::try_from(nanos + offset).unwrap_or(u64::MAX)
    }
}

/// The fields of an enhanced, simple or (obsolete) packet block.
pub(super) struct PacketBlock<'a> {
    pub(super) interface: u32,
    /// In the interface's units; `None` for simple packet blocks.
    pub(super) timestamp: Option<u64>,
    pub(super) wire_len: u32,
    pub(super) data: &'a [u8],
}

impl<'a> PacketBlock<'a> {
    pub(super) fn parse(
        block_type: u32,
        body: &'a [u8],
        endianness: Endianness,
    ) -> Option<PacketBlock<'a>> {
        let u32_at = |offset: usize| -> Option<u32> {
            let bytes: [u8; 4] = body.get(offset..offset + 4)?.try_into().ok()?;
            Some(match endianness {
                Endianness::Big => u32::from_be_bytes(bytes),
                Endianness::Little => u32::from_le_bytes(bytes),
            })
        };
        if block_type == SIMPLE_PACKET_BLOCK {
            let wire_len = u32_at(0)?;
            let data = body.get(4..)?;
            // The body is padded to 4 bytes; the packet is at most wire_len.
            let captured = data.len().min(wire_len as usize);
            return Some(PacketBlock {
                interface: 0,
                timestamp: None,
                wire_len,
                data: &data[..captured],
            });
        }
        let interface = if block_type == PACKET_BLOCK {
            // Obsolete layout: 16-bit interface id, 16-bit drop count.
            let bytes: [u8; 2] = body.get(0..2)?.try_into().ok()?;
            u32::from(match endianness {
                Endianness::Big => u16::from_be_bytes(bytes),
                Endianness::Little => u16::from_le_bytes(bytes),
            })
        } else {
            u32_at(0)?
        };
        let timestamp = (u64::from(u32_at(4)?) << 32) | u64::from(u32_at(8)?);
        let captured = u32_at(12)? as usize;
        let wire_len = u32_at(16)?;
        let data = body.get(20..20usize.checked_add(captured)?)?;
        Some(PacketBlock {
            interface,
            timestamp: Some(timestamp),
            wire_len,
            data,
        })
    }
}
