//! The server in `sensor run`: the socket (root only), the accept loop,
//! and [`ControlHost`], through which sessions ask the engine loop (which
//! owns the kernel) to start, summarise and stop.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use aya::maps::{MapData, PerfEventArray};
use sensor_common::filter::{FilterProgram, InspectRecord};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::filter;
use crate::kernel::loader::{InspectCounters, InspectSummary, Kernel};
use crate::kernel::perf::{self, PerfStats};
use crate::settings::check_inspect_limits;

use super::protocol::*;
use super::session::*;
use super::*;

/// A request for the engine loop, which owns the kernel: pass it to
/// [`ControlHost::handle`].
pub struct Request(pub(super) Inner);

pub(super) enum Inner {
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

pub(super) struct Start {
    pub(super) session: NewSession,
    pub(super) reply: oneshot::Sender<StartResult>,
}

/// The session's perf readers, or why it cannot start.
pub(super) type StartResult = Result<Vec<perf::Reader>, (Refusal, String)>;

/// A session asking to start.
pub(super) struct NewSession {
    pub(super) id: u64,
    /// The interface whose socket it came through: it sees only its packets.
    pub(super) iface: String,
    pub(super) client_pid: Option<i32>,
    pub(super) program: FilterProgram,
    pub(super) max_rate: u32,
    pub(super) summary: bool,
    pub(super) records: mpsc::Sender<InspectRecord>,
    pub(super) stats: Arc<PerfStats>,
    pub(super) stop: watch::Receiver<bool>,
}

/// What stopping a session read from the kernel.
#[derive(Default)]
pub(super) struct Stopped {
    pub(super) counters: InspectCounters,
    pub(super) summary: Option<InspectSummary>,
    pub(super) errors: Vec<String>,
}

pub(super) struct Active {
    pub(super) id: u64,
    pub(super) iface: String,
    pub(super) client_pid: Option<i32>,
    /// The inspect part is off already (the session is draining).
    pub(super) stopped: bool,
}

/// The control sockets (one per watched interface) and the inspect
/// session state of `sensor run`: one session at a time in the program,
/// whichever interface it is for.
pub struct ControlHost {
    /// The sockets we bound, with their inodes (removed on close if still ours).
    pub(super) sockets: Vec<(PathBuf, u64)>,
    pub(super) requests: mpsc::Receiver<Request>,
    /// Keeps `requests` open when there is no listener.
    pub(super) _sender: mpsc::Sender<Request>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) accepts: Vec<JoinHandle<()>>,
    /// The inspect perf array, taken from the kernel at the first session.
    pub(super) events: Option<PerfEventArray<MapData>>,
    pub(super) active: Option<Active>,
    pub(super) closing: bool,
}

/// What every session task of one host shares.
pub(super) struct SessionContext {
    pub(super) iface: String,
    pub(super) xdp_mode: &'static str,
    pub(super) netns: Option<u64>,
    pub(super) requests: mpsc::Sender<Request>,
    /// Shared by every socket of the host: session ids are unique in it.
    pub(super) next_id: Arc<AtomicU64>,
}

impl ControlHost {
    /// Binds the control socket of each watched interface (name and XDP
    /// mode) and starts accepting. Without a socket (an error is logged)
    /// `sensor run` works as before, but `sensor inspect` cannot join it
    /// on that interface.
    pub fn serve(ifaces: &[(String, &'static str)]) -> ControlHost {
        let (sender, requests) = mpsc::channel(REQUEST_QUEUE);
        let (shutdown, _) = watch::channel(false);
        let mut host = ControlHost {
            sockets: Vec::new(),
            requests,
            _sender: sender.clone(),
            shutdown,
            accepts: Vec::new(),
            events: None,
            active: None,
            closing: false,
        };
        let next_id = Arc::new(AtomicU64::new(1));
        for (iface, xdp_mode) in ifaces {
            match bind(iface) {
                Ok((listener, path, inode)) => {
                    let context = Arc::new(SessionContext {
                        iface: iface.clone(),
                        xdp_mode,
                        netns: netns_id(),
                        requests: sender.clone(),
                        next_id: next_id.clone(),
                    });
                    host.accepts.push(tokio::spawn(accept_loop(
                        listener,
                        context,
                        host.shutdown.subscribe(),
                    )));
                    tracing::info!(socket = %path.display(), "inspect control socket ready");
                    host.sockets.push((path, inode));
                }
                Err(err) => tracing::error!(
                    "no inspect control socket ({err}): `sensor inspect --iface {iface}` cannot \
                     join this run; detection is not affected"
                ),
            }
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
                let _ = reply.send(
                    kernel
                        .inspect_summary(crate::engine::clock::Clock::monotonic_now())
                        .map_err(|err| err.to_string()),
                );
            }
            Inner::Stop { id, summary, reply } => {
                let _ = reply.send(self.stop(kernel, id, summary));
            }
            Inner::Ended { id } => self.ended(kernel, id),
        }
    }

    pub(super) fn start(&mut self, kernel: &mut Kernel, session: NewSession) -> StartResult {
        let NewSession {
            id,
            iface,
            client_pid,
            program,
            max_rate,
            summary,
            records,
            stats,
            stop,
        } = session;
        let iface = &iface;
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
                    "an inspect session is already running on {}{by}: `sensor run` hosts \
                     one session at a time (on any of its interfaces); try again when it has \
                     ended",
                    active.iface
                ),
            ));
        }
        let kernel_error = |err: &dyn std::fmt::Display| {
            (
                Refusal::Kernel,
                format!("`sensor run` on {iface} cannot start the session: {err}"),
            )
        };
        // Only this interface's packets: the kernel compares the ingress
        // index (taken now: a returning interface has a new one).
        let Some(ifindex) = crate::kernel::preflight::interface_index(iface) else {
            return Err((
                Refusal::Kernel,
                format!(
                    "`sensor run` watches {iface}, but it is gone now; try again when it is back"
                ),
            ));
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
        if let Err(err) = kernel.start_inspect(&program, max_rate, summary, ifindex) {
            let _ = kernel.stop_inspect();
            return Err(kernel_error(&err));
        }
        self.active = Some(Active {
            id,
            iface: iface.clone(),
            client_pid,
            stopped: false,
        });
        Ok(readers)
    }

    pub(super) fn stop(&mut self, kernel: &mut Kernel, id: u64, summary: bool) -> Stopped {
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
            match kernel.inspect_summary(crate::engine::clock::Clock::monotonic_now()) {
                Ok(current) => stopped.summary = Some(current),
                Err(err) => stopped
                    .errors
                    .push(format!("reading the summary maps: {err}")),
            }
        }
        stopped
    }

    pub(super) fn ended(&mut self, kernel: &mut Kernel, id: u64) {
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
        for accept in self.accepts.drain(..) {
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
        for (path, inode) in self.sockets.drain(..) {
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
pub(super) fn bind(iface: &str) -> Result<(UnixListener, PathBuf, u64), String> {
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
pub(super) fn prepare_dir(dir: &Path) -> Result<(), String> {
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

pub(super) async fn accept_loop(
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
pub(super) struct EndGuard {
    pub(super) id: u64,
    pub(super) requests: mpsc::Sender<Request>,
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
pub(super) struct Plan {
    pub(super) filter_text: String,
    pub(super) program: FilterProgram,
    pub(super) max_rate: u32,
    pub(super) summary: Option<u64>,
}

impl SessionContext {
    pub(super) fn plan(&self, request: SessionRequest) -> Result<Plan, (Refusal, String)> {
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
