//! Where syslog messages go: the `--syslog` URL forms (`udp://`, `tcp://`,
//! `tls://`, `unix://`) parsed into a [`SyslogTarget`]. The one parser of
//! syslog URLs: the flag and the config file both go through it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where messages go: `--syslog URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    /// `udp://HOST:PORT`: one message per datagram (RFC 5426).
    Udp(HostPort),
    /// `tcp://HOST:PORT`: a stream, framed as [`Framing`] says.
    Tcp(HostPort),
    /// `tls://HOST:PORT`: RFC 5425, octet-counted RFC 5424 over TLS.
    Tls(HostPort),
    /// `unix:///dev/log`: one message per datagram on a local socket.
    Unix(PathBuf),
}

/// A host name or IP literal and a port. The name is resolved at each
/// (re)connection, so a peer that moved is found again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Without brackets for IPv6 literals.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogTarget::Udp(peer) => write!(f, "udp://{peer}"),
            SyslogTarget::Tcp(peer) => write!(f, "tcp://{peer}"),
            SyslogTarget::Tls(peer) => write!(f, "tls://{peer}"),
            SyslogTarget::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A `--syslog` value that is not one of the accepted URL forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid syslog URL `{url}`: {reason} (expected udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH)"
)]
pub struct SyslogUrlError {
    pub url: String,
    pub reason: String,
}

impl SyslogTarget {
    pub fn parse(url: &str) -> Result<SyslogTarget, SyslogUrlError> {
        let fail = |reason: &str| SyslogUrlError {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(fail("no scheme"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => parse_host_port(rest).map(SyslogTarget::Udp).map_err(fail),
            "tcp" => parse_host_port(rest).map(SyslogTarget::Tcp).map_err(fail),
            "tls" => parse_host_port(rest).map(SyslogTarget::Tls).map_err(fail),
            "unix" => {
                if !rest.starts_with('/') {
                    return Err(fail("the socket path must be absolute (unix:///dev/log)"));
                }
                if rest.len() == 1 || rest.ends_with('/') {
                    return Err(fail("the socket path names a directory"));
                }
                Ok(SyslogTarget::Unix(PathBuf::from(rest)))
            }
            _ => Err(fail(&format!(
                "unknown scheme `{scheme}` (udp, tcp, tls or unix)"
            ))),
        }
    }
}

impl FromStr for SyslogTarget {
    type Err = SyslogUrlError;
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        SyslogTarget::parse(url)
    }
}

pub(super) fn parse_host_port(authority: &str) -> Result<HostPort, &'static str> {
    if authority.contains(['/', '?', '#', '@']) {
        return Err("only HOST:PORT may follow the scheme (no path, query or user)");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("unclosed `[` in an IPv6 address")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address between `[` and `]`");
        }
        let port = after.strip_prefix(':').ok_or("missing port")?;
        (host, port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or("missing port")?;
        if host.contains(':') {
            return Err("an IPv6 address must be written in brackets: [ADDR]:PORT");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("missing host");
    }
    let port: u16 = port
        .parse()
        .map_err(|_| "the port must be a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port must be a number from 1 to 65535");
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}
