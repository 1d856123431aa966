//! `sensor run`: load and attach the XDP program, turn its alert records
//! into lines, ship them, reload on SIGHUP, and detach cleanly on SIGINT /
//! SIGTERM with every sink flushed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sensor_common::alert::AlertRecord;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{BlockEntry, RATE_WINDOW_NS, kind};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::aggregate::{Aggregator, RateEntry};
use crate::alert::{Alert, ip_addr, unix_ns_to_datetime};
use crate::loader::{AttachMode, DropPolicy, Kernel, LoaderError, SensorMode};
use crate::perf::{self, PerfError, PerfStats};
use crate::rules::{CompiledRules, RuleMeta};
use crate::sinks::JsonSink;

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
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Perf(#[from] PerfError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Kernel monotonic time (what `bpf_ktime_get_ns` returns) to wall-clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_monotonic: i128,
}

impl Clock {
    pub fn new() -> Clock {
        let realtime = clock_ns(libc::CLOCK_REALTIME);
        let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
        Clock {
            realtime_minus_monotonic: realtime as i128 - monotonic as i128,
        }
    }

    pub fn monotonic_now() -> u64 {
        clock_ns(libc::CLOCK_MONOTONIC)
    }

    pub fn to_unix_ns(self, monotonic_ns: u64) -> u64 {
        (monotonic_ns as i128 + self.realtime_minus_monotonic).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Turns records into lines and writes them to the sinks.
struct Engine {
    iface: String,
    clock: Clock,
    aggregator: Aggregator,
    /// Every rule ever loaded, by id: records still in flight after a reload
    /// keep their rule's name.
    rules_by_id: HashMap<u32, RuleMeta>,
    json: Option<JsonSink>,
    /// Records whose rule id is unknown (should never happen; counted).
    unknown_rule: u64,
    lines: u64,
    drop_mode: bool,
    drop_policy: DropPolicy,
    /// Blocked sources already reported, with the end of their block.
    blocks: HashMap<AddrKey, BlockEntry>,
}

impl Engine {
    fn learn_rules(&mut self, rules: &CompiledRules) {
        for meta in &rules.meta {
            self.rules_by_id.insert(meta.id, meta.clone());
        }
    }

    fn on_record(&mut self, record: &AlertRecord) {
        if self.drop_mode && self.drop_policy.dry_run {
            self.report_would_block(record);
        }
        if let Some(count) = self.aggregator.on_record(record) {
            self.write(record, count);
        }
    }

    /// Dry run: what a `drop` rule would have done (the kernel drops nothing).
    fn report_would_block(&self, record: &AlertRecord) {
        let Some(rule) = self.rules_by_id.get(&record.sig_id) else {
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
        let Ok(current) = kernel.blocked_sources() else {
            return;
        };
        for (key, entry) in current {
            if self.blocks.insert(key, entry) != Some(entry) {
                let seconds = entry.until_ns.saturating_sub(now) / 1_000_000_000;
                tracing::warn!(
                    src = %ip_addr(key.version, &key.addr),
                    rule = entry.sig_id,
                    seconds_left = seconds,
                    "source blocked"
                );
            }
        }
    }

    fn write(&mut self, record: &AlertRecord, count: u64) {
        let Some(rule) = self.rules_by_id.get(&record.sig_id) else {
            self.unknown_rule += 1;
            tracing::error!(sig_id = record.sig_id, "alert for an unknown rule id");
            return;
        };
        let timestamp = unix_ns_to_datetime(self.clock.to_unix_ns(record.timestamp_ns));
        let line = Alert::new(record, rule, count, timestamp)
            .with_iface(self.iface.clone())
            .to_json_line();
        if let Some(json) = self.json.as_mut() {
            json.write_line(&line);
        }
        self.lines += 1;
    }

    fn flush(&mut self) {
        if let Some(json) = self.json.as_mut() {
            json.flush();
        }
    }

    /// Lines for matches the kernel counted but did not send (rate limit).
    fn sweep(&mut self, kernel: &Kernel, rules: &CompiledRules, final_flush: bool) {
        let entries = match kernel.rate_entries() {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the rate-limit map");
                return;
            }
        };
        let entries = entries.into_iter().filter_map(|(key, cpu, state)| {
            let rule = rules.rules.get(key.slot as usize)?;
            Some(RateEntry {
                sig_id: rule.sig_id,
                src: key.addr,
                cpu,
                state,
            })
        });
        let lines = if final_flush {
            self.aggregator.flush_all(entries)
        } else {
            self.aggregator.sweep(entries, Clock::monotonic_now())
        };
        for line in lines {
            debug_assert_ne!(line.record.kind, kind::SYN_FLOOD);
            self.write(&line.record, line.count);
        }
    }
}

/// Runs until SIGINT or SIGTERM. `reload` re-reads the rule files (SIGHUP).
pub async fn run(
    settings: RunSettings,
    mut rules: CompiledRules,
    reload: impl Fn() -> Result<CompiledRules, String>,
) -> Result<(), RunError> {
    let mut kernel = Kernel::load()?;
    kernel.write_rules(&rules, settings.mode)?;
    kernel.write_drop_policy(&settings.drop_policy)?;
    let mut events = kernel.take_events()?;

    let (tx, mut rx) = mpsc::channel(ALERT_QUEUE);
    let stats = Arc::new(PerfStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let readers = perf::spawn_readers(&mut events, tx, stats.clone(), stop_rx)?;

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;

    let attached_mode = kernel.attach(&settings.iface, settings.attach)?;
    tracing::info!(
        iface = settings.iface,
        xdp_mode = attached_mode,
        rules = rules.meta.len(),
        mode = ?settings.mode,
        "sensor attached"
    );

    let mut engine = Engine {
        iface: settings.iface.clone(),
        clock: Clock::new(),
        aggregator: Aggregator::new(),
        rules_by_id: HashMap::new(),
        json: settings.json,
        unknown_rule: 0,
        lines: 0,
        drop_mode: settings.mode == SensorMode::Drop,
        drop_policy: settings.drop_policy.clone(),
        blocks: HashMap::new(),
    };
    engine.learn_rules(&rules);

    let mut sweep = tokio::time::interval(Duration::from_nanos(RATE_WINDOW_NS));
    loop {
        tokio::select! {
            Some(record) = rx.recv() => {
                engine.on_record(&record);
                // Take whatever else is queued before flushing once.
                while let Ok(record) = rx.try_recv() {
                    engine.on_record(&record);
                }
                engine.flush();
            }
            _ = sweep.tick() => {
                engine.sweep(&kernel, &rules, false);
                engine.flush();
                if engine.drop_mode {
                    engine.track_blocks(&mut kernel);
                }
            }
            _ = sighup.recv() => {
                match reload() {
                    Ok(new_rules) => {
                        // Report what the old rules counted, then forget
                        // state keyed by slot: a slot may now hold another rule.
                        engine.sweep(&kernel, &rules, true);
                        let written = kernel
                            .clear_rule_state()
                            .and_then(|()| kernel.write_rules(&new_rules, settings.mode));
                        match written {
                            Ok(()) => {
                                engine.learn_rules(&new_rules);
                                tracing::info!(rules = new_rules.meta.len(), "rules reloaded");
                                rules = new_rules;
                            }
                            Err(err) => tracing::error!(error = %err, "rules reload failed while writing maps"),
                        }
                    }
                    Err(err) => tracing::error!("rules reload rejected, the old rules stay in force: {err}"),
                }
                if let Some(json) = engine.json.as_mut()
                    && let Err(err) = json.reopen()
                {
                    tracing::error!(error = %err, "cannot reopen the JSON file");
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    // Stop the source first, then drain every record already produced.
    if let Err(err) = kernel.detach() {
        tracing::error!(error = %err, "detaching XDP");
    }
    let _ = stop_tx.send(true);
    while let Some(record) = rx.recv().await {
        engine.on_record(&record);
    }
    for reader in readers {
        let _ = reader.await;
    }
    engine.sweep(&kernel, &rules, true);
    engine.flush();

    let counters = kernel.counters().unwrap_or_default();
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
        alert_lines = engine.lines,
        records = stats.received.load(Ordering::Relaxed),
        perf_lost = lost,
        kernel_output_errors = counters.alert_output_errors,
        "sensor stopped"
    );
    if lost > 0 || malformed > 0 || counters.alert_output_errors > 0 || engine.unknown_rule > 0 {
        eprintln!(
            "sensor: alert records lost: {lost} (perf ring full), {} (kernel output errors), {malformed} malformed, {} unknown rule",
            counters.alert_output_errors, engine.unknown_rule
        );
    }
    Ok(())
}
