//! A session in the program of the `sensor run` that watches the interface,
//! through its control socket ([`crate::control`]): we send the request,
//! print what arrives exactly as a session of our own would, and end the
//! session by shutting down our side of the socket; the server then sends
//! the counters for the footer.

use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::control::{self, Frame, Message, Refusal, SessionRequest};
use crate::kernel::loader::InspectSummary;

use super::summary::Scope;
use super::{Footer, InspectError, Printer, Settings, describe, runtime};

/// How long `sensor run` has to answer the request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `sensor run` has to send the counters once we end the session.
const END_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting between the socket and the printer.
const QUEUE: usize = 4_096;

/// A session `sensor run` accepted.
pub(super) struct Joined {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    xdp_mode: String,
    pid: u32,
}

/// Asks the `sensor run` that watches the interface for a session. `None`:
/// no `sensor run` serves it here (no socket, a stale one, or one of
/// another network namespace): the caller runs a session of its own.
pub(super) async fn join(settings: &Settings) -> Result<Option<Joined>, InspectError> {
    let iface = &settings.iface;
    let Some(path) = control::socket_path(iface) else {
        return Ok(None);
    };
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(err) => return Err(unreachable_server(iface, &path, err)),
    };
    let (mut read, mut write) = stream.into_split();
    let request = SessionRequest::new(&settings.filter_text, settings.max_rate, settings.summary);
    if let Err(err) = write.write_all(request.to_line().as_bytes()).await {
        return Err(unreachable_server(iface, &path, err));
    }
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, control::read_frame(&mut read)).await;
    match answer {
        Err(_) => Err(runtime(format!(
            "`sensor run` on {iface} did not answer on {} within {} s",
            path.display(),
            ANSWER_TIMEOUT.as_secs()
        ))),
        Ok(Err(err)) => Err(unreachable_server(iface, &path, err)),
        Ok(Ok(None)) => Err(runtime(format!(
            "`sensor run` on {iface} closed {} without answering",
            path.display()
        ))),
        Ok(Ok(Some(Frame::Message(Message::Started { xdp_mode, pid, .. })))) => Ok(Some(Joined {
            read,
            write,
            xdp_mode,
            pid,
        })),
        Ok(Ok(Some(Frame::Message(Message::Refused { reason, message })))) => match reason {
            Refusal::OtherNetns => Ok(None),
            Refusal::Filter => Err(InspectError::Filter(message)),
            Refusal::Usage => Err(InspectError::Usage(message)),
            _ => Err(runtime(message)),
        },
        Ok(Ok(Some(other))) => Err(runtime(format!(
            "`sensor run` on {iface} answered with an unexpected {other:?}"
        ))),
    }
}

fn unreachable_server(iface: &str, path: &std::path::Path, err: io::Error) -> InspectError {
    let hint = if err.kind() == io::ErrorKind::PermissionDenied {
        " (the socket is root's: run `sensor inspect` as root)"
    } else {
        ""
    };
    runtime(format!(
        "cannot reach the `sensor run` watching {iface} through {}: {err}{hint}",
        path.display()
    ))
}

/// Our side of the socket, and whether we asked for the end.
struct Link {
    write: OwnedWriteHalf,
    stopping: bool,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Link {
    /// Asks for the end of the session (the server then sends the rest and
    /// the counters).
    async fn stop(&mut self) {
        if !self.stopping {
            self.stopping = true;
            let _ = self.write.shutdown().await;
            self.deadline = Some(Box::pin(tokio::time::sleep(END_TIMEOUT)));
        }
    }

    /// Fires when the server is late with the end.
    async fn late(&mut self) {
        match self.deadline.as_mut() {
            Some(deadline) => deadline.await,
            None => std::future::pending().await,
        }
    }
}

/// Prints the session `sensor run` runs for us, then the footer.
pub(super) async fn run(settings: Settings, joined: Joined) -> Result<(), InspectError> {
    let iface = settings.iface.clone();
    let summary_mode = settings.summary.is_some();
    let Joined {
        mut read,
        write,
        xdp_mode,
        pid,
    } = joined;
    let mut link = Link {
        write,
        stopping: false,
        deadline: None,
    };

    let (frames_tx, mut frames) = mpsc::channel::<io::Result<Frame>>(QUEUE);
    let reader = tokio::spawn(async move {
        loop {
            let frame = control::read_frame(&mut read).await.transpose();
            let Some(frame) = frame else { return };
            let failed = frame.is_err();
            if frames_tx.send(frame).await.is_err() || failed {
                return;
            }
        }
    });

    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|err| runtime(format!("installing signal handlers: {err}")))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|err| runtime(format!("installing signal handlers: {err}")))?;

    let (filter_desc, what) = describe(&settings);
    eprintln!(
        "sensor inspect: listening on {iface} ({xdp_mode} XDP, shared with `sensor run`, pid \
         {pid}), filter: {filter_desc}; {what}"
    );

    let started = Instant::now();
    let mut printer = Printer::new(settings.json, &iface);
    let mut previous: Option<InspectSummary> = None;
    let mut reports = 0u64;
    let limit = settings.count;
    let reached = |n: u64| limit.is_some_and(|limit| n >= limit);
    let mut end = None;

    loop {
        tokio::select! {
            frame = frames.recv() => {
                let frame = match frame {
                    None => break,
                    Some(Ok(frame)) => frame,
                    Some(Err(err)) => {
                        reader.abort();
                        return Err(runtime(format!("reading from `sensor run` on {iface}: {err}")));
                    }
                };
                match frame {
                    Frame::Record(record) => {
                        // Printed after a stop request too, as a session of
                        // our own prints what is already on its way.
                        if !reached(printer.shown) && !printer.failed {
                            printer.packet(&record);
                        }
                        if frames.is_empty() {
                            printer.flush();
                        }
                        if reached(printer.shown) || printer.failed {
                            link.stop().await;
                        }
                    }
                    Frame::Message(Message::Summary { summary }) => {
                        if link.stopping {
                            continue;
                        }
                        let current = InspectSummary::from(summary);
                        printer.summary(
                            previous.as_ref(),
                            &current,
                            Scope::Interval,
                            settings.summary.unwrap_or(0),
                        );
                        previous = Some(current);
                        reports += 1;
                        if reached(reports) || printer.failed {
                            link.stop().await;
                        }
                    }
                    Frame::Message(Message::End(last)) => {
                        end = Some(last);
                        break;
                    }
                    Frame::Message(other) => {
                        reader.abort();
                        return Err(runtime(format!(
                            "`sensor run` on {iface} sent an unexpected {other:?}"
                        )));
                    }
                }
            }
            _ = sigint.recv(), if !link.stopping => link.stop().await,
            _ = sigterm.recv(), if !link.stopping => link.stop().await,
            _ = link.late() => {
                reader.abort();
                return Err(runtime(format!(
                    "`sensor run` on {iface} did not end the session within {} s",
                    END_TIMEOUT.as_secs()
                )));
            }
        }
    }
    reader.abort();
    printer.flush();

    let Some(end) = end else {
        return Err(runtime(format!(
            "`sensor run` on {iface} closed the session without its counters (did it stop?)"
        )));
    };
    if summary_mode {
        match end.summary.clone() {
            Some(current) => printer.summary(
                None,
                &InspectSummary::from(current),
                Scope::Total,
                started.elapsed().as_secs(),
            ),
            None => eprintln!("sensor inspect: `sensor run` sent no final summary"),
        }
    }
    for error in &end.errors {
        eprintln!("sensor inspect: `sensor run`: {error}");
    }
    if end.malformed > 0 {
        eprintln!(
            "sensor inspect: {} malformed records ignored",
            end.malformed
        );
    }
    let footer = Footer::new(end.counters(), end.lost, printer.shown, summary_mode);
    eprintln!("{footer}");
    if end.server_stopping && !link.stopping {
        return Err(runtime(format!(
            "`sensor run` on {iface} is stopping, which ended this session"
        )));
    }
    Ok(())
}
