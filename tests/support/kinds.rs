//! For the per-kind detection tests: a bench that runs each frame through
//! the real XDP program (BPF_PROG_TEST_RUN) and, alongside, through
//! `replay`'s in-memory evaluation, both with state that persists across
//! frames and the same clock, so stateful kinds (`ttl: deviation`,
//! `syn_flood`, the per-(rule, source) rate limit) can be compared too.

use sensor::kernel::loader::Kernel;
use sensor::replay::state::MemoryState;
use sensor::rules::{CompiledRules, MemoryTables};
use sensor::settings::SensorMode;
use sensor_common::alert::AlertRecord;
use sensor_common::detect::{AlertHead, process};
use sensor_common::parse::parse_ethernet;
use sensor_common::tables::{RateState, RuleStats};

use super::{KernelAlerts, compile_yaml};

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling thread to the CPU it is running on and returns that
/// CPU. BPF_PROG_TEST_RUN runs the program on the caller's CPU, and the
/// rate limiter is per CPU: pinned, every run shares one rate state, as
/// the single in-memory "CPU" of replay does.
pub fn pin_to_current_cpu() -> u32 {
    // SAFETY: plain libc calls on the calling thread (pid 0) with a set we own.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
        cpu as u32
    }
}

/// What one frame did in the kernel and in memory.
pub struct Outcome {
    pub verdict: u32,
    /// The kernel's records for this frame.
    pub kernel: Vec<AlertRecord>,
    /// The in-memory records with state carried over from earlier frames.
    pub memory: Vec<AlertRecord>,
}

/// (signature id, count) of each record, in order.
pub fn heads(records: &[AlertRecord]) -> Vec<(u32, u64)> {
    records.iter().map(|r| (r.sig_id, r.count)).collect()
}

pub fn sig_ids(records: &[AlertRecord]) -> Vec<u32> {
    records.iter().map(|r| r.sig_id).collect()
}

/// The loaded program with `rules` written, its perf buffers, and the
/// in-memory twin fed the same frames at the same times.
pub struct Bench {
    pub kernel: Kernel,
    alerts: KernelAlerts,
    pub rules: CompiledRules,
    memory: MemoryState,
    pub cpu: u32,
}

impl Bench {
    /// Pins the calling thread (see [`pin_to_current_cpu`]), loads the
    /// program and writes the rules of `yaml`.
    pub fn new(yaml: &str) -> Bench {
        let cpu = pin_to_current_cpu();
        let rules = compile_yaml(yaml);
        let mut kernel = Kernel::load().expect("XDP program loads");
        kernel
            .write_rules(&rules, SensorMode::Ids)
            .expect("rule maps written");
        let alerts = KernelAlerts::open(&mut kernel);
        Bench {
            kernel,
            alerts,
            rules,
            memory: MemoryState::new(),
            cpu,
        }
    }

    /// Runs `frame` through the kernel and through memory.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        let now = monotonic_ns();
        let verdict = self.kernel.test_run(frame).expect("BPF_PROG_TEST_RUN");
        let kernel = self.alerts.drain();
        let tables = MemoryTables {
            rules: &self.rules,
            drop_mode: false,
        };
        let meta = parse_ethernet(frame);
        let mut memory = Vec::new();
        process(
            &meta,
            now,
            &tables,
            &mut self.memory,
            &mut |head: &AlertHead| memory.push(head.record(&meta, now, self.cpu)),
        );
        Outcome {
            verdict,
            kernel,
            memory,
        }
    }

    /// Runs `frame` and checks that the kernel and the in-memory logic
    /// agree: same (signature, count) sequence, same parsed packet in each
    /// record, the pinned CPU. Returns the kernel's records; disagreements
    /// are pushed to `failures` under `name`.
    pub fn check(
        &mut self,
        name: &str,
        frame: &[u8],
        failures: &mut Vec<String>,
    ) -> Vec<AlertRecord> {
        let outcome = self.run(frame);
        if outcome.verdict != XDP_PASS {
            failures.push(format!(
                "{name}: verdict {} (want XDP_PASS)",
                outcome.verdict
            ));
        }
        if heads(&outcome.kernel) != heads(&outcome.memory) {
            failures.push(format!(
                "{name}: kernel (sig, count) {:?} but replay logic {:?}",
                heads(&outcome.kernel),
                heads(&outcome.memory)
            ));
        }
        for (k, m) in outcome.kernel.iter().zip(&outcome.memory) {
            if k.packet != m.packet || k.kind != m.kind || k.action != m.action {
                failures.push(format!(
                    "{name}: sig {}: kernel record {k:?}\n  differs from replay logic {m:?}",
                    k.sig_id
                ));
            }
            if k.cpu != self.cpu {
                failures.push(format!(
                    "{name}: record from CPU {} (pinned to {})",
                    k.cpu, self.cpu
                ));
            }
        }
        outcome.kernel
    }

    /// Per-slot counters from the kernel (summed over CPUs) and from memory.
    pub fn rule_stats(&self) -> (Vec<RuleStats>, Vec<RuleStats>) {
        let kernel = self.kernel.rule_stats().expect("RULE_STATS readable");
        let memory = self.memory.rule_stats().to_vec();
        (kernel, memory)
    }

    /// The rule slot of signature `id`.
    pub fn slot(&self, id: u32) -> usize {
        self.rules
            .meta
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("no rule {id}"))
    }

    /// The in-memory rate state of (rule `id`, source `src`).
    pub fn memory_rate(&self, id: u32, src: &sensor_common::packet::AddrKey) -> Option<RateState> {
        self.memory
            .rate_states()
            .find(|(key, _)| key.sig_id == id && key.addr == *src)
            .map(|(_, state)| *state)
    }
}

pub const XDP_PASS: u32 = 2;

/// The rate-map / LPM key of an IPv4 address.
pub fn addr_key_v4(addr: [u8; 4]) -> sensor_common::packet::AddrKey {
    let mut key = sensor_common::packet::AddrKey {
        version: 4,
        ..Default::default()
    };
    key.addr[..4].copy_from_slice(&addr);
    key
}
