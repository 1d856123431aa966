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

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aya::maps::{MapData, PerfEventArray};
use sensor_common::filter::{FilterProgram, InspectRecord, TalkerStats};
use sensor_common::packet::AddrKey;
use sensor_common::zerocopy::IntoBytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::filter;
use crate::kernel::loader::{InspectCounters, InspectSummary, Kernel};
use crate::kernel::perf::{self, PerfStats};
use crate::settings::{check_inspect_limits, valid_iface_name};

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

// ---- the protocol --------------------------------------------------------------

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
                        AddrKey {
                            version: t.version,
                            addr: t.addr,
                        },
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
fn record_bytes(record: &InspectRecord) -> &[u8] {
    record.as_bytes()
}

async fn write_frame<W: AsyncWrite + Unpin>(
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

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

// ---- the server: in `sensor run` ---------------------------------------------

/// A request for the engine loop, which owns the kernel: pass it to
/// [`ControlHost::handle`].
pub struct Request(Inner);

enum Inner {
    Start(Box<Start>),
    Summary {
        reply: oneshot::Sender<Result<InspectSummary, String>>,
    },
    Stop {
        id: u64,
        summary: bool,
        reply: oneshot::Sender<Stopped>,
    },
    /// The session's task is done (sent on drop: also after a panic).
    Ended {
        id: u64,
    },
}

struct Start {
    session: NewSession,
    reply: oneshot::Sender<StartResult>,
}

/// The session's perf readers, or why it cannot start.
type StartResult = Result<Vec<perf::Reader>, (Refusal, String)>;

/// A session asking to start.
struct NewSession {
    id: u64,
    client_pid: Option<i32>,
    program: FilterProgram,
    max_rate: u32,
    summary: bool,
    records: mpsc::Sender<InspectRecord>,
    stats: Arc<PerfStats>,
    stop: watch::Receiver<bool>,
}

/// What stopping a session read from the kernel.
#[derive(Default)]
struct Stopped {
    counters: InspectCounters,
    summary: Option<InspectSummary>,
    errors: Vec<String>,
}

struct Active {
    id: u64,
    client_pid: Option<i32>,
    /// The inspect part is off already (the session is draining).
    stopped: bool,
}

/// The control socket and the inspect session state of `sensor run`.
pub struct ControlHost {
    iface: String,
    /// The socket we bound, with its inode (removed on close if still ours).
    socket: Option<(PathBuf, u64)>,
    requests: mpsc::Receiver<Request>,
    /// Keeps `requests` open when there is no listener.
    _sender: mpsc::Sender<Request>,
    shutdown: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    /// The inspect perf array, taken from the kernel at the first session.
    events: Option<PerfEventArray<MapData>>,
    active: Option<Active>,
    closing: bool,
}

/// What every session task of one host shares.
struct SessionContext {
    iface: String,
    xdp_mode: &'static str,
    netns: Option<u64>,
    requests: mpsc::Sender<Request>,
    next_id: AtomicU64,
}

impl ControlHost {
    /// Binds the control socket of `iface` and starts accepting. Without a
    /// socket (an error is logged) `sensor run` works as before, but
    /// `sensor inspect` cannot join it.
    pub fn serve(iface: &str, xdp_mode: &'static str) -> ControlHost {
        let (sender, requests) = mpsc::channel(REQUEST_QUEUE);
        let (shutdown, _) = watch::channel(false);
        let mut host = ControlHost {
            iface: iface.to_owned(),
            socket: None,
            requests,
            _sender: sender.clone(),
            shutdown,
            accept: None,
            events: None,
            active: None,
            closing: false,
        };
        match bind(iface) {
            Ok((listener, path, inode)) => {
                let context = Arc::new(SessionContext {
                    iface: iface.to_owned(),
                    xdp_mode,
                    netns: netns_id(),
                    requests: sender,
                    next_id: AtomicU64::new(1),
                });
                host.accept = Some(tokio::spawn(accept_loop(
                    listener,
                    context,
                    host.shutdown.subscribe(),
                )));
                tracing::info!(socket = %path.display(), "inspect control socket ready");
                host.socket = Some((path, inode));
            }
            Err(err) => tracing::error!(
                "no inspect control socket ({err}): `sensor inspect --iface {iface}` cannot \
                 join this run; detection is not affected"
            ),
        }
        host
    }

    /// The next request (pending forever without a socket).
    pub async fn request(&mut self) -> Request {
        match self.requests.recv().await {
            Some(request) => request,
            // Unreachable: we hold a sender.
            None => std::future::pending().await,
        }
    }

    /// Does what a session asked of the kernel. Quick: map writes and
    /// reads, and opening the perf buffers at a session's start.
    pub fn handle(&mut self, kernel: &mut Kernel, request: Request) {
        match request.0 {
            Inner::Start(start) => {
                let Start { session, reply } = *start;
                let _ = reply.send(self.start(kernel, session));
            }
            Inner::Summary { reply } => {
                let _ = reply.send(kernel.inspect_summary().map_err(|err| err.to_string()));
            }
            Inner::Stop { id, summary, reply } => {
                let _ = reply.send(self.stop(kernel, id, summary));
            }
            Inner::Ended { id } => self.ended(kernel, id),
        }
    }

    fn start(&mut self, kernel: &mut Kernel, session: NewSession) -> StartResult {
        let NewSession {
            id,
            client_pid,
            program,
            max_rate,
            summary,
            records,
            stats,
            stop,
        } = session;
        let iface = &self.iface;
        if self.closing {
            return Err((
                Refusal::Stopping,
                format!("`sensor run` on {iface} is stopping"),
            ));
        }
        if let Some(active) = &self.active {
            let by = match active.client_pid {
                Some(pid) => format!(" (sensor inspect, pid {pid})"),
                None => String::new(),
            };
            return Err((
                Refusal::Busy,
                format!(
                    "an inspect session is already running on {iface}{by}: `sensor run` hosts \
                     one session at a time; try again when it has ended"
                ),
            ));
        }
        let kernel_error = |err: &dyn std::fmt::Display| {
            (
                Refusal::Kernel,
                format!("`sensor run` on {iface} cannot start the session: {err}"),
            )
        };
        // The buffers first: records sent before they exist would be lost.
        let readers = if summary {
            Vec::new()
        } else {
            let events = match self.events.take() {
                Some(events) => events,
                None => kernel.take_inspect_events().map_err(|e| kernel_error(&e))?,
            };
            let events = self.events.insert(events);
            // On failure the readers already started end with the session
            // (it drops the stop sender).
            perf::spawn_readers(events, records, stats, stop).map_err(|e| kernel_error(&e))?
        };
        if let Err(err) = kernel.start_inspect(&program, max_rate, summary) {
            let _ = kernel.stop_inspect();
            return Err(kernel_error(&err));
        }
        self.active = Some(Active {
            id,
            client_pid,
            stopped: false,
        });
        Ok(readers)
    }

    fn stop(&mut self, kernel: &mut Kernel, id: u64, summary: bool) -> Stopped {
        let mut stopped = Stopped::default();
        if let Some(active) = self.active.as_mut().filter(|a| a.id == id && !a.stopped) {
            active.stopped = true;
            if let Err(err) = kernel.stop_inspect() {
                stopped
                    .errors
                    .push(format!("stopping the inspect part: {err}"));
            }
        }
        match kernel.inspect_counters() {
            Ok(counters) => stopped.counters = counters,
            Err(err) => stopped.errors.push(format!("reading the counters: {err}")),
        }
        if summary {
            match kernel.inspect_summary() {
                Ok(current) => stopped.summary = Some(current),
                Err(err) => stopped
                    .errors
                    .push(format!("reading the summary maps: {err}")),
            }
        }
        stopped
    }

    fn ended(&mut self, kernel: &mut Kernel, id: u64) {
        if self.active.as_ref().is_none_or(|a| a.id != id) {
            return;
        }
        if let Some(active) = self.active.take()
            && !active.stopped
            && let Err(err) = kernel.stop_inspect()
        {
            tracing::error!(error = %err, "cannot stop the inspect part");
        }
    }

    /// On exit: tells the session (if any) to end, serves it until it has,
    /// for at most a few seconds, and removes the socket.
    pub async fn close(mut self, kernel: &mut Kernel) {
        self.closing = true;
        let _ = self.shutdown.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let deadline = tokio::time::sleep(CLOSE_DEADLINE);
        tokio::pin!(deadline);
        while self.active.is_some() {
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(request) => self.handle(kernel, request),
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!("the inspect session did not end in time");
                    break;
                }
            }
        }
        if let Some(active) = self.active.take()
            && !active.stopped
        {
            let _ = kernel.stop_inspect();
        }
        if let Some((path, inode)) = self.socket.take() {
            // Only our own: never a newer run's socket.
            if std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.ino() == inode)
                && let Err(err) = std::fs::remove_file(&path)
            {
                tracing::warn!(socket = %path.display(), error = %err, "cannot remove the control socket");
            }
        }
    }
}

/// Creates the directory (0700, ours), replaces a stale socket, binds
/// (0600). Returns the listener, the path and the socket's inode.
fn bind(iface: &str) -> Result<(UnixListener, PathBuf, u64), String> {
    let path = socket_path(iface).ok_or_else(|| format!("{iface:?} cannot name a socket"))?;
    let dir = path.parent().unwrap_or(Path::new(RUN_DIR));
    prepare_dir(dir)?;
    let shown = path.display();
    // A socket nobody answers on was left by a run that crashed.
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => {
            return Err(format!(
                "{shown} is in use by another process (a `sensor run` on an interface of the \
                 same name in another network namespace?)"
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(&path)
                .map_err(|err| format!("removing the stale socket {shown}: {err}"))?;
            tracing::info!(socket = %shown, "replaced a stale control socket");
        }
        Err(err) => return Err(format!("checking {shown}: {err}")),
    }
    let listener = UnixListener::bind(&path).map_err(|err| format!("binding {shown}: {err}"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| format!("chmod 0600 {shown}: {err}"))?;
    let inode = std::fs::symlink_metadata(&path)
        .map_err(|err| format!("{shown}: {err}"))?
        .ino();
    Ok((listener, path, inode))
}

/// The socket directory: created 0700; if it exists, it must be a
/// directory of ours (then made 0700).
fn prepare_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(err) => return Err(format!("creating {shown}: {err}")),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|err| format!("{shown}: {err}"))?;
    if !meta.is_dir() {
        return Err(format!("{shown} is not a directory"));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(format!(
            "{shown} belongs to uid {}, not to us (uid {euid})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| format!("chmod 0700 {shown}: {err}"))?;
    }
    Ok(())
}

async fn accept_loop(
    listener: UnixListener,
    context: Arc<SessionContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(
                            limit = MAX_CONNECTIONS,
                            "control socket: too many connections, closing a new one"
                        );
                        continue;
                    };
                    let session = serve_session(stream, context.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        session.await;
                        drop(permit);
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends `Ended` when the session task is done, whatever the way.
struct EndGuard {
    id: u64,
    requests: mpsc::Sender<Request>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        // Never lost: when the queue is full, a task waits for room. Fails
        // only when the host is gone, and then nobody needs to know.
        let ended = Request(Inner::Ended { id: self.id });
        if let Err(mpsc::error::TrySendError::Full(ended)) = self.requests.try_send(ended) {
            let requests = self.requests.clone();
            tokio::spawn(async move { requests.send(ended).await });
        }
    }
}

/// What a valid request asks for.
struct Plan {
    filter_text: String,
    program: FilterProgram,
    max_rate: u32,
    summary: Option<u64>,
}

impl SessionContext {
    fn plan(&self, request: SessionRequest) -> Result<Plan, (Refusal, String)> {
        if request.protocol != PROTOCOL || request.record_size as usize != RECORD_SIZE {
            return Err((
                Refusal::Version,
                format!(
                    "`sensor run` on {} (pid {}) is another build of the sensor (inspect protocol \
                     {PROTOCOL}, {RECORD_SIZE}-byte records; this `sensor inspect`: protocol {}, \
                     {}-byte records): use the same binary for both, or restart `sensor run`",
                    self.iface,
                    std::process::id(),
                    request.protocol,
                    request.record_size
                ),
            ));
        }
        if let (Some(ours), Some(theirs)) = (self.netns, request.netns)
            && ours != theirs
        {
            return Err((
                Refusal::OtherNetns,
                format!(
                    "this `sensor run` watches {} in another network namespace",
                    self.iface
                ),
            ));
        }
        // The rate means nothing in summary mode (0 is sent then).
        let rate = Some(request.max_rate).filter(|_| request.summary.is_none());
        check_inspect_limits(rate, request.summary)
            .map_err(|message| (Refusal::Usage, message.to_owned()))?;
        let max_rate = rate.unwrap_or(0);
        let compiled = filter::compile(&request.filter)
            .map_err(|err| (Refusal::Filter, err.render(&request.filter)))?;
        Ok(Plan {
            filter_text: request.filter,
            program: compiled.program,
            max_rate,
            summary: request.summary,
        })
    }
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

/// The server's side of one connection.
struct ServerSession {
    context: Arc<SessionContext>,
    output: BufWriter<OwnedWriteHalf>,
    shutdown: watch::Receiver<bool>,
    /// The client still reads: frames can be written.
    client_ok: bool,
    /// `sensor run` is stopping.
    server_stopping: bool,
}

impl ServerSession {
    async fn refuse(&mut self, reason: Refusal, message: String) {
        tracing::info!(reason = ?reason, "inspect session refused: {message}");
        let _ = self
            .send(&[], Some(&Message::Refused { reason, message }))
            .await;
        let _ = self.output.shutdown().await;
    }

    /// Writes records then a message, and flushes. A client that does not
    /// read blocks this; when `sensor run` stops meanwhile, it gets
    /// [`WRITE_GRACE`] more, then is given up. False when the client is
    /// gone (nothing more is written).
    async fn send(&mut self, records: &[InspectRecord], message: Option<&Message>) -> bool {
        if !self.client_ok {
            return false;
        }
        let output = &mut self.output;
        let write = async move {
            for record in records {
                write_record(output, record).await?;
            }
            if let Some(message) = message {
                write_message(output, message).await?;
            }
            output.flush().await
        };
        tokio::pin!(write);
        let written = if self.server_stopping {
            tokio::time::timeout(WRITE_GRACE, &mut write).await
        } else {
            tokio::select! {
                written = &mut write => Ok(written),
                _ = self.shutdown.changed() => {
                    self.server_stopping = true;
                    tokio::time::timeout(WRITE_GRACE, &mut write).await
                }
            }
        };
        self.client_ok = matches!(written, Ok(Ok(())));
        self.client_ok
    }

    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Inner) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.context
            .requests
            .send(Request(request(reply)))
            .await
            .ok()?;
        answer.await.ok()
    }
}

async fn serve_session(
    stream: UnixStream,
    context: Arc<SessionContext>,
    shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_cred();
    let client_pid = peer.as_ref().ok().and_then(|cred| cred.pid());
    let (mut input, output) = stream.into_split();
    let mut session = ServerSession {
        context,
        output: BufWriter::new(output),
        shutdown,
        client_ok: true,
        server_stopping: false,
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // Fail closed: a peer we cannot identify is refused.
    match peer {
        Ok(cred) if cred.uid() == 0 || cred.uid() == euid => {}
        Ok(cred) => {
            let message = format!(
                "uid {} may not inspect through `sensor run` (root only)",
                cred.uid()
            );
            return session.refuse(Refusal::Permission, message).await;
        }
        Err(err) => {
            tracing::warn!(error = %err, "control socket: cannot identify the peer; refused");
            let message = format!("cannot tell who is connecting ({err}); refused");
            return session.refuse(Refusal::Permission, message).await;
        }
    }
    let request = tokio::select! {
        request = tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut input)) => request,
        _ = session.shutdown.changed() => {
            let message = format!("`sensor run` on {} is stopping", session.context.iface);
            return session.refuse(Refusal::Stopping, message).await;
        }
    };
    let request = match request {
        Ok(Ok(request)) => request,
        Ok(Err(message)) => return session.refuse(Refusal::Usage, message).await,
        Err(_) => {
            let message = format!("no request within {} s", REQUEST_TIMEOUT.as_secs());
            return session.refuse(Refusal::Usage, message).await;
        }
    };
    let plan = match session.context.plan(request) {
        Ok(plan) => plan,
        Err((reason, message)) => return session.refuse(reason, message).await,
    };
    run_session(session, input, plan, client_pid).await;
}

async fn run_session(
    mut session: ServerSession,
    mut input: OwnedReadHalf,
    plan: Plan,
    client_pid: Option<i32>,
) {
    let id = session.context.next_id.fetch_add(1, Ordering::Relaxed);
    // Before the start request, so that it always arrives after it.
    let _guard = EndGuard {
        id,
        requests: session.context.requests.clone(),
    };
    let summary_mode = plan.summary.is_some();
    let (tx, mut rx) = mpsc::channel::<InspectRecord>(QUEUE);
    let stats = Arc::new(PerfStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = session
        .ask(|reply| {
            Inner::Start(Box::new(Start {
                session: NewSession {
                    id,
                    client_pid,
                    program: plan.program,
                    max_rate: plan.max_rate,
                    summary: summary_mode,
                    records: tx,
                    stats: stats.clone(),
                    stop: stop_rx,
                },
                reply,
            }))
        })
        .await;
    let readers = match started {
        Some(Ok(readers)) => readers,
        Some(Err((reason, message))) => return session.refuse(reason, message).await,
        None => {
            let message = format!("`sensor run` on {} is stopping", session.context.iface);
            return session.refuse(Refusal::Stopping, message).await;
        }
    };
    let hello = Message::Started {
        iface: session.context.iface.clone(),
        xdp_mode: session.context.xdp_mode.to_owned(),
        pid: std::process::id(),
    };
    session.send(&[], Some(&hello)).await;
    tracing::info!(
        client_pid = client_pid.unwrap_or(0),
        filter = plan.filter_text.trim(),
        max_rate = plan.max_rate,
        summary = plan.summary.unwrap_or(0),
        "inspect session started"
    );

    let mut ticker = plan.summary.map(|secs| {
        let period = Duration::from_secs(secs);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut scratch = [0u8; 256];
    while session.client_ok {
        tokio::select! {
            biased;
            _ = session.shutdown.changed() => {
                session.server_stopping = true;
                break;
            }
            // Anything from the client, EOF above all, ends the session.
            _ = input.read(&mut scratch) => break,
            record = rx.recv(), if !summary_mode => {
                let Some(record) = record else { break };
                // Each CPU has its own ring: put what is queued in time order.
                let mut batch = vec![record];
                while batch.len() < QUEUE {
                    let Ok(record) = rx.try_recv() else { break };
                    batch.push(record);
                }
                batch.sort_by_key(|r| r.timestamp_ns);
                session.send(&batch, None).await;
            }
            _ = crate::engine::clock::tick(&mut ticker) => {
                match session.ask(|reply| Inner::Summary { reply }).await {
                    Some(Ok(current)) => {
                        let message = Message::Summary { summary: WireSummary::from(&current) };
                        session.send(&[], Some(&message)).await;
                    }
                    Some(Err(err)) => tracing::warn!(error = %err, "reading the summary maps"),
                    None => {
                        session.server_stopping = true;
                        break;
                    }
                }
            }
        }
    }

    // Off in the kernel, then forward what is already on its way.
    let stopped = session
        .ask(|reply| Inner::Stop {
            id,
            summary: summary_mode,
            reply,
        })
        .await
        .unwrap_or_else(|| Stopped {
            errors: vec!["`sensor run` stopped before the session's counters were read".into()],
            ..Stopped::default()
        });
    let _ = stop_tx.send(true);
    let mut batch = Vec::new();
    while let Some(record) = rx.recv().await {
        batch.push(record);
        if batch.len() >= QUEUE || rx.is_empty() {
            batch.sort_by_key(|r| r.timestamp_ns);
            session.send(&batch, None).await;
            batch.clear();
        }
    }
    // Failures are logged there; the client sees them as lost records.
    perf::join_readers(readers).await;
    let counters = stopped.counters;
    let end = SessionEnd {
        matched: counters.matched,
        sent: counters.sent,
        skipped_rate: counters.skipped_rate,
        output_errors: counters.output_errors,
        lost: stats.lost.load(Ordering::Relaxed),
        malformed: stats.malformed.load(Ordering::Relaxed),
        summary: stopped.summary.as_ref().map(WireSummary::from),
        server_stopping: session.server_stopping,
        errors: stopped.errors,
    };
    if session.send(&[], Some(&Message::End(end))).await {
        let _ = session.output.shutdown().await;
    }
    tracing::info!(
        client_pid = client_pid.unwrap_or(0),
        matched = counters.matched,
        sent = counters.sent,
        over_rate = counters.skipped_rate,
        ring_full = counters
            .output_errors
            .max(stats.lost.load(Ordering::Relaxed)),
        "inspect session ended"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::packet::PacketMeta;

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
            packet: PacketMeta {
                src_port: 41000,
                dst_port: 80,
                ip_version: 4,
                ..PacketMeta::default()
            },
        };
        let summary = InspectSummary {
            talkers: vec![(
                AddrKey {
                    version: 4,
                    addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                },
                TalkerStats {
                    packets: 3,
                    bytes: 180,
                },
            )],
            protocols: vec![1, 2, 3],
            tcp_flags: vec![4],
            ttl: vec![5, 6],
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
            next_id: AtomicU64::new(1),
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
