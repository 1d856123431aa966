//! The command line (CONTRACT section 1).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use sensor_common::alert::{DEFAULT_ALERT_PACKET_BYTES, MAX_ALERT_PACKET_BYTES};

pub use crate::inspect::InspectArgs;
use crate::settings::{AttachMode, RedisMode, SensorMode, SyslogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "sensor",
    version,
    about = "XDP network security sensor and anomaly detector"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to an interface and raise alerts live.
    Run(Box<RunArgs>),
    /// Run the same detection offline on a pcap or pcapng file.
    Replay(ReplayArgs),
    /// Rule file tools.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Show TCP/IP headers live, filtered in the kernel.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to attach to; repeat it to watch several in one process
    /// (or `iface` / `ifaces` in --config).
    #[arg(long, value_name = "IFACE", value_parser = iface_name)]
    pub iface: Vec<String>,
    /// Rule file or directory of *.yaml / *.yml (or `rules` in --config).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// ids only reports; drop enforces `action: drop` rules.
    #[arg(long, value_enum)]
    pub mode: Option<SensorMode>,
    /// In drop mode, report what would be blocked but drop nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// XDP attach mode: auto tries native, then generic (skb).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<AttachMode>,
    /// Write alert lines to PATH, or `-` for stdout (the default with no other sink).
    #[arg(long, value_name = "PATH|-")]
    pub json: Option<String>,
    /// Send alerts to syslog: udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT
    /// (RFC 5425) or unix:///dev/log.
    #[arg(long, value_name = "URL")]
    pub syslog: Option<String>,
    #[arg(long, value_enum)]
    pub syslog_format: Option<SyslogFormat>,
    /// tls:// only (required there): PEM CA certificates the server's must chain to.
    #[arg(long, value_name = "FILE")]
    pub syslog_ca: Option<PathBuf>,
    /// tls:// only: PEM client certificate chain (with --syslog-key).
    #[arg(long, value_name = "FILE")]
    pub syslog_cert: Option<PathBuf>,
    /// tls:// only: PEM private key of --syslog-cert.
    #[arg(long, value_name = "FILE")]
    pub syslog_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Frame bytes each alert carries in `packet` (0 leaves the field out;
    /// default 128, at most 1024).
    #[arg(long, value_name = "N", value_parser = packet_bytes)]
    pub packet_bytes: Option<u16>,
    /// Seed of the alert lines' Community ID (0 to 65535; default 0).
    #[arg(long, value_name = "N")]
    pub community_id_seed: Option<u16>,
    /// Send alert lines to Redis: redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Redis key: the list, channel or stream name (default `sensor`).
    #[arg(long, value_name = "KEY")]
    pub redis_key: Option<String>,
    /// list (RPUSH, default), channel (PUBLISH) or stream (XADD).
    #[arg(long, value_enum)]
    pub redis_mode: Option<RedisMode>,
    /// Stream mode: approximate cap on the stream's length (default 100000).
    #[arg(long, value_name = "N")]
    pub redis_stream_maxlen: Option<u64>,
    /// rediss:// only: PEM CA certificates for the server (default: system roots).
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// YAML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// pcap or pcapng file.
    #[arg(long)]
    pub pcap: PathBuf,
    /// Rule file or directory.
    #[arg(long)]
    pub rules: PathBuf,
    /// Write alert lines to PATH, or `-` for stdout (default).
    #[arg(long, value_name = "PATH|-", default_value = "-")]
    pub json: String,
    /// Frame bytes each alert carries in `packet` (0 leaves the field out).
    #[arg(long, value_name = "N", value_parser = packet_bytes, default_value_t = DEFAULT_ALERT_PACKET_BYTES)]
    pub packet_bytes: u16,
    /// Seed of the alert lines' Community ID (0 to 65535).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub community_id_seed: u16,
}

/// `--iface`: a name Linux accepts for an interface (the one validator).
fn iface_name(text: &str) -> Result<String, String> {
    if crate::settings::valid_iface_name(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "not a valid interface name (1 to {} bytes, not `.` or `..`, no '/', ':' or spaces)",
            crate::settings::MAX_IFACE_LEN
        ))
    }
}

/// `--packet-bytes`: 0 to [`MAX_ALERT_PACKET_BYTES`].
fn packet_bytes(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|n| *n <= MAX_ALERT_PACKET_BYTES)
        .ok_or_else(|| format!("must be a whole number from 0 to {MAX_ALERT_PACKET_BYTES}"))
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rule file or directory and summarise what it will do.
    Check { path: PathBuf },
}
