//! `sensor run`: load and attach the XDP program, turn its alert records
//! into lines, ship them, reload on SIGHUP, and detach cleanly on SIGINT /
//! SIGTERM with every sink flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sensor_common::decap::DecapConfig;
use sensor_common::tables::RATE_WINDOW_NS;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::control::ControlHost;
use crate::engine::aggregate::RateEntry;
use crate::engine::clock::Clock;
use crate::kernel::loader::{Kernel, LoaderError};
use crate::kernel::netlink::LinkEvents;
use crate::kernel::perf::{self, PerfError, PerfStats};
use crate::kernel::rate::RateEntries;
use crate::metrics::{MetricsSnapshot, Publisher};
use crate::rules::CompiledRules;
use crate::settings::{AttachMode, DropPolicy, SensorMode, SyslogFormat};
use crate::sinks::json::{self as json_sink, JsonHandle, JsonSink};
use crate::sinks::redis::{RedisHandle, RedisTarget};
use crate::sinks::syslog::{SyslogOptions, SyslogSink, SyslogTarget};

/// Records waiting between the perf readers and the engine. When full the
/// readers wait and the kernel's rings absorb the burst (then count losses).
const ALERT_QUEUE: usize = 8_192;

/// Everything `run` needs, resolved from flags and the config file.
pub struct RunSettings {
    /// The interfaces to watch (at least one, no name twice).
    pub ifaces: Vec<String>,
    pub mode: SensorMode,
    pub attach: AttachMode,
    pub json: Option<JsonSink>,
    /// Drop mode's allowlist, static blocklist and dry run.
    pub drop_policy: DropPolicy,
    pub syslog: Option<(SyslogTarget, SyslogFormat)>,
    /// `tls://` syslog: the checked client configuration.
    pub syslog_tls: Option<Arc<rustls::ClientConfig>>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Frame bytes each alert carries (EVE `packet`).
    pub packet_bytes: u16,
    /// Seed of the alert lines' `community_id`.
    pub community_id_seed: u16,
    /// Drop mode: where blocked sources are kept across restarts.
    pub block_state: Option<PathBuf>,
    /// The Redis sink.
    pub redis: Option<RedisTarget>,
    /// Which tunnels are judged on their inner packet (`decap:`).
    pub decap: DecapConfig,
}

/// How long shutdown waits for the syslog peer to take queued alerts.
const SYSLOG_CLOSE_DEADLINE: Duration = Duration::from_secs(5);

mod engine;
#[cfg(test)]
mod equivalence_tests;
mod link_watch;
mod proof;
mod readings;

use self::engine::{Engine, LiveSinks};
use self::link_watch::Watch;
use self::readings::{BlockTracker, KernelSide, Readings};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Perf(#[from] PerfError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("subscribing to link notifications: {0}")]
    Netlink(std::io::Error),
    /// Detached and flushed, but stopped for this reason.
    #[error("{0}")]
    Failed(String),
    #[error("serving metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The rate map as the pipeline's sweep reads it; `None` (logged) when it
/// could not be read.
fn rate_entries(read: Result<RateEntries, LoaderError>) -> Option<Vec<RateEntry>> {
    let entries = match read {
        Ok(entries) => entries,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the rate-limit map");
            return None;
        }
    };
    let entries = entries.into_iter().map(|(key, cpu, state)| RateEntry {
        sig_id: key.sig_id,
        src: key.addr,
        cpu,
        state,
    });
    Some(entries.collect())
}

/// Takes a readings job's results: sweeps the rate entries, publishes the
/// metrics (unless the figures straddle a rule install: then the last ones
/// stay up a second longer), and returns the side for the next job.
fn apply_readings(
    engine: &mut Engine,
    readings: Readings,
    publisher: &mut Publisher,
    rules: &CompiledRules,
    perf: &PerfStats,
    watches: &[Watch],
) -> KernelSide {
    let Readings {
        side,
        rate,
        now,
        figures,
        installs,
    } = readings;
    if let Some(entries) = rate_entries(rate) {
        engine.sweep(entries, now, false);
    }
    if let Some(figures) = figures
        && installs == engine.installs
    {
        let no_blocks = Default::default();
        let blocks = side
            .blocks
            .as_ref()
            .map_or(&no_blocks, |tracker| &tracker.blocks);
        let built = figures.map(|figures| {
            engine.metrics(&figures, blocks, side.proven.count(), rules, perf, watches)
        });
        publisher.publish(built);
    }
    side
}

/// A background job's result, or never while there is none.
async fn finished<T>(job: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match job {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Runs until SIGINT or SIGTERM. `reload` re-reads the rule files (SIGHUP).
pub async fn run(
    settings: RunSettings,
    mut rules: CompiledRules,
    reload: impl Fn() -> Result<CompiledRules, String> + Send + Sync + 'static,
) -> Result<(), RunError> {
    // Rule files are parsed on a blocking thread, off the engine's task.
    let reload = Arc::new(reload);
    let mut reloading: Option<JoinHandle<Result<CompiledRules, String>>> = None;
    // A SIGHUP that came while a reload ran: files may have changed since.
    let mut reload_again = false;
    let mut kernel = Kernel::load_sized(&settings.drop_policy.maps)?;
    kernel.write_drop_policy(&settings.drop_policy)?;
    kernel.set_hash_seed(random_seed())?;
    kernel.write_alert_packet_bytes(settings.packet_bytes)?;
    kernel.write_decap(&settings.decap)?;
    let mut events = kernel.take_events()?;
    let rate_reader = kernel.take_rate_reader()?;
    let kernel_reader = kernel.reader()?;
    // The per-second readings job (off this task); `side` is home between jobs.
    let mut reading: Option<JoinHandle<Readings>> = None;

    let (tx, mut rx) = mpsc::channel(ALERT_QUEUE);
    let stats = Arc::new(PerfStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers = perf::spawn_readers(&mut events, tx, stats.clone(), stop_rx)?;

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let metrics = Arc::new(RwLock::new(MetricsSnapshot::default()));
    let mut publisher = Publisher::new(metrics.clone());
    let metrics_server = match settings.metrics {
        Some(addr) => Some(
            crate::metrics::serve(addr, metrics.clone())
                .await
                .map_err(|source| RunError::Metrics { addr, source })?
                .1,
        ),
        None => None,
    };
    let syslog_tls = settings.syslog_tls;
    let syslog = settings.syslog.map(|(target, format)| {
        let options = SyslogOptions {
            format,
            tls: syslog_tls,
            ..SyslogOptions::default()
        };
        SyslogSink::spawn_with(target, options)
    });

    let sinks = LiveSinks {
        json: settings
            .json
            .map(|sink| JsonHandle::spawn(sink, json_sink::DEFAULT_CAPACITY)),
        syslog,
        redis: settings
            .redis
            .map(|target| RedisHandle::spawn(target, crate::sinks::redis::DEFAULT_CAPACITY)),
    };
    let mut engine = Engine::new(
        Clock::new(),
        &settings.ifaces,
        settings.community_id_seed,
        sinks,
        settings.mode,
        settings.drop_policy.clone(),
    );
    engine.install(&mut kernel, &rules, settings.mode)?;
    let mut blocks = BlockTracker::new(engine.clock, settings.block_state.clone());
    if engine.drop_mode {
        blocks.restore(&mut kernel)?;
    }
    let mut side = Some(KernelSide {
        rate: rate_reader,
        reader: kernel_reader,
        blocks: engine.drop_mode.then_some(blocks),
        proven: Default::default(),
        policy: settings.drop_policy.clone(),
    });

    // One program, attached to every interface: its maps (rules, drop
    // lists, per-source state) are shared by construction. A failure names
    // its interface; returning drops the kernel, which detaches the rest.
    let mut watches = Vec::with_capacity(settings.ifaces.len());
    let mut attached = Vec::with_capacity(settings.ifaces.len());
    for iface in &settings.ifaces {
        let (watch, xdp_mode) = Watch::start(&mut kernel, iface, settings.attach)?;
        tracing::info!(iface, xdp_mode, "attached to interface");
        attached.push((iface.clone(), xdp_mode));
        watches.push(watch);
    }
    engine.learn_ifaces(&watches);
    let mut link_events = LinkEvents::open().map_err(RunError::Netlink)?;
    tracing::info!(
        ifaces = settings.ifaces.join(","),
        xdp_mode = attached.iter().map(|(_, mode)| *mode).collect::<Vec<_>>().join(","),
        rules = rules.meta.len(),
        mode = ?settings.mode,
        "sensor attached"
    );
    // `sensor inspect` sessions in this program (docs/inspect.md).
    let mut control = ControlHost::serve(&attached);

    let mut sweep = tokio::time::interval(Duration::from_nanos(RATE_WINDOW_NS));
    // Set when the loop ends on a failure rather than a signal.
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            Some(sample) = rx.recv() => {
                engine.on_record(sample);
                // Take whatever else is queued (the JSON writer flushes
                // once per batch it receives).
                while let Ok(sample) = rx.try_recv() {
                    engine.on_record(sample);
                }
            }
            _ = sweep.tick() => {
                // The maps are read on a blocking thread (up to 65,536 keys
                // each); records keep flowing meanwhile. A job still running
                // keeps the side: this tick starts none.
                if let Some(idle) = side.take() {
                    let with_figures = metrics_server.is_some();
                    let installs = engine.installs;
                    let ifindexes = watches.iter().filter_map(|w| w.ifindex).collect();
                    reading = Some(tokio::task::spawn_blocking(move || idle.read(with_figures, installs, ifindexes)));
                }
                // A reader ends early only when its buffer failed: that
                // CPU's alerts would stop for good. Stop loudly instead.
                if let Some(reason) = perf::stopped_reader(&readers) {
                    failure = Some(reason);
                    break;
                }
            }
            _ = sighup.recv() => {
                if reloading.is_none() {
                    let reload = reload.clone();
                    reloading = Some(tokio::task::spawn_blocking(move || reload()));
                } else {
                    reload_again = true;
                }
                if let Some(json) = engine.sinks.json.as_ref() {
                    // After the lines already queued; errors are logged by
                    // the writer, which keeps the old file then.
                    json.reopen();
                }
            }
            read = finished(&mut reading) => {
                reading = None;
                match read {
                    Ok(readings) => side = Some(apply_readings(&mut engine, readings, &mut publisher, &rules, &stats, &watches)),
                    Err(err) => {
                        failure = Some(format!("the kernel readings job failed: {err}"));
                        break;
                    }
                }
            }
            parsed = finished(&mut reloading) => {
                reloading = None;
                if std::mem::take(&mut reload_again) {
                    let reload = reload.clone();
                    reloading = Some(tokio::task::spawn_blocking(move || reload()));
                }
                let parsed = parsed.unwrap_or_else(|err| Err(format!("the rule parser failed: {err}")));
                match parsed {
                    Ok(new_rules) => {
                        // No flush: the rate limiter's accounts are keyed
                        // by rule id and carry on across the switch.
                        match engine.install(&mut kernel, &new_rules, settings.mode) {
                            Ok(()) => {
                                engine.reloads_ok += 1;
                                tracing::info!(rules = new_rules.meta.len(), "rules reloaded");
                                rules = new_rules;
                            }
                            Err(err) => {
                                engine.reloads_failed += 1;
                                tracing::error!(error = %err, "rules reload failed while writing maps");
                            }
                        }
                    }
                    Err(err) => {
                        engine.reloads_failed += 1;
                        tracing::error!("rules reload rejected, the old rules stay in force: {err}");
                    }
                }
            }
            request = control.request() => control.handle(&mut kernel, request),
            changed = link_events.changed() => match changed {
                Ok(()) => {
                    for watch in &mut watches {
                        watch.on_link_change(&mut kernel);
                    }
                    engine.learn_ifaces(&watches);
                }
                Err(err) => {
                    failure = Some(format!("link notifications failed: {err}"));
                    break;
                }
            },
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    // End the inspect session (if any), then stop the source and drain
    // every record already produced.
    control.close(&mut kernel).await;
    if let Err(err) = kernel.detach() {
        tracing::error!(error = %err, "detaching XDP");
    }
    let _ = stop_tx.send(true);
    while let Some(sample) = rx.recv().await {
        engine.on_record(sample);
    }
    let reader_problems = perf::join_readers(readers).await;
    if let Some(job) = reading.take() {
        // Its rate entries are not swept: the final flush reads the map
        // again and reports the same matches. The side comes back with it.
        match job.await {
            Ok(readings) => side = Some(readings.side),
            Err(err) => tracing::error!(error = %err, "the kernel readings job failed"),
        }
    }
    if let Some(side) = side.as_mut() {
        if let Some(entries) = rate_entries(side.rate.entries()) {
            engine.sweep(entries, Clock::monotonic_now(), true);
        }
        if let Some(tracker) = side.blocks.as_mut() {
            // The last word on the blocks, for the next start.
            let now = Clock::monotonic_now();
            let expired = side.reader.expire_blocks(now);
            let current = side.reader.blocked_sources();
            tracker.track(now, expired, current);
            tracker.save();
        }
    }
    if let Some(json) = engine.sinks.json.take() {
        let stats = json.close().await;
        if stats.dropped_queue_full > 0 {
            eprintln!(
                "sensor: JSON alert lines dropped: {} (writer queue full)",
                stats.dropped_queue_full
            );
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some(redis) = engine.sinks.redis.take() {
        let stats = redis.close(SYSLOG_CLOSE_DEADLINE).await;
        if stats.dropped() > 0 {
            eprintln!("sensor: Redis alerts dropped: {}", stats.dropped());
        }
    }
    let syslog_stats = match engine.sinks.syslog.take() {
        Some(handle) => Some(handle.close(SYSLOG_CLOSE_DEADLINE).await),
        None => None,
    };

    let counters = kernel.counters().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot read the kernel's counters for the exit summary");
        Default::default()
    });
    let lost = stats.lost.load(Ordering::Relaxed);
    let malformed = stats.malformed.load(Ordering::Relaxed);
    tracing::info!(
        packets = counters.packets,
        passed = counters.passed,
        dropped = counters.dropped,
        dropped_blocked_source = counters.dropped_blocked_source,
        dropped_static_blocklist = counters.dropped_static_blocklist,
        dropped_by_rule = counters.dropped_by_rule,
        would_drop = counters.would_drop,
        block_errors = counters.block_errors,
        tunnel_lost = counters.tunnel_lost,
        tunnel_packets = counters.tunnel_packets,
        alert_lines = engine.pipeline.lines(),
        records = stats.received.load(Ordering::Relaxed),
        perf_lost = lost,
        kernel_output_errors = counters.alert_output_errors,
        "sensor stopped"
    );
    if let Some(syslog) = syslog_stats {
        tracing::info!(
            sent = syslog.sent,
            dropped_queue_full = syslog.dropped_queue_full,
            dropped_on_close = syslog.dropped_on_close,
            dropped_unsendable = syslog.dropped_unsendable,
            "syslog sink closed"
        );
        if syslog.dropped() > 0 {
            eprintln!("sensor: syslog alerts dropped: {}", syslog.dropped());
        }
    }
    if lost > 0
        || malformed > 0
        || counters.alert_output_errors > 0
        || engine.pipeline.unknown_rule() > 0
    {
        eprintln!(
            "sensor: alert records lost: {lost} (perf ring full), {} (kernel output errors), {malformed} malformed, {} unknown rule",
            counters.alert_output_errors,
            engine.pipeline.unknown_rule()
        );
    }
    match failure.or_else(|| reader_problems.into_iter().next()) {
        Some(problem) => Err(RunError::Failed(problem)),
        None => Ok(()),
    }
}

/// A secret for the kernel's per-address hash: std's `RandomState` is keyed
/// from the operating system's random source once per process.
fn random_seed() -> u32 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(0x5e45_0115_u32) as u32
}
