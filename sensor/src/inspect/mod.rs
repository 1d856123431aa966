//! `sensor inspect`: live TCP/IP header lines, filtered in the kernel.
//!
//! The filter expression is compiled ([`filter`]) to the stack-machine
//! program the XDP program runs on every packet before it emits anything;
//! matching packets are counted, summarised in per-CPU maps when asked
//! ([`summary`]), and sent to userspace within a per-CPU records-per-second
//! budget. We print one line per packet ([`output`]) until `--count` or
//! SIGINT/SIGTERM, and a footer on stderr: how many packets matched, were
//! shown, were skipped.
//!
//! The program is the one `sensor run` uses (it has both roles). When
//! `sensor run` watches the interface, the session runs in its program,
//! through its control socket ([`crate::control`], client side in
//! [`remote`]); otherwise we load and attach our own copy, without rules.
//!
//! User documentation (and the comparison with tcpdump): `docs/inspect.md`.

mod args;
pub mod output;
mod remote;
pub mod summary;

use std::fmt;
use std::io::{BufWriter, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sensor_common::filter::InspectRecord;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

pub use self::args::InspectArgs;
use crate::alert::unix_ns_to_datetime;
use crate::engine::clock::{Clock, tick};
use crate::kernel::loader::{InspectCounters, InspectSummary, Kernel, LoaderError};
use crate::rules::CompiledRules;
use crate::settings::{AttachMode, SensorMode, check_inspect_limits};

use self::output::{PacketLine, text_line, time_of_day};
use self::summary::{Report, Scope};
use crate::filter::{self, CompiledFilter};
use crate::kernel::perf::{PerfStats, join_readers, spawn_readers};

/// `--max-rate` when not given: packet records per second, per CPU.
pub const DEFAULT_MAX_RATE: u32 = 1_000;

/// Records waiting between the perf readers and the printer.
const QUEUE: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Bad flags (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// An invalid `--filter`, rendered with the column (exit code 2).
    #[error("{0}")]
    Filter(String),
    /// Loading, attaching, reading (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

impl InspectError {
    /// The process exit code (CONTRACT section 1).
    pub fn exit_code(&self) -> u8 {
        match self {
            InspectError::Usage(_) | InspectError::Filter(_) => 2,
            InspectError::Runtime(_) => 1,
        }
    }
}

fn runtime(err: impl fmt::Display) -> InspectError {
    InspectError::Runtime(err.to_string())
}

/// The session, resolved from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    pub iface: String,
    pub filter_text: String,
    pub filter: CompiledFilter,
    /// Stop after this many packet lines (with `summary`: periodic reports).
    pub count: Option<u64>,
    pub json: bool,
    /// Packet records per second per CPU (0 in summary mode).
    pub max_rate: u32,
    /// Seconds between summary reports; `None`: packet lines.
    pub summary: Option<u64>,
}

impl Settings {
    pub fn from_args(args: &InspectArgs) -> Result<Settings, InspectError> {
        check_inspect_limits(args.max_rate, args.summary)
            .map_err(|message| InspectError::Usage(message.into()))?;
        if args.summary.is_some() && args.max_rate.is_some() {
            return Err(InspectError::Usage(
                "--max-rate limits packet lines, and --summary prints none: give one or the other"
                    .into(),
            ));
        }
        if args.count == Some(0) {
            return Err(InspectError::Usage("--count must be at least 1".into()));
        }
        let filter_text = args.filter.clone().unwrap_or_default();
        let filter = filter::compile(&filter_text)
            .map_err(|err| InspectError::Filter(err.render(&filter_text)))?;
        Ok(Settings {
            iface: args.iface.clone(),
            filter_text,
            filter,
            count: args.count,
            json: args.json,
            max_rate: if args.summary.is_some() {
                0
            } else {
                args.max_rate.unwrap_or(DEFAULT_MAX_RATE)
            },
            summary: args.summary,
        })
    }
}

/// `sensor inspect ...`: validates, runs until done, prints the footer.
pub fn main(args: InspectArgs) -> Result<(), InspectError> {
    let settings = Settings::from_args(&args)?;
    for warning in &settings.filter.warnings {
        eprintln!("sensor inspect: note: {warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| runtime(format!("starting the runtime: {err}")))?;
    runtime.block_on(run(settings))
}

/// The footer's numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footer {
    pub matched: u64,
    pub shown: u64,
    /// Matched but over the `--max-rate` budget.
    pub over_rate: u64,
    /// Sent by the kernel but lost to a full perf ring.
    pub ring_full: u64,
    /// Received but not printed (after `--count`, or stdout closed).
    pub unprinted: u64,
    pub summary_mode: bool,
}

impl Footer {
    pub(crate) fn new(
        counters: InspectCounters,
        lost: u64,
        shown: u64,
        summary_mode: bool,
    ) -> Footer {
        Footer {
            matched: counters.matched,
            shown,
            over_rate: counters.skipped_rate,
            ring_full: counters.output_errors.max(lost),
            unprinted: counters.sent.saturating_sub(shown),
            summary_mode,
        }
    }

    /// Matched packets without a line: always `matched - shown`.
    pub fn skipped(&self) -> u64 {
        self.matched.saturating_sub(self.shown)
    }
}

impl fmt::Display for Footer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sensor inspect: {} matched, {} shown, {} skipped",
            self.matched,
            self.shown,
            self.skipped()
        )?;
        if self.summary_mode {
            write!(f, " (summary mode prints no packet lines)")
        } else {
            write!(
                f,
                " ({} over --max-rate, {} lost to a full perf ring, {} not printed)",
                self.over_rate, self.ring_full, self.unprinted
            )
        }
    }
}

/// Writes packet lines and reports to stdout.
struct Printer {
    out: BufWriter<Stdout>,
    json: bool,
    iface: String,
    clock: Clock,
    shown: u64,
    /// Stdout is gone (a closed pipe): stop.
    failed: bool,
}

impl Printer {
    fn new(json: bool, iface: &str) -> Printer {
        Printer {
            out: BufWriter::new(std::io::stdout()),
            json,
            iface: iface.to_owned(),
            clock: Clock::new(),
            shown: 0,
            failed: false,
        }
    }

    fn packet(&mut self, record: &InspectRecord) {
        let unix_ns = self.clock.to_unix_ns(record.timestamp_ns);
        let line = if self.json {
            PacketLine::new(&record.packet, &self.iface, unix_ns_to_datetime(unix_ns))
                .to_json_line()
        } else {
            text_line(&record.packet, &time_of_day(unix_ns))
        };
        if writeln!(self.out, "{line}").is_ok() {
            self.shown += 1;
        } else {
            self.failed = true;
        }
    }

    /// Prints the report of what `current` counted beyond `previous`.
    fn summary(
        &mut self,
        previous: Option<&InspectSummary>,
        current: &InspectSummary,
        scope: Scope,
        seconds: u64,
    ) {
        let now = unix_ns_to_datetime(self.clock.to_unix_ns(Clock::monotonic_now()));
        let report = Report::new(previous, current, scope, seconds, &self.iface, now);
        self.report(&report);
    }

    fn report(&mut self, report: &Report) {
        let text = if self.json {
            format!("{}\n", report.to_json_line())
        } else {
            let now = self.clock.to_unix_ns(Clock::monotonic_now());
            report.to_text(&time_of_day(now))
        };
        if self.out.write_all(text.as_bytes()).is_err() {
            self.failed = true;
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.out.flush().is_err() {
            self.failed = true;
        }
    }
}

/// The attach error, with a clear message when another XDP program holds
/// the interface (and no `sensor run` answered on its control socket).
fn attach_error(iface: &str, err: LoaderError) -> InspectError {
    if let LoaderError::AlreadyAttached { holder, .. } = &err {
        let socket = crate::control::socket_path(iface)
            .map(|path| path.display().to_string())
            .unwrap_or_else(|| "its control socket".to_owned());
        let holder = holder
            .as_ref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return InspectError::Runtime(format!(
            "{iface} already has an XDP program attached{holder}, and no `sensor run` answers \
             on {socket} to share it. It may be another `sensor inspect`, a `sensor run` \
             without its control socket (see its log), or another tool: stop it (or detach \
             the program, e.g. `ip link set dev {iface} xdp off`) and try again"
        ));
    }
    runtime(err)
}

/// The "listening" line's filter and output descriptions.
fn describe(settings: &Settings) -> (String, String) {
    let filter_desc = if settings.filter_text.trim().is_empty() {
        "none (every IPv4/IPv6 packet)".to_owned()
    } else {
        format!(
            "\"{}\" ({} kernel ops)",
            settings.filter_text.trim(),
            settings.filter.ops()
        )
    };
    let what = match settings.summary {
        Some(secs) => format!("a summary every {secs} s"),
        None => format!("at most {} packet lines/s per CPU", settings.max_rate),
    };
    (filter_desc, what)
}

/// Runs one session: in the program of the `sensor run` that watches the
/// interface if there is one, else in our own.
pub async fn run(settings: Settings) -> Result<(), InspectError> {
    match remote::join(&settings).await? {
        Some(joined) => remote::run(settings, joined).await,
        None => run_local(settings).await,
    }
}

/// Runs one session in a program of our own: load, filter, attach, print,
/// detach, footer.
async fn run_local(settings: Settings) -> Result<(), InspectError> {
    let summary_mode = settings.summary.is_some();
    let mut kernel = Kernel::load().map_err(runtime)?;
    // No rules: the program only inspects, it never alerts nor drops.
    kernel
        .write_rules(&CompiledRules::default(), SensorMode::Ids)
        .map_err(runtime)?;
    // The session's interface (a missing one fails at the attach below).
    let ifindex = crate::kernel::preflight::interface_index(&settings.iface).unwrap_or(0);
    kernel
        .start_inspect(
            &settings.filter.program,
            settings.max_rate,
            summary_mode,
            ifindex,
        )
        .map_err(runtime)?;

    let (tx, mut rx) = mpsc::channel::<InspectRecord>(QUEUE);
    let stats = Arc::new(PerfStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    // Kept alive for as long as its buffers are read.
    let mut events = None;
    let readers = if summary_mode {
        drop(tx);
        Vec::new()
    } else {
        let events = events.insert(kernel.take_inspect_events().map_err(runtime)?);
        spawn_readers(events, tx, stats.clone(), stop_rx).map_err(runtime)?
    };

    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|err| runtime(format!("installing signal handlers: {err}")))?;
    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|err| runtime(format!("installing signal handlers: {err}")))?;

    let mode = kernel
        .attach(&settings.iface, AttachMode::Auto)
        .map_err(|err| attach_error(&settings.iface, err))?;
    let (filter_desc, what) = describe(&settings);
    eprintln!(
        "sensor inspect: listening on {} ({mode} XDP), filter: {filter_desc}; {what}",
        settings.iface
    );

    let started = Instant::now();
    let mut printer = Printer::new(settings.json, &settings.iface);
    let mut ticker = settings.summary.map(|secs| {
        let period = Duration::from_secs(secs);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    let mut previous: Option<InspectSummary> = None;
    let mut reports = 0u64;
    let limit = settings.count;
    let reached = |n: u64| limit.is_some_and(|limit| n >= limit);

    loop {
        tokio::select! {
            record = rx.recv(), if !summary_mode => {
                let Some(record) = record else { break };
                let batch = crate::kernel::perf::time_ordered_batch(record, &mut rx, QUEUE);
                for record in &batch {
                    if reached(printer.shown) || printer.failed {
                        break;
                    }
                    printer.packet(record);
                }
                printer.flush();
                if reached(printer.shown) {
                    break;
                }
            }
            _ = tick(&mut ticker) => {
                match kernel.inspect_summary(Clock::monotonic_now()) {
                    Ok(current) => {
                        printer.summary(
                            previous.as_ref(),
                            &current,
                            Scope::Interval,
                            settings.summary.unwrap_or(0),
                        );
                        previous = Some(current);
                    }
                    Err(err) => eprintln!("sensor inspect: reading the summary maps: {err}"),
                }
                reports += 1;
                if reached(reports) {
                    break;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        if printer.failed {
            break;
        }
    }

    // Stop the source, then print what is already on its way.
    let stopped = kernel.stop_inspect();
    let detached = kernel.detach();
    let _ = stop_tx.send(true);
    while let Some(record) = rx.recv().await {
        if !reached(printer.shown) && !printer.failed {
            printer.packet(&record);
        }
    }
    for problem in join_readers(readers).await {
        eprintln!("sensor inspect: {problem}");
    }
    drop(events);
    printer.flush();

    if summary_mode {
        match kernel.inspect_summary(Clock::monotonic_now()) {
            Ok(current) => {
                printer.summary(None, &current, Scope::Total, started.elapsed().as_secs());
            }
            Err(err) => eprintln!("sensor inspect: reading the summary maps: {err}"),
        }
    }

    let counters = kernel.inspect_counters().unwrap_or_else(|err| {
        eprintln!("sensor inspect: reading the counters: {err}");
        InspectCounters::default()
    });
    let malformed = stats.malformed.load(Ordering::Relaxed);
    if malformed > 0 {
        eprintln!("sensor inspect: {malformed} malformed records ignored");
    }
    let footer = Footer::new(
        counters,
        stats.lost.load(Ordering::Relaxed),
        printer.shown,
        summary_mode,
    );
    eprintln!("{footer}");
    stopped.map_err(runtime)?;
    detached.map_err(runtime)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> InspectArgs {
        use clap::Parser;
        let mut argv = vec!["sensor", "inspect", "--iface", "eth0"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Inspect(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_defaults_and_usage_errors() {
        let s = Settings::from_args(&args(&[])).unwrap();
        assert_eq!(s.max_rate, DEFAULT_MAX_RATE);
        assert_eq!(s.filter.ops(), 0);
        assert_eq!(s.summary, None);
        let s = Settings::from_args(&args(&["--summary", "5", "--filter", "tcp"])).unwrap();
        assert_eq!((s.max_rate, s.summary, s.filter.ops()), (0, Some(5), 1));
        for bad in [
            &["--summary", "0"][..],
            &["--max-rate", "0"],
            &["--count", "0"],
            &["--summary", "1", "--max-rate", "5"],
        ] {
            let err = Settings::from_args(&args(bad)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
        let err = Settings::from_args(&args(&["--filter", "tcp and"])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("column 8"), "{err}");
        assert_eq!(runtime("x").exit_code(), 1);
    }

    #[test]
    fn footer_accounts_for_every_matched_packet() {
        let counters = InspectCounters {
            matched: 5_000,
            sent: 210,
            skipped_rate: 4_790,
            output_errors: 0,
        };
        let footer = Footer::new(counters, 0, 200, false);
        assert_eq!(footer.skipped(), 4_800);
        assert_eq!(
            footer.to_string(),
            "sensor inspect: 5000 matched, 200 shown, 4800 skipped (4790 over --max-rate, \
             0 lost to a full perf ring, 10 not printed)"
        );
        let summary = Footer::new(
            InspectCounters {
                matched: 45,
                skipped_rate: 45,
                ..InspectCounters::default()
            },
            0,
            0,
            true,
        );
        assert_eq!(
            summary.to_string(),
            "sensor inspect: 45 matched, 0 shown, 45 skipped (summary mode prints no packet lines)"
        );
    }
}
