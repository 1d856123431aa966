//! Writes crafted frames to a pcap file (Ethernet link type), for
//! tcpreplay and `sensor replay`.

use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// `frames` one millisecond apart.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_pcap_spaced(path, frames, Duration::from_millis(1));
}

/// Writes `frames` as an Ethernet pcap, `spacing` apart from an arbitrary
/// fixed time, so that `sensor replay` sees the times a live injection at
/// `1 / spacing` packets per second has.
pub fn write_pcap_spaced(path: &Path, frames: &[Vec<u8>], spacing: Duration) {
    let file = std::fs::File::create(path).expect("create pcap");
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header).expect("pcap header");
    let start = Duration::from_secs(1_790_000_000);
    for (i, frame) in frames.iter().enumerate() {
        let packet = PcapPacket::new(start + spacing * i as u32, frame.len() as u32, frame);
        writer.write_packet(&packet).expect("write packet");
    }
}
