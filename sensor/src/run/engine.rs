//! The live side of the pipeline: the sinks lines go to, the kernel's rule
//! slots and hit counts across reloads, drop mode's blocks, the metrics
//! snapshot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use sensor_common::alert::AlertRecord;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{BlockEntry, MAX_RULES};

use crate::alert::{Alert, CapturedPacket, ip_addr};
use crate::engine::aggregate::RateEntry;
use crate::engine::clock::Clock;
use crate::engine::pipeline::{InterfaceNames, LineError, LineSink, Pipeline};
use crate::kernel::blockstate;
use crate::kernel::loader::{Kernel, LoaderError};
use crate::kernel::perf::{AlertSample, PerfStats};
use crate::metrics::{BlockedSource, IfaceMetrics, MetricsSnapshot, RuleMetrics, SinkCounters};
use crate::rules::CompiledRules;
use crate::settings::{DropPolicy, SensorMode};
use crate::sinks::json::JsonHandle;
use crate::sinks::redis::RedisHandle;
use crate::sinks::syslog::SyslogHandle;

use super::link_watch::Watch;

/// The live sinks, fed by the pipeline. None of them fails a line: each
/// counts its own losses.
pub(super) struct LiveSinks {
    pub(super) json: Option<JsonHandle>,
    pub(super) syslog: Option<SyslogHandle>,
    pub(super) redis: Option<RedisHandle>,
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
pub(super) struct Engine {
    pub(super) clock: Clock,
    /// Records → lines, tagged with each record's frame bytes.
    pub(super) pipeline: Pipeline<Clock, CapturedPacket>,
    pub(super) sinks: LiveSinks,
    /// Kernel hit counts of earlier rule sets, by rule id (a reload reuses
    /// the kernel's per-slot counters).
    pub(super) banked_hits: HashMap<u32, u64>,
    /// Rule id of each global slot (`generation * MAX_RULES + slot`) of the
    /// kernel's two rule generations.
    pub(super) slot_ids: HashMap<u32, u32>,
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) drop_mode: bool,
    pub(super) drop_policy: DropPolicy,
    /// Blocked sources already reported, with the end of their block.
    pub(super) blocks: HashMap<AddrKey, BlockEntry>,
    /// `drop.state_file`.
    pub(super) block_state: Option<PathBuf>,
    /// The last save failed: try again at the next tick.
    pub(super) blocks_unsaved: bool,
    /// Drop mode: proven sources counted at a time (a map walk, so sampled).
    pub(super) proven_sample: super::proof::ProvenSample,
}

impl Engine {
    pub(super) fn new(
        clock: Clock,
        ifaces: &[String],
        community_id_seed: u16,
        sinks: LiveSinks,
        mode: SensorMode,
        drop_policy: DropPolicy,
        block_state: Option<PathBuf>,
    ) -> Engine {
        Engine {
            clock,
            pipeline: Pipeline::new(clock, Some(InterfaceNames::new(ifaces)), community_id_seed),
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
            proven_sample: Default::default(),
        }
    }

    /// The current index of every watched interface, for the lines' names.
    pub(super) fn learn_ifaces(&mut self, watches: &[Watch]) {
        for watch in watches {
            if let Some(ifindex) = watch.ifindex {
                self.pipeline.learn_iface(ifindex, &watch.iface);
            }
        }
    }

    pub(super) fn on_record(&mut self, sample: AlertSample) {
        let record = &sample.record;
        if self.drop_mode && self.drop_policy.dry_run {
            self.report_would_block(record);
        }
        let packet = CapturedPacket::ethernet(&sample.frame);
        let written = self.pipeline.on_record(record, packet, &mut self.sinks);
        log_unknown_rule(written);
    }

    /// Dry run: what a `drop` rule would have done (the kernel drops nothing).
    pub(super) fn report_would_block(&self, record: &AlertRecord) {
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
            crate::kernel::drop_policy::report_would_block(&src, rule.id, record.block);
        }
    }

    /// Logs new blocks and lifts ended ones (the kernel ignores ended
    /// blocks already; this keeps the map small and the log complete).
    pub(super) fn track_blocks(&mut self, kernel: &mut Kernel) {
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
    pub(super) fn save_blocks(&mut self) {
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
    pub(super) fn restore_blocks(&mut self, kernel: &mut Kernel) -> Result<(), LoaderError> {
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
    pub(super) fn install(
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
    pub(super) fn metrics(
        &self,
        kernel: &Kernel,
        rules: &CompiledRules,
        perf: &PerfStats,
        watches: &[Watch],
    ) -> Result<MetricsSnapshot, LoaderError> {
        let counters = kernel.counters()?;
        let ifaces = watches
            .iter()
            .map(|watch| {
                Ok(IfaceMetrics {
                    name: watch.iface.clone(),
                    attached: watch.ifindex.is_some(),
                    lost: watch.lost,
                    reattached: watch.reattached,
                    packets: watch.packets(kernel)?,
                })
            })
            .collect::<Result<Vec<_>, LoaderError>>()?;
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
            ifaces,
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
            proof: super::proof::proof_metrics(
                kernel,
                &counters,
                &self.drop_policy,
                &self.proven_sample,
                now,
            ),
        })
    }

    /// Lines for matches the kernel counted but did not send (rate limit).
    /// `entries` is the whole rate map, read at `now_ns` (monotonic).
    pub(super) fn sweep(&mut self, entries: Vec<RateEntry>, now_ns: u64, final_flush: bool) {
        let written = if final_flush {
            self.pipeline.flush_all(entries, &mut self.sinks)
        } else {
            self.pipeline.sweep(entries, now_ns, &mut self.sinks)
        };
        log_unknown_rule(written);
    }
}

/// Live sinks never fail; an unknown rule id is counted by the pipeline
/// and logged here.
pub(super) fn log_unknown_rule(written: Result<(), LineError<Infallible>>) {
    if let Err(err) = written {
        tracing::error!(sig_id = err.unknown_rule(), "alert for an unknown rule id");
    }
}
