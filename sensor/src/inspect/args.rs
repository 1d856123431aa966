//! `sensor inspect`'s flags (CONTRACT section 1), owned here so the
//! inspect layer does not depend on the command line above it.

use clap::Args;

/// `sensor inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(long)]
    pub iface: String,
    /// pcap-filter subset, e.g. "tcp and dst port 80".
    #[arg(long)]
    pub filter: Option<String>,
    /// Stop after N packets.
    #[arg(long)]
    pub count: Option<u64>,
    /// One JSON object per packet instead of text.
    #[arg(long)]
    pub json: bool,
    /// Most records per second the kernel sends.
    #[arg(long)]
    pub max_rate: Option<u32>,
    /// Print a summary every SECS seconds instead of packets.
    #[arg(long, value_name = "SECS")]
    pub summary: Option<u64>,
}
