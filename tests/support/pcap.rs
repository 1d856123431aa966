//! Writes crafted frames to a pcap file (Ethernet link type), for
//! tcpreplay and `sensor replay`.

use std::path::Path;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header).expect("pcap header");
    // One millisecond apart, starting at an arbitrary fixed time.
    let start = Duration::from_secs(1_790_000_000);
    for (i, frame) in frames.iter().enumerate() {
        let packet = PcapPacket::new(
            start + Duration::from_millis(i as u64),
            frame.len() as u32,
            frame,
        );
        writer.write_packet(&packet).expect("write packet");
    }
}
