//! One connection's session on the server: read the request, start, stream
//! records and summaries, end with the counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sensor_common::filter::InspectRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::kernel::perf::{self, PerfStats};

use super::protocol::*;
use super::server::*;
use super::*;

/// The server's side of one connection.
pub(super) struct ServerSession {
    pub(super) context: Arc<SessionContext>,
    pub(super) output: BufWriter<OwnedWriteHalf>,
    pub(super) shutdown: watch::Receiver<bool>,
    /// The client still reads: frames can be written.
    pub(super) client_ok: bool,
    /// `sensor run` is stopping.
    pub(super) server_stopping: bool,
}

impl ServerSession {
    pub(super) async fn refuse(&mut self, reason: Refusal, message: String) {
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
    pub(super) async fn send(
        &mut self,
        records: &[InspectRecord],
        message: Option<&Message>,
    ) -> bool {
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

    pub(super) async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Inner,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.context
            .requests
            .send(Request(request(reply)))
            .await
            .ok()?;
        answer.await.ok()
    }
}

pub(super) async fn serve_session(
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
    if let Err(message) = admit_peer(peer.as_ref().map(|cred| cred.uid()), euid) {
        return session.refuse(Refusal::Permission, message).await;
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

/// Who may inspect: root or our own uid, told by `SO_PEERCRED`. Fails
/// closed: a peer that cannot be identified is refused (the reason given
/// to it is the error).
pub(super) fn admit_peer(
    peer_uid: Result<u32, &std::io::Error>,
    our_uid: u32,
) -> Result<(), String> {
    match peer_uid {
        Ok(uid) if uid == 0 || uid == our_uid => Ok(()),
        Ok(uid) => Err(format!(
            "uid {uid} may not inspect through `sensor run` (root only)"
        )),
        Err(err) => {
            tracing::warn!(error = %err, "control socket: cannot identify the peer; refused");
            Err(format!("cannot tell who is connecting ({err}); refused"))
        }
    }
}

pub(super) async fn run_session(
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
                    iface: session.context.iface.clone(),
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
                let batch = perf::time_ordered_batch(record, &mut rx, QUEUE);
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
