//! `sensor run`: load and attach the XDP program, turn its alert records
//! into lines, ship them, reload on SIGHUP, and detach cleanly on SIGINT /
//! SIGTERM with every sink flushed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sensor_common::alert::AlertRecord;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{BlockEntry, MAX_RULES, RATE_WINDOW_NS};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alert::{Alert, CapturedPacket, ip_addr};
use crate::control::ControlHost;
use crate::engine::aggregate::RateEntry;
use crate::engine::clock::Clock;
use crate::engine::pipeline::{LineError, LineSink, Pipeline};
use crate::kernel::blockstate;
use crate::kernel::loader::{Kernel, LoaderError};
use crate::kernel::netlink::LinkEvents;
use crate::kernel::perf::{self, AlertSample, PerfError, PerfStats};
use crate::kernel::preflight;
use crate::kernel::rate::RateEntries;
use crate::metrics::{BlockedSource, MetricsSnapshot, RuleMetrics, SinkCounters};
use crate::rules::CompiledRules;
use crate::settings::{AttachMode, DropPolicy, SensorMode, SyslogFormat};
use crate::sinks::json::{self as json_sink, JsonHandle, JsonSink};
use crate::sinks::redis::{RedisHandle, RedisTarget};
use crate::sinks::syslog::{SyslogHandle, SyslogSink, SyslogTarget};

/// Records waiting between the perf readers and the engine. When full the
/// readers wait and the kernel's rings absorb the burst (then count losses).
const ALERT_QUEUE: usize = 8_192;

/// Everything `run` needs, resolved from flags and the config file.
pub struct RunSettings {
    pub iface: String,
    pub mode: SensorMode,
    pub attach: AttachMode,
    pub json: Option<JsonSink>,
    /// Drop mode's allowlist, static blocklist and dry run.
    pub drop_policy: DropPolicy,
    pub syslog: Option<(SyslogTarget, SyslogFormat)>,
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
}

/// How long shutdown waits for the syslog peer to take queued alerts.
const SYSLOG_CLOSE_DEADLINE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod equivalence_tests;

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

/// The watched interface: attached (with the index it had then), or gone
/// and waited for. Link notifications drive it; nothing polls.
struct Watch {
    iface: String,
    attach: AttachMode,
    ifindex: Option<u32>,
    /// Times the interface disappeared under the sensor.
    lost: u64,
    /// Times the sensor attached again to a returning interface.
    reattached: u64,
}

impl Watch {
    fn on_link_change(&mut self, kernel: &mut Kernel) {
        let now = preflight::interface_index(&self.iface);
        match (self.ifindex, now) {
            // Still the same interface (down/up keeps the program attached).
            (Some(old), Some(new)) if old == new => {}
            (Some(_), _) => {
                // Gone, or replaced by a new interface of the same name.
                self.ifindex = None;
                self.lost += 1;
                if let Err(err) = kernel.detach() {
                    tracing::debug!(error = %err, "dropping the link of a vanished interface");
                }
                tracing::warn!(
                    iface = self.iface,
                    "the watched interface disappeared: watching nothing until it returns"
                );
                if now.is_some() {
                    self.reattach(kernel);
                }
            }
            (None, Some(_)) => self.reattach(kernel),
            (None, None) => {}
        }
    }

    fn reattach(&mut self, kernel: &mut Kernel) {
        match kernel.attach(&self.iface, self.attach) {
            Ok(mode) => {
                self.ifindex = preflight::interface_index(&self.iface);
                self.reattached += 1;
                tracing::info!(
                    iface = self.iface,
                    xdp_mode = mode,
                    "the watched interface is back: sensor attached again, same rules"
                );
            }
            Err(err) => tracing::error!(
                iface = self.iface,
                error = %err,
                "the watched interface is back but attaching failed; waiting for its next change"
            ),
        }
    }
}

/// The live sinks, fed by the pipeline. None of them fails a line: each
/// counts its own losses.
struct LiveSinks {
    json: Option<JsonHandle>,
    syslog: Option<SyslogHandle>,
    redis: Option<RedisHandle>,
}

impl LineSink for LiveSinks {
    type Error = Infallible;

    fn deliver(&mut self, alert: &Alert) -> Result<(), Infallible> {
        let line = alert.to_json_line();
        if let Some(redis) = self.redis.as_ref() {
            // Never waits: a full queue is counted in the sink's stats.
            redis.send(&line);
        }
        if let Some(json) = self.json.as_ref() {
            // Never waits: a full queue is counted in the sink's stats.
            json.send(&line);
        }
        if let Some(syslog) = self.syslog.as_ref() {
            // Never waits: a full queue is counted in the sink's stats.
            syslog.send(alert);
        }
        Ok(())
    }
}

/// The live side of the pipeline: kernel rule slots, blocks, and the
/// sinks the lines go to.
struct Engine {
    clock: Clock,
    /// Records → lines, tagged with each record's frame bytes.
    pipeline: Pipeline<Clock, CapturedPacket>,
    sinks: LiveSinks,
    /// Kernel hit counts of earlier rule sets, by rule id (a reload reuses
    /// the kernel's per-slot counters).
    banked_hits: HashMap<u32, u64>,
    /// Rule id of each global slot (`generation * MAX_RULES + slot`) of the
    /// kernel's two rule generations.
    slot_ids: HashMap<u32, u32>,
    reloads_ok: u64,
    reloads_failed: u64,
    drop_mode: bool,
    drop_policy: DropPolicy,
    /// Blocked sources already reported, with the end of their block.
    blocks: HashMap<AddrKey, BlockEntry>,
    /// `drop.state_file`.
    block_state: Option<PathBuf>,
    /// The last save failed: try again at the next tick.
    blocks_unsaved: bool,
}

impl Engine {
    fn new(
        clock: Clock,
        iface: &str,
        community_id_seed: u16,
        sinks: LiveSinks,
        mode: SensorMode,
        drop_policy: DropPolicy,
        block_state: Option<PathBuf>,
    ) -> Engine {
        Engine {
            clock,
            pipeline: Pipeline::new(clock, Some(iface.to_owned()), community_id_seed),
            sinks,
            banked_hits: HashMap::new(),
            slot_ids: HashMap::new(),
            reloads_ok: 0,
            reloads_failed: 0,
            drop_mode: mode == SensorMode::Drop,
            drop_policy,
            blocks: HashMap::new(),
            block_state: block_state.filter(|_| mode == SensorMode::Drop),
            blocks_unsaved: false,
        }
    }

    fn on_record(&mut self, sample: AlertSample) {
        let record = &sample.record;
        if self.drop_mode && self.drop_policy.dry_run {
            self.report_would_block(record);
        }
        let packet = CapturedPacket::ethernet(&sample.frame);
        let written = self.pipeline.on_record(record, packet, &mut self.sinks);
        log_unknown_rule(written);
    }

    /// Dry run: what a `drop` rule would have done (the kernel drops nothing).
    fn report_would_block(&self, record: &AlertRecord) {
        let Some(rule) = self.pipeline.rule(record.sig_id) else {
            return;
        };
        let src = ip_addr(record.packet.ip_version, &record.packet.src_addr);
        if rule.drop
            && !self
                .drop_policy
                .allowlist
                .iter()
                .any(|net| net.contains(&src))
        {
            tracing::warn!(src = %src, rule = rule.id, "dry run: would drop, and block the source");
        }
    }

    /// Logs new blocks and lifts ended ones (the kernel ignores ended
    /// blocks already; this keeps the map small and the log complete).
    fn track_blocks(&mut self, kernel: &mut Kernel) {
        let now = Clock::monotonic_now();
        match kernel.expire_blocks(now) {
            Ok(expired) => {
                for (key, entry) in expired {
                    self.blocks.remove(&key);
                    tracing::info!(src = %ip_addr(key.version, &key.addr), rule = entry.sig_id, "source unblocked");
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot expire blocks"),
        }
        let current = match kernel.blocked_sources() {
            Ok(current) => current,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the blocked sources");
                return;
            }
        };
        // The kernel's map is the truth (its LRU may have forgotten a block).
        let current: HashMap<AddrKey, BlockEntry> = current.into_iter().collect();
        let mut changed = current.len() != self.blocks.len();
        for (key, entry) in &current {
            if self.blocks.get(key) != Some(entry) {
                changed = true;
                let seconds = entry.until_ns.saturating_sub(now) / 1_000_000_000;
                tracing::warn!(
                    src = %ip_addr(key.version, &key.addr),
                    rule = entry.sig_id,
                    seconds_left = seconds,
                    "source blocked"
                );
            }
        }
        self.blocks = current;
        if changed || self.blocks_unsaved {
            self.save_blocks();
        }
    }

    /// Keeps the blocks for the next start (`drop.state_file`); a failure
    /// is logged and retried at the next tick.
    fn save_blocks(&mut self) {
        let Some(path) = &self.block_state else {
            return;
        };
        let clock = self.clock;
        let blocks = self.blocks.iter().map(|(key, entry)| (*key, *entry));
        match blockstate::save(path, blocks, |mono| clock.to_unix_ns(mono)) {
            Ok(()) => self.blocks_unsaved = false,
            Err(err) => {
                self.blocks_unsaved = true;
                tracing::error!("cannot save the blocked sources: {err}");
            }
        }
    }

    /// Puts back the blocks saved by the previous run (before attaching).
    fn restore_blocks(&mut self, kernel: &mut Kernel) -> Result<(), LoaderError> {
        let Some(path) = &self.block_state else {
            return Ok(());
        };
        let clock = self.clock;
        let now_unix = clock.to_unix_ns(Clock::monotonic_now());
        let saved = match blockstate::load(path, now_unix, |unix| clock.to_monotonic_ns(unix)) {
            Ok(saved) => saved,
            Err(err) => {
                // Fail open: no block is restored, none is half-restored.
                tracing::error!("{err}");
                return Ok(());
            }
        };
        for (key, entry) in &saved {
            kernel.restore_block(key, entry)?;
            self.blocks.insert(*key, *entry);
        }
        tracing::info!(
            blocks = saved.len(),
            file = %path.display(),
            "blocked sources restored"
        );
        Ok(())
    }

    /// Installs a rule set in the kernel's free generation: first banks
    /// that generation's last counts under the ids of the rules that had its
    /// slots and forgets their state, then writes and switches.
    fn install(
        &mut self,
        kernel: &mut Kernel,
        rules: &CompiledRules,
        mode: SensorMode,
    ) -> Result<(), LoaderError> {
        let free = 1 - kernel.generation()?;
        let base = free as u32 * MAX_RULES;
        let finals = kernel.recycle_generation(free)?;
        for (slot, stat) in (base..).zip(finals) {
            if let Some(id) = self.slot_ids.remove(&slot) {
                *self.banked_hits.entry(id).or_default() += stat.hits;
            }
        }
        let generation = kernel.write_rules(rules, mode)?;
        debug_assert_eq!(generation, free);
        for (slot, info) in (base..).zip(&rules.rules) {
            self.slot_ids.insert(slot, info.sig_id);
        }
        self.pipeline.learn_rules(rules);
        Ok(())
    }

    /// The figures to publish; an error when the kernel's counters cannot
    /// be read (then the last good snapshot stays up: publishing zeros
    /// would look like a counter reset to Prometheus).
    fn metrics(
        &self,
        kernel: &Kernel,
        rules: &CompiledRules,
        perf: &PerfStats,
        watch: &Watch,
    ) -> Result<MetricsSnapshot, LoaderError> {
        let counters = kernel.counters()?;
        // Hits by rule id: banked counts plus both generations' slots (the
        // old one may still see packets that started before a reload).
        let mut hits = self.banked_hits.clone();
        for (slot, stat) in (0u32..).zip(kernel.rule_stats_all()?) {
            if let Some(id) = self.slot_ids.get(&slot) {
                *hits.entry(*id).or_default() += stat.hits;
            }
        }
        let mut per_rule: Vec<RuleMetrics> = rules
            .meta
            .iter()
            .map(|meta| RuleMetrics {
                sig_id: meta.id,
                name: meta.name.clone(),
                hits: hits.get(&meta.id).copied().unwrap_or(0),
                alerts: self.pipeline.lines_of_rule(meta.id),
            })
            .collect();
        per_rule.sort_by_key(|r| r.sig_id);
        let now = Clock::monotonic_now();
        Ok(MetricsSnapshot {
            iface_attached: watch.ifindex.is_some(),
            iface_lost: watch.lost,
            iface_reattached: watch.reattached,
            packets_seen: counters.packets,
            packets_passed: counters.passed,
            packets_dropped: counters.dropped,
            packets_not_ip: counters.not_ip,
            rules: per_rule,
            json: self
                .sinks
                .json
                .as_ref()
                .map(|json| {
                    let stats = json.stats();
                    // A line dropped at the writer's full queue is a failed
                    // write as far as the metric is concerned.
                    SinkCounters {
                        lines: stats.lines,
                        errors: stats.errors + stats.dropped_queue_full,
                    }
                })
                .unwrap_or_default(),
            syslog: self
                .sinks
                .syslog
                .as_ref()
                .map(SyslogHandle::stats)
                .unwrap_or_default(),
            redis: self
                .sinks
                .redis
                .as_ref()
                .map(RedisHandle::stats)
                .unwrap_or_default(),
            perf_lost_samples: perf.lost.load(Ordering::Relaxed),
            kernel_alert_output_errors: counters.alert_output_errors,
            rules_loaded: rules.meta.len() as u64,
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
            dropped_blocked_source: counters.dropped_blocked_source,
            dropped_static_blocklist: counters.dropped_static_blocklist,
            dropped_by_rule: counters.dropped_by_rule,
            would_drop: counters.would_drop,
            block_errors: counters.block_errors,
            blocked: self
                .blocks
                .iter()
                .filter(|(_, entry)| entry.until_ns > now)
                .map(|(key, entry)| BlockedSource {
                    src: ip_addr(key.version, &key.addr).to_string(),
                    sig_id: entry.sig_id,
                    seconds_left: (entry.until_ns - now).div_ceil(1_000_000_000),
                })
                .collect(),
        })
    }

    /// Lines for matches the kernel counted but did not send (rate limit).
    /// `entries` is the whole rate map, read at `now_ns` (monotonic).
    fn sweep(&mut self, entries: Vec<RateEntry>, now_ns: u64, final_flush: bool) {
        let written = if final_flush {
            self.pipeline.flush_all(entries, &mut self.sinks)
        } else {
            self.pipeline.sweep(entries, now_ns, &mut self.sinks)
        };
        log_unknown_rule(written);
    }
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

/// A background job's result, or never while there is none.
async fn finished<T>(job: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match job {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Live sinks never fail; an unknown rule id is counted by the pipeline
/// and logged here.
fn log_unknown_rule(written: Result<(), LineError<Infallible>>) {
    if let Err(err) = written {
        tracing::error!(sig_id = err.unknown_rule(), "alert for an unknown rule id");
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
    let mut kernel = Kernel::load()?;
    kernel.write_drop_policy(&settings.drop_policy)?;
    kernel.write_alert_packet_bytes(settings.packet_bytes)?;
    let mut events = kernel.take_events()?;
    let rate_reader = Arc::new(kernel.take_rate_reader()?);
    let mut sweeping: Option<JoinHandle<(Result<RateEntries, LoaderError>, u64)>> = None;

    let (tx, mut rx) = mpsc::channel(ALERT_QUEUE);
    let stats = Arc::new(PerfStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers = perf::spawn_readers(&mut events, tx, stats.clone(), stop_rx)?;

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let metrics = Arc::new(RwLock::new(MetricsSnapshot::default()));
    let metrics_server = match settings.metrics {
        Some(addr) => Some(
            crate::metrics::serve(addr, metrics.clone())
                .await
                .map_err(|source| RunError::Metrics { addr, source })?
                .1,
        ),
        None => None,
    };
    let syslog = settings.syslog.map(|(target, format)| {
        SyslogSink::spawn(target, format, crate::sinks::syslog::DEFAULT_CAPACITY)
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
        &settings.iface,
        settings.community_id_seed,
        sinks,
        settings.mode,
        settings.drop_policy.clone(),
        settings.block_state.clone(),
    );
    engine.install(&mut kernel, &rules, settings.mode)?;
    engine.restore_blocks(&mut kernel)?;

    let attached_mode = kernel.attach(&settings.iface, settings.attach)?;
    let mut watch = Watch {
        iface: settings.iface.clone(),
        attach: settings.attach,
        ifindex: preflight::interface_index(&settings.iface),
        lost: 0,
        reattached: 0,
    };
    let mut link_events = LinkEvents::open().map_err(RunError::Netlink)?;
    tracing::info!(
        iface = settings.iface,
        xdp_mode = attached_mode,
        rules = rules.meta.len(),
        mode = ?settings.mode,
        "sensor attached"
    );
    // `sensor inspect` sessions in this program (docs/inspect.md).
    let mut control = ControlHost::serve(&settings.iface, attached_mode);

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
                // The map is read on a blocking thread (up to 65,536 keys);
                // records keep flowing meanwhile.
                if sweeping.is_none() {
                    let reader = rate_reader.clone();
                    sweeping = Some(tokio::task::spawn_blocking(move || {
                        let entries = reader.entries();
                        (entries, Clock::monotonic_now())
                    }));
                }
                if engine.drop_mode {
                    engine.track_blocks(&mut kernel);
                }
                if metrics_server.is_some() {
                    match engine.metrics(&kernel, &rules, &stats, &watch) {
                        Ok(snapshot) => {
                            *metrics.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = snapshot;
                        }
                        Err(err) => tracing::error!(error = %err, "cannot read the kernel's counters; the metrics keep their last values"),
                    }
                }
                // A reader ends early only when its buffer failed: that
                // CPU's alerts would stop for good. Stop loudly instead.
                if readers.iter().any(|reader| reader.is_finished()) {
                    failure = Some("a perf reader stopped (see the error above): alerts of its CPU can no longer be read".to_owned());
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
            swept = finished(&mut sweeping) => {
                sweeping = None;
                match swept {
                    Ok((read, now)) => {
                        if let Some(entries) = rate_entries(read) {
                            engine.sweep(entries, now, false);
                        }
                    }
                    Err(err) => tracing::error!(error = %err, "the rate-map reader failed"),
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
                Ok(()) => watch.on_link_change(&mut kernel),
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
    if let Some(job) = sweeping.take() {
        // Its lines would come before the final flush's; the flush reads the
        // map again and reports the same matches, so the job is just ended.
        job.abort();
    }
    if let Some(entries) = rate_entries(rate_reader.entries()) {
        engine.sweep(entries, Clock::monotonic_now(), true);
    }
    if engine.drop_mode {
        // The last word on the blocks, for the next start.
        engine.track_blocks(&mut kernel);
        engine.save_blocks();
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
