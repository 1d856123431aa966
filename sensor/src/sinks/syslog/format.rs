//! Syslog message formatting (CONTRACT section 4): RFC 5424 and RFC 3164
//! headers around the alert's JSON, facility and severity, and how each
//! transport frames a message.

use time::OffsetDateTime;

use super::APP_NAME;
use super::target::SyslogTarget;
use crate::alert::{Alert, rfc3339_micros};
use crate::settings::{Severity, SyslogFormat};

/// A syslog facility (RFC 5424 section 6.2.1); `local0` unless configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

const FACILITY_NAMES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Facility {
    pub const LOCAL0: Facility = Facility(16);

    /// The usual names (`local0`..`local7`, `daemon`, `auth`, ...).
    pub fn from_name(name: &str) -> Option<Facility> {
        FACILITY_NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, code)| Facility(code))
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    fn default() -> Self {
        Facility::LOCAL0
    }
}

/// Syslog severity for an alert's JSON `severity` (1..4), through
/// [`Severity::syslog`]: critical → 2, high → 3, medium → 4, low → 5.
pub fn syslog_severity(json_severity: u8) -> u8 {
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ]
    .into_iter()
    .find(|severity| severity.number() == json_severity)
    .map_or(Severity::Low.syslog(), Severity::syslog)
}

/// Builds the syslog message (without transport framing) for an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogFormatter {
    pub format: SyslogFormat,
    pub facility: Facility,
    /// `None`: RFC 5424 writes the nil value `-`; RFC 3164 leaves the field
    /// out, as syslog(3) does on `/dev/log` (local daemons add their own).
    pub hostname: Option<String>,
    pub pid: u32,
}

impl SyslogFormatter {
    /// This machine's host name and this process's id.
    pub fn for_this_host(format: SyslogFormat, facility: Facility) -> SyslogFormatter {
        SyslogFormatter {
            format,
            facility,
            hostname: machine_hostname(),
            pid: std::process::id(),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME sensor PID CATEGORY - JSON` (RFC 5424) or
    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME sensor[PID]: JSON` (RFC 3164).
    /// Both times are the alert's own, in UTC.
    pub fn format(&self, alert: &Alert) -> String {
        let pri =
            u16::from(self.facility.code()) * 8 + u16::from(syslog_severity(alert.alert.severity));
        let json = alert.to_json_line();
        match self.format {
            SyslogFormat::Rfc5424 => format!(
                "<{pri}>1 {time} {host} {APP_NAME} {pid} {msgid} - {json}",
                time = rfc3339_micros::format(alert.timestamp),
                host = self.hostname.as_deref().unwrap_or("-"),
                pid = self.pid,
                msgid = header_field(&alert.alert.category, 32),
            ),
            SyslogFormat::Rfc3164 => {
                let host = match &self.hostname {
                    Some(host) => format!("{host} "),
                    None => String::new(),
                };
                format!(
                    "<{pri}>{time} {host}{APP_NAME}[{pid}]: {json}",
                    time = rfc3164_timestamp(alert.timestamp),
                    pid = self.pid,
                )
            }
        }
    }
}

/// RFC 3164 `Mmm dd hh:mm:ss` (day padded with a space), in UTC: the format
/// has no zone, and the JSON body carries the exact time anyway.
pub fn rfc3164_timestamp(timestamp: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let utc = timestamp.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[usize::from(u8::from(utc.month())) - 1],
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// An RFC 5424 header field: printable ASCII without spaces, at most
/// `max_len` characters, `-` when nothing is left.
pub(super) fn header_field(value: &str, max_len: usize) -> String {
    let field: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max_len)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// gethostname(2), cleaned into a valid header field; `None` when unset.
pub fn machine_hostname() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = header_field(&String::from_utf8_lossy(&buffer[..end]), 255);
    (name != "-").then_some(name)
}

/// How messages are delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One message per datagram (UDP, unix sockets).
    Datagram,
    /// RFC 6587 octet counting: `LEN SP MSG`. rsyslog's imtcp and
    /// syslog-ng's `syslog()` source accept it by default; used for RFC 5424.
    OctetCounting,
    /// RFC 6587 non-transparent framing: `MSG LF`, what legacy RFC 3164
    /// receivers expect. Safe here: a JSON line never holds a raw newline.
    Newline,
}

impl Framing {
    pub fn for_target(target: &SyslogTarget, format: SyslogFormat) -> Framing {
        match (target, format) {
            (SyslogTarget::Tcp(_), SyslogFormat::Rfc5424) => Framing::OctetCounting,
            (SyslogTarget::Tcp(_), SyslogFormat::Rfc3164) => Framing::Newline,
            // RFC 5425 section 4.3: octet counting only (RFC 3164 is refused
            // with tls:// before the sink starts).
            (SyslogTarget::Tls(_), _) => Framing::OctetCounting,
            (SyslogTarget::Udp(_) | SyslogTarget::Unix(_), _) => Framing::Datagram,
        }
    }

    pub fn frame(self, message: &str) -> Vec<u8> {
        match self {
            Framing::Datagram => message.as_bytes().to_vec(),
            Framing::OctetCounting => format!("{} {message}", message.len()).into_bytes(),
            Framing::Newline => format!("{message}\n").into_bytes(),
        }
    }
}
