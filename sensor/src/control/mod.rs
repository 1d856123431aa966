//! `sensor run`'s control socket: how `sensor inspect` works on an
//! interface that `sensor run` watches.
//!
//! An interface holds one XDP program (multi-program attach is not assumed),
//! so there is one program with both roles: the rules run on every packet,
//! and the inspect part runs while `INSPECT_CONFIG` says so. `sensor run`
//! listens on a unix socket, [`socket_path`] (`/run/sensor/IFACE.sock`: the
//! directory 0700, the socket 0600, so root only), and hosts one inspect
//! session at a time for its interface:
//!
//! 1. the client sends one JSON line, a [`SessionRequest`]: the filter
//!    text, the rate, the summary period;
//! 2. the server compiles the filter with the same compiler and answers
//!    [`Message::Started`] or [`Message::Refused`] (an invalid filter,
//!    another session running, ...);
//! 3. the server streams what the session produces: packet records (the
//!    kernel's [`InspectRecord`] as raw bytes: same machine, and the request
//!    carries the record size and the protocol version, so a different build
//!    is refused instead of misread) and, in summary mode, a snapshot of the
//!    summary maps every period ([`Message::Summary`]);
//! 4. the client ends the session by shutting down its side of the socket
//!    (at `--count`, on SIGINT/SIGTERM, when its stdout closes, or when it
//!    dies); the server ends it when it stops. Either way the server turns
//!    the inspect part off, forwards the records already on their way, and
//!    sends a last [`Message::End`] with the session's counters.
//!
//! Frames, server to client: a tag byte (`J`: a JSON [`Message`]; `R`: a
//! record), the payload length (u32, little endian), the payload.
//!
//! The kernel belongs to the engine loop of `sensor run`: session tasks ask
//! it for what needs the kernel (start, summary, stop) through
//! [`ControlHost`], which that loop polls in one `select!` arm. Detection
//! is never paused for more than one such request.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sensor_common::filter::InspectRecord;

use crate::settings::valid_iface_name;

/// Where the control sockets live.
pub const RUN_DIR: &str = "/run/sensor";

/// The version of this protocol; client and server must agree.
pub const PROTOCOL: u32 = 1;

/// Bytes of one record frame's payload.
pub const RECORD_SIZE: usize = std::mem::size_of::<InspectRecord>();

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// Longest frame accepted (a summary snapshot is well under 1 MiB).
const MAX_FRAME: usize = 16 << 20;
/// How long a new connection has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for a client that does not read, once it
/// stops.
const WRITE_GRACE: Duration = Duration::from_secs(2);
/// How long `sensor run` waits, on exit, for a session to end.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// Records waiting between the perf readers and the socket.
const QUEUE: usize = 4_096;
/// Connections served at once; more are closed at once (one session runs
/// at a time anyway, the rest only get their refusal).
const MAX_CONNECTIONS: usize = 8;
/// Requests from session tasks to the host: each connection has at most
/// one in flight, so this never fills while the cap above holds.
const REQUEST_QUEUE: usize = 2 * MAX_CONNECTIONS;

const TAG_JSON: u8 = b'J';
const TAG_RECORD: u8 = b'R';

/// The control socket of `sensor run` on `iface`; `None` when the name
/// cannot be an interface's (and so could escape the directory).
pub fn socket_path(iface: &str) -> Option<PathBuf> {
    valid_iface_name(iface).then(|| Path::new(RUN_DIR).join(format!("{iface}.sock")))
}

/// This process's network namespace (the inode of `/proc/self/ns/net`):
/// the same interface name in another namespace is another interface.
pub fn netns_id() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|meta| meta.ino())
}

mod protocol;
mod server;
mod session;

pub use protocol::{
    Frame, Message, Refusal, SessionEnd, SessionRequest, WireSummary, WireTalker, read_frame,
    read_request, write_message, write_record,
};
pub use server::{ControlHost, Request};

#[cfg(test)]
mod tests {

    use std::sync::atomic::AtomicU64;

    use sensor_common::filter::TalkerStats;
    use sensor_common::packet::AddrKey;
    use tokio::sync::mpsc;

    use crate::kernel::loader::InspectSummary;

    use super::protocol::*;
    use super::server::*;

    use super::*;
    use sensor_common::packet::PacketMeta;

    /// `SO_PEERCRED` failing: the peer is refused, never let in.
    #[test]
    fn a_peer_that_cannot_be_identified_is_refused() {
        let failed = std::io::Error::from_raw_os_error(libc::ENOTCONN);
        let refused = super::session::admit_peer(Err(&failed), 0).unwrap_err();
        assert!(
            refused.contains("cannot tell who is connecting"),
            "{refused}"
        );
        let refused = super::session::admit_peer(Err(&failed), 1000).unwrap_err();
        assert!(refused.contains("refused"), "{refused}");
        assert!(super::session::admit_peer(Ok(0), 1000).is_ok(), "root");
        assert!(
            super::session::admit_peer(Ok(1000), 1000).is_ok(),
            "our uid"
        );
        let refused = super::session::admit_peer(Ok(1000), 0).unwrap_err();
        assert!(refused.contains("uid 1000 may not inspect"), "{refused}");
    }

    #[test]
    fn socket_paths_stay_in_the_directory() {
        assert_eq!(
            socket_path("eth0"),
            Some(PathBuf::from("/run/sensor/eth0.sock"))
        );
        assert_eq!(
            socket_path("veth-a.100"),
            Some(PathBuf::from("/run/sensor/veth-a.100.sock"))
        );
        for bad in ["", ".", "..", "a/b", "../x", "a b", "sixteen-chars-xx"] {
            assert_eq!(socket_path(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn inspect_frames_round_trip() {
        let record = InspectRecord {
            timestamp_ns: 123_456_789,
            clock_ns: 123_000_000,
            packet: PacketMeta {
                src_port: 41000,
                dst_port: 80,
                ip_version: 4,
                ..PacketMeta::default()
            },
        };
        let summary = InspectSummary {
            talkers: vec![(
                AddrKey::new(4, [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                TalkerStats {
                    packets: 3,
                    bytes: 180,
                },
            )],
            protocols: vec![1, 2, 3],
            tcp_flags: vec![4],
            ttl: vec![5, 6],
            blocked: vec![crate::kernel::drop_policy::BlockedNow {
                src_ip: "198.51.100.7".parse().unwrap(),
                signature_id: 500001,
                block_when: "proven".into(),
                seconds_left: 297,
            }],
        };
        let messages = [
            Message::Started {
                iface: "eth0".into(),
                xdp_mode: "native".into(),
                pid: 7,
            },
            Message::Summary {
                summary: WireSummary::from(&summary),
            },
            Message::End(SessionEnd {
                matched: 9,
                sent: 4,
                skipped_rate: 5,
                lost: 1,
                server_stopping: true,
                ..SessionEnd::default()
            }),
        ];
        let mut bytes = Vec::new();
        write_record(&mut bytes, &record).await.unwrap();
        for message in &messages {
            write_message(&mut bytes, message).await.unwrap();
        }
        let mut input = bytes.as_slice();
        assert_eq!(
            read_frame(&mut input).await.unwrap(),
            Some(Frame::Record(record))
        );
        for message in &messages {
            assert_eq!(
                read_frame(&mut input).await.unwrap(),
                Some(Frame::Message(message.clone()))
            );
        }
        assert_eq!(read_frame(&mut input).await.unwrap(), None);
        let back = InspectSummary::from(WireSummary::from(&summary));
        assert_eq!(back, summary);

        // Truncated, oversized, unknown: errors, not garbage.
        let mut cut = &bytes[..3];
        assert!(read_frame(&mut cut).await.is_err());
        let mut short = &bytes[..5 + RECORD_SIZE - 1];
        assert!(read_frame(&mut short).await.is_err());
        let mut huge: &[u8] = &[b'J', 0xff, 0xff, 0xff, 0x7f];
        assert!(read_frame(&mut huge).await.is_err());
        let mut wrong_size: &[u8] = &[b'R', 2, 0, 0, 0, 1, 2];
        assert!(read_frame(&mut wrong_size).await.is_err());
        let mut unknown: &[u8] = &[b'X', 0, 0, 0, 0];
        assert!(read_frame(&mut unknown).await.is_err());
    }

    #[test]
    fn requests_are_checked_before_the_kernel_is_asked() {
        let (requests, _) = mpsc::channel(REQUEST_QUEUE);
        let context = SessionContext {
            iface: "eth0".into(),
            xdp_mode: "native",
            netns: Some(1),
            requests,
            next_id: std::sync::Arc::new(AtomicU64::new(1)),
        };
        let request = |filter: &str, max_rate, summary| SessionRequest {
            netns: Some(1),
            ..SessionRequest::new(filter, max_rate, summary)
        };
        let plan = context
            .plan(request("tcp and dst port 80", 100, None))
            .unwrap();
        assert_eq!((plan.max_rate, plan.program.len), (100, 3));
        let plan = context.plan(request("", 0, Some(5))).unwrap();
        assert_eq!((plan.max_rate, plan.summary), (0, Some(5)));

        let refusal = |request| context.plan(request).err().unwrap();
        let (reason, message) = refusal(request("tcp and port 99999", 100, None));
        assert_eq!(reason, Refusal::Filter);
        assert!(
            message.contains("invalid filter at column 14")
                && message.contains("\n  tcp and port 99999\n               ^"),
            "{message}"
        );
        assert_eq!(refusal(request("", 0, None)).0, Refusal::Usage);
        assert_eq!(refusal(request("", 0, Some(0))).0, Refusal::Usage);
        let other_ns = SessionRequest {
            netns: Some(2),
            ..request("", 1, None)
        };
        assert_eq!(refusal(other_ns).0, Refusal::OtherNetns);
        let other_build = SessionRequest {
            record_size: RECORD_SIZE as u32 + 8,
            ..request("", 1, None)
        };
        let (reason, message) = refusal(other_build);
        assert_eq!(reason, Refusal::Version);
        assert!(message.contains("same binary"), "{message}");
        let line = request("udp", 5, None).to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(
            serde_json::from_str::<SessionRequest>(line.trim_end()).unwrap(),
            request("udp", 5, None)
        );
    }
}
