//! Plain types every layer may share: the sensor's modes, output formats
//! and policies, chosen on the command line or in the configuration and
//! read by the kernel loader, the sinks and the engine. No I/O and no
//! dependency on any other module of the crate: this is the bottom layer.
//! Also the checks of plain values more than one input shares (interface
//! names, inspect limits), so each is written once.

use clap::ValueEnum;

/// `--xdp-mode`: how to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (skb) mode when the
    /// driver refuses.
    Auto,
    Native,
    Skb,
}

/// The sensor's mode: `ids` only reports, `drop` enforces `drop` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorMode {
    Ids,
    Drop,
}

/// Drop mode's safety settings (configuration `drop:` section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropPolicy {
    pub allowlist: Vec<ipnet::IpNet>,
    pub blocklist: Vec<ipnet::IpNet>,
    pub dry_run: bool,
    /// When a match blocks its source (`block_when`, `block_repeat`, `proof_seconds`).
    pub block: sensor_common::tables::BlockPolicy,
    /// Sizes of the maps proof of address and `repeated` keep.
    pub maps: DropMapSizes,
}

/// Entries of drop mode's LRU maps (`drop.handshake_entries`,
/// `proven_entries`, `repeat_entries`), set when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropMapSizes {
    pub handshakes: u32,
    pub proven: u32,
    pub repeats: u32,
}

impl DropMapSizes {
    /// The smallest and largest size a config may ask for.
    pub const RANGE: std::ops::RangeInclusive<u32> = 1_024..=4_194_304;
}

impl Default for DropMapSizes {
    fn default() -> Self {
        use sensor_common::tables::{HANDSHAKE_ENTRIES, PROVEN_ENTRIES, REPEAT_ENTRIES};
        DropMapSizes {
            handshakes: HANDSHAKE_ENTRIES,
            proven: PROVEN_ENTRIES,
            repeats: REPEAT_ENTRIES,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// `--redis-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum RedisMode {
    /// RPUSH onto a list.
    #[default]
    List,
    /// PUBLISH on a channel.
    Channel,
    /// XADD to a stream, capped with `MAXLEN ~`.
    Stream,
}

impl RedisMode {
    pub fn name(self) -> &'static str {
        match self {
            RedisMode::List => "list",
            RedisMode::Channel => "channel",
            RedisMode::Stream => "stream",
        }
    }
}

/// Alert severity (`severity` in the rule; JSON 1..4, syslog 2..5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    /// The alert JSON's `severity` number.
    pub fn number(self) -> u8 {
        match self {
            Severity::Critical => 1,
            Severity::High => 2,
            Severity::Medium => 3,
            Severity::Low => 4,
        }
    }

    /// RFC 5424 severity for syslog (crit, err, warning, notice).
    pub fn syslog(self) -> u8 {
        self.number() + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// Longest interface name Linux accepts (IFNAMSIZ minus the NUL).
pub const MAX_IFACE_LEN: usize = 15;

/// Whether `name` can be a Linux interface's name (the kernel's
/// `dev_valid_name`, plus no control characters): 1 to 15 bytes, not `.`
/// or `..`, no `/`, `:` or white space. The one check for `--iface`,
/// `iface:` in the config and the control socket's file name.
pub fn valid_iface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFACE_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// The limits of an inspect session, checked where they are given (the
/// `sensor inspect` flags) and where they are obeyed (the control server):
/// a summary period of at least a second, a record rate of at least one
/// per second.
pub fn check_inspect_limits(
    max_rate: Option<u32>,
    summary: Option<u64>,
) -> Result<(), &'static str> {
    if summary == Some(0) {
        return Err("--summary needs a period of at least 1 second");
    }
    if max_rate == Some(0) {
        return Err("--max-rate must be at least 1 packet per second (per CPU)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_linux() {
        for good in ["eth0", "veth-a.100", "a", "123456789012345"] {
            assert!(valid_iface_name(good), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "eth 0",
            "tab\t",
            "nul\0",
            "1234567890123456",
        ] {
            assert!(!valid_iface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn inspect_limits_refuse_zero() {
        assert_eq!(check_inspect_limits(None, None), Ok(()));
        assert_eq!(check_inspect_limits(Some(1), Some(1)), Ok(()));
        assert!(
            check_inspect_limits(None, Some(0))
                .unwrap_err()
                .contains("--summary")
        );
        assert!(
            check_inspect_limits(Some(0), None)
                .unwrap_err()
                .contains("--max-rate")
        );
    }
}
