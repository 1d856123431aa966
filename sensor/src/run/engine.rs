//! The live side of the pipeline: the sinks lines go to, the kernel's rule
//! slots and hit counts across reloads, the metrics snapshot (from the
//! kernel's figures read off this task, in `readings`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

use sensor_common::alert::AlertRecord;
use sensor_common::packet::AddrKey;
use sensor_common::tables::{BlockEntry, MAX_RULES};

use crate::alert::{Alert, CapturedPacket, ip_addr};
use crate::engine::aggregate::RateEntry;
use crate::engine::clock::Clock;
use crate::engine::pipeline::{InterfaceNames, LineError, LineSink, Pipeline};
use crate::kernel::loader::{Kernel, LoaderError};
use crate::kernel::perf::{AlertSample, PerfStats};
use crate::metrics::{BlockedSource, IfaceMetrics, MetricsSnapshot, RuleMetrics, SinkCounters};
use crate::rules::CompiledRules;
use crate::settings::{DropPolicy, SensorMode};
use crate::sinks::json::JsonHandle;
use crate::sinks::redis::RedisHandle;
use crate::sinks::syslog::SyslogHandle;

use super::link_watch::Watch;
use super::readings::KernelFigures;

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
    /// Rule sets installed so far: kernel figures read across an install
    /// are not published.
    pub(super) installs: u64,
}

impl Engine {
    pub(super) fn new(
        clock: Clock,
        ifaces: &[String],
        community_id_seed: u16,
        sinks: LiveSinks,
        mode: SensorMode,
        drop_policy: DropPolicy,
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
            installs: 0,
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
        self.installs += 1;
        Ok(())
    }

    /// The figures to publish, from the kernel's `figures` (read when
    /// the engine had made `installs` installs), the blocks now and the
    /// last count of proven sources.
    pub(super) fn metrics(
        &self,
        figures: &KernelFigures,
        blocks: &HashMap<AddrKey, BlockEntry>,
        proven_sources: u64,
        rules: &CompiledRules,
        perf: &PerfStats,
        watches: &[Watch],
    ) -> MetricsSnapshot {
        let counters = &figures.counters;
        let ifaces = watches
            .iter()
            .map(|watch| IfaceMetrics {
                name: watch.iface.clone(),
                attached: watch.ifindex.is_some(),
                lost: watch.lost,
                reattached: watch.reattached,
                packets: watch.packets(&figures.iface_packets),
            })
            .collect();
        // Hits by rule id: banked counts plus both generations' slots (the
        // old one may still see packets that started before a reload).
        let mut hits = self.banked_hits.clone();
        for (slot, stat) in (0u32..).zip(&figures.rule_stats) {
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
        MetricsSnapshot {
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
            tunnel_lost: counters.tunnel_lost,
            tunnel_packets: counters.tunnel_packets,
            blocked: blocks
                .iter()
                .filter(|(_, entry)| entry.until_ns > now)
                .map(|(key, entry)| BlockedSource {
                    src: ip_addr(key.version, &key.addr).to_string(),
                    sig_id: entry.sig_id,
                    seconds_left: (entry.until_ns - now).div_ceil(1_000_000_000),
                })
                .collect(),
            proof: super::proof::proof_metrics(counters, proven_sources),
        }
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
