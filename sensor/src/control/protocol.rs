//! The control protocol: the client's request line, the server's frames
//! (a tag byte, a little-endian u32 length, the payload: a JSON
//! [`Message`] or a raw [`InspectRecord`]), and reading and writing them.

use std::io;

use sensor_common::filter::{InspectRecord, TalkerStats};
use sensor_common::packet::AddrKey;
use sensor_common::zerocopy::IntoBytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::kernel::loader::{InspectCounters, InspectSummary};
use crate::kernel::perf::{self};

use super::*;

/// The client's one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub protocol: u32,
    /// `size_of::<InspectRecord>()` in the client's build.
    pub record_size: u32,
    /// The client's network namespace ([`netns_id`]).
    pub netns: Option<u64>,
    /// The `--filter` text (compiled by the server).
    pub filter: String,
    /// Packet records per second per CPU (0 in summary mode).
    pub max_rate: u32,
    /// Seconds between summary snapshots; `None`: packet records.
    pub summary: Option<u64>,
}

impl SessionRequest {
    pub fn new(filter: &str, max_rate: u32, summary: Option<u64>) -> SessionRequest {
        SessionRequest {
            protocol: PROTOCOL,
            record_size: RECORD_SIZE as u32,
            netns: netns_id(),
            filter: filter.to_owned(),
            max_rate,
            summary,
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a request always serializes");
        line.push('\n');
        line
    }
}

/// Why the server refused a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Another session is running.
    Busy,
    /// The filter does not compile (the message shows the column).
    Filter,
    /// A bad request (rate, period, or not a request at all).
    Usage,
    /// Another protocol version or record layout: another build.
    Version,
    /// The client is in another network namespace: not this interface.
    OtherNetns,
    /// `sensor run` is stopping.
    Stopping,
    /// The client's user may not inspect.
    Permission,
    /// The kernel refused (maps, perf buffers).
    Kernel,
}

/// A JSON frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// The session runs: records and snapshots follow.
    Started {
        iface: String,
        /// `native` or `skb`.
        xdp_mode: String,
        /// The `sensor run` process.
        pid: u32,
    },
    /// No session; the connection closes.
    Refused { reason: Refusal, message: String },
    /// The summary maps now (cumulative since the session started).
    Summary { summary: WireSummary },
    /// The session is over; nothing follows.
    End(SessionEnd),
}

/// The last frame: the session's counters and, in summary mode, the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub matched: u64,
    pub sent: u64,
    pub skipped_rate: u64,
    pub output_errors: u64,
    /// Samples lost to a full perf ring (server side).
    pub lost: u64,
    /// Samples of the wrong size (server side).
    pub malformed: u64,
    /// The summary maps at the end (summary mode).
    pub summary: Option<WireSummary>,
    /// The session ended because `sensor run` is stopping.
    pub server_stopping: bool,
    /// What went wrong while stopping (the counters may be incomplete).
    pub errors: Vec<String>,
}

impl SessionEnd {
    pub fn counters(&self) -> InspectCounters {
        InspectCounters {
            matched: self.matched,
            sent: self.sent,
            skipped_rate: self.skipped_rate,
            output_errors: self.output_errors,
        }
    }
}

/// [`InspectSummary`] on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSummary {
    pub talkers: Vec<WireTalker>,
    pub protocols: Vec<u64>,
    pub tcp_flags: Vec<u64>,
    pub ttl: Vec<u64>,
    /// Drop mode: the sources blocked now (absent from older servers).
    #[serde(default)]
    pub blocked: Vec<crate::kernel::drop_policy::BlockedNow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTalker {
    pub version: u8,
    pub addr: [u8; 16],
    pub packets: u64,
    pub bytes: u64,
}

impl From<&InspectSummary> for WireSummary {
    fn from(summary: &InspectSummary) -> WireSummary {
        WireSummary {
            talkers: summary
                .talkers
                .iter()
                .map(|(key, stats)| WireTalker {
                    version: key.version,
                    addr: key.addr,
                    packets: stats.packets,
                    bytes: stats.bytes,
                })
                .collect(),
            protocols: summary.protocols.clone(),
            tcp_flags: summary.tcp_flags.clone(),
            ttl: summary.ttl.clone(),
            blocked: summary.blocked.clone(),
        }
    }
}

impl From<WireSummary> for InspectSummary {
    fn from(wire: WireSummary) -> InspectSummary {
        InspectSummary {
            talkers: wire
                .talkers
                .into_iter()
                .map(|t| {
                    (
                        AddrKey::new(t.version, t.addr),
                        TalkerStats {
                            packets: t.packets,
                            bytes: t.bytes,
                        },
                    )
                })
                .collect(),
            protocols: wire.protocols,
            tcp_flags: wire.tcp_flags,
            ttl: wire.ttl,
            blocked: wire.blocked,
        }
    }
}

/// One frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Record(InspectRecord),
    Message(Message),
}

/// The record as sent: its bytes, every one defined (no padding, checked
/// by `IntoBytes`).
pub(super) fn record_bytes(record: &InspectRecord) -> &[u8] {
    record.as_bytes()
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    tag: u8,
    payload: &[u8],
) -> io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out.write_all(&head).await?;
    out.write_all(payload).await
}

pub async fn write_message<W: AsyncWrite + Unpin>(
    out: &mut W,
    message: &Message,
) -> io::Result<()> {
    let payload = serde_json::to_vec(message).map_err(io::Error::other)?;
    write_frame(out, TAG_JSON, &payload).await
}

pub async fn write_record<W: AsyncWrite + Unpin>(
    out: &mut W,
    record: &InspectRecord,
) -> io::Result<()> {
    write_frame(out, TAG_RECORD, record_bytes(record)).await
}

/// The next frame; `None` when the stream ends between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(input: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 5];
    let mut filled = 0;
    while filled < head.len() {
        let n = input.read(&mut head[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ))
            };
        }
        filled += n;
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(invalid(format!("a frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload).await?;
    match head[0] {
        TAG_RECORD => {
            if len != RECORD_SIZE {
                return Err(invalid(format!(
                    "a record of {len} bytes, expected {RECORD_SIZE}"
                )));
            }
            let record = perf::decode(&payload, &[]).ok_or_else(|| invalid("a short record"))?;
            Ok(Some(Frame::Record(record)))
        }
        TAG_JSON => serde_json::from_slice(&payload)
            .map(|message| Some(Frame::Message(message)))
            .map_err(|err| invalid(format!("an unreadable message: {err}"))),
        tag => Err(invalid(format!("an unknown frame tag {tag:#04x}"))),
    }
}

pub(super) fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the request line (the server's side of the protocol; public so the
/// fuzz target in `fuzz/` can drive it).
pub async fn read_request<R: AsyncRead + Unpin>(input: &mut R) -> Result<SessionRequest, String> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = input
            .read(&mut chunk)
            .await
            .map_err(|err| format!("reading the request: {err}"))?;
        if n == 0 {
            return Err("the client closed the connection before its request".into());
        }
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            break;
        }
        if line.len() > MAX_REQUEST {
            return Err(format!("a request longer than {MAX_REQUEST} bytes"));
        }
    }
    serde_json::from_slice(&line).map_err(|err| format!("not a session request: {err}"))
}
