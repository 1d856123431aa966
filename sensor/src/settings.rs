//! Plain types every layer may share: the sensor's modes, output formats
//! and policies, chosen on the command line or in the configuration and
//! read by the kernel loader, the sinks and the engine. No I/O and no
//! dependency on any other module of the crate: this is the bottom layer.

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
