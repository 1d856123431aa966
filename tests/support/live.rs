//! For the end-to-end detection tests: pcaps with a chosen packet spacing,
//! one live run of `sensor run` on a veth testbed, `sensor replay` through
//! the command line, and the parts of alert lines that live and replay
//! must share.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::{Testbed, wait_for};

pub use super::netns::SENSOR;

/// Every line of a JSON-lines file (missing file: none); every alert line
/// is checked against Suricata's EVE schema.
pub fn read_lines(path: &Path) -> Vec<Value> {
    parse_lines(&std::fs::read_to_string(path).unwrap_or_default())
}

/// JSON lines, each alert line checked against Suricata's EVE schema.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let line = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            super::eve::check_alert_line(&line);
            line
        })
        .collect()
}

/// What live and replay must agree on: the line without its time,
/// interface and packet number.
pub fn essence(alert: &Value) -> Value {
    let mut a = alert.clone();
    let obj = a.as_object_mut().expect("an alert line is an object");
    obj.remove("timestamp");
    obj.remove("in_iface");
    obj.remove("pcap_cnt");
    a
}

/// `value` as JSON text with every object's keys sorted: equal values give
/// equal text whatever order their keys were written or removed in.
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// `sensor replay --pcap PCAP --rules RULES --json -`, parsed.
pub fn replay_cli(pcap: &Path, rules: &Path) -> Vec<Value> {
    let output = Command::new(SENSOR)
        .args(["replay", "--pcap"])
        .arg(pcap)
        .arg("--rules")
        .arg(rules)
        .args(["--json", "-"])
        .output()
        .expect("run sensor replay");
    assert!(
        output.status.success(),
        "sensor replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_lines(&String::from_utf8(output.stdout).expect("UTF-8 output"))
}

/// What one live run produced.
pub struct Live {
    pub lines: Vec<Value>,
    /// The sensor's log (stderr).
    pub log: String,
    /// How long tcpreplay took, start to end.
    pub inject_time: Duration,
}

impl Live {
    /// `packets=N` of the sensor's "sensor stopped" log line.
    pub fn packets_seen(&self) -> Option<u64> {
        let line = self.log.lines().find(|l| l.contains("sensor stopped"))?;
        let at = line.find(" packets=")? + " packets=".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

/// Starts `sensor run --xdp-mode native` with `rules` on the sensor side
/// of a fresh testbed, sends `pcap` at `pps`, waits until `done` holds for
/// the lines so far (at most `limit`), then `settle` more, stops it with
/// SIGTERM and returns every line (the final flush included).
pub fn run_live(
    tag: &str,
    rules: &Path,
    pcap: &Path,
    pps: u32,
    limit: Duration,
    settle: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Live {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let bed = Testbed::new(tag);
    let mut sensor = bed
        .sensor_run(rules)
        .arg("--xdp-mode")
        .arg("native")
        .json(&alerts)
        .start(None, &stderr);
    let start = Instant::now();
    bed.inject(pcap, pps);
    let inject_time = start.elapsed();
    wait_for(limit, || done(&read_lines(&alerts)));
    std::thread::sleep(settle);
    let status = sensor
        .stop(Duration::from_secs(15))
        .expect("sensor exits on SIGTERM");
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "sensor exit {status:?}:\n{log}");
    Live {
        lines: read_lines(&alerts),
        log,
        inject_time,
    }
}
