//! Shared by the integration tests: where the shared corpus lives, rule
//! loading (from files and from YAML text), replay into parsed lines,
//! synchronous draining of the kernel's perf buffers, and the in-memory
//! evaluation that `replay` uses.
#![allow(dead_code)]

pub mod certs;
pub mod eve;
pub mod fixtures;
pub mod floods;
pub mod kinds;
pub mod live;
pub mod netns;
pub mod pcap;
pub mod rsyslog;

use aya::maps::MapData;
use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use std::path::{Path, PathBuf};

use sensor::alert::Alert;
use sensor::kernel::loader::Kernel;
use sensor::kernel::perf::{AlertSample, Sample as _};
use sensor::replay::state::MemoryState;
use sensor::replay::{ReplayError, ReplayStats, replay};
use sensor::rules::{CompiledRules, MemoryTables};
use sensor_common::alert::AlertRecord;
use sensor_common::detect::{AlertHead, process};
use sensor_common::parse::parse_ethernet;

/// Compiles rule YAML given as text (written to a temporary file, so the
/// real loader and its error reporting are used).
pub fn compile_yaml(yaml: &str) -> CompiledRules {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, yaml).unwrap();
    load_rules(&path)
}

/// `drop.block_seconds` when no configuration says otherwise (contract §5).
pub const DEFAULT_BLOCK_SECONDS: u32 = 300;

/// The project's `shared/` folder (next to the repository), or `None` after
/// printing a visible SKIP. With `CI=true` a missing folder fails the test.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.join("pcaps/expected.json").is_file() {
        return Some(dir);
    }
    let message = format!(
        "{test}: the shared pcap corpus is not at {} (expected pcaps/expected.json inside)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}; CI=true, so it must be there");
    }
    sensor::testing::skip(&message);
    None
}

/// Loads and compiles a rule file or directory, as `sensor replay` does.
pub fn load_rules(path: &Path) -> CompiledRules {
    let set =
        sensor::rules::load_path(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    sensor::rules::compile(&set, DEFAULT_BLOCK_SECONDS)
}

/// Replays `pcap`; each alert goes through its JSON line and back, so the
/// tests see what `sensor replay --json -` prints.
pub fn replay_lines(
    pcap: &Path,
    rules: &CompiledRules,
) -> (Vec<Alert>, Result<ReplayStats, ReplayError>) {
    let mut alerts = Vec::new();
    let result = replay(pcap, rules, &mut |alert| {
        let line = alert.to_json_line();
        eve::check_alert_text(&line);
        let parsed =
            Alert::from_json(&line).unwrap_or_else(|err| panic!("unparsable line {line}: {err}"));
        assert_eq!(&parsed, alert, "line does not round-trip: {line}");
        alerts.push(parsed);
        Ok(())
    });
    (alerts, result)
}

/// The alert records `replay`'s evaluation produces for one frame.
pub fn memory_alerts(rules: &CompiledRules, frame: &[u8]) -> Vec<AlertRecord> {
    let meta = parse_ethernet(frame);
    let tables = MemoryTables {
        rules,
        drop_mode: false,
    };
    let mut state = MemoryState::default();
    let mut out = Vec::new();
    process(&meta, 1, &tables, &mut state, &mut |head: &AlertHead| {
        out.push(head.record(&meta, 1, 0));
    });
    out
}

/// The perf buffers of every online CPU, read without an async runtime.
pub struct KernelAlerts {
    buffers: Vec<PerfEventArrayBuffer<MapData>>,
}

impl KernelAlerts {
    pub fn open(kernel: &mut Kernel) -> KernelAlerts {
        let mut events = kernel.take_events().expect("EVENTS map");
        let buffers = aya::util::online_cpus()
            .expect("online CPUs")
            .into_iter()
            .map(|cpu| events.open(cpu, None).expect("perf buffer"))
            .collect();
        KernelAlerts { buffers }
    }

    /// Every record the program has sent since the last call.
    pub fn drain(&mut self) -> Vec<AlertRecord> {
        self.drain_samples()
            .into_iter()
            .map(|sample| sample.record)
            .collect()
    }

    /// [`KernelAlerts::drain`], with the frame bytes behind each record.
    pub fn drain_samples(&mut self) -> Vec<AlertSample> {
        let mut out = Vec::new();
        for buffer in &mut self.buffers {
            buffer.for_each(|event| match event {
                PerfEvent::Sample { head, tail } => {
                    out.push(AlertSample::decode(head, tail).expect("well-formed sample"))
                }
                PerfEvent::Lost { count } => panic!("{count} alert records lost"),
            });
        }
        out
    }
}
