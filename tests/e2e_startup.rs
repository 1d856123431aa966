//! Start-up failures say what is wrong in one line and exit 1: missing
//! capabilities (named), a missing interface, an interface another program
//! already holds (and who holds it).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::fixtures::SYN_FIN_RULE;
use support::netns::Testbed;

const SENSOR: &str = env!("CARGO_BIN_EXE_sensor");

/// A rule file anyone may read (the unprivileged run reads it first).
fn readable_rules(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("rules.yaml");
    std::fs::write(&path, SYN_FIN_RULE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.display().to_string()
}

/// The one line the sensor printed on failure, after checking the exit code.
fn failure_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit 1 expected: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sensor: "))
        .collect();
    assert_eq!(lines.len(), 1, "one `sensor:` line: {stderr}");
    lines[0].to_owned()
}

#[test]
fn missing_capabilities_are_named() {
    if !sensor::testing::bpf_available("missing_capabilities_are_named") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = readable_rules(dir.path());
    // A copy `nobody` can run whatever the permissions of the build folder.
    let sensor = dir.path().join("sensor");
    std::fs::copy(SENSOR, &sensor).unwrap();
    // As `nobody`, with every capability dropped.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(&sensor)
        .args(["run", "--iface", "lo", "--rules", &rules])
        .output()
        .expect("setpriv (util-linux)");
    let line = failure_line(&output);
    assert!(
        line.contains("missing capabilities: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
        "{line}"
    );
}

#[test]
fn a_missing_interface_is_named() {
    if !sensor::testing::bpf_available("a_missing_interface_is_named") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = readable_rules(dir.path());
    let output = Command::new(SENSOR)
        .args(["run", "--iface", "nosuch9", "--rules", &rules])
        .output()
        .unwrap();
    let line = failure_line(&output);
    assert_eq!(line, "sensor: interface nosuch9 does not exist");
}

#[test]
fn a_second_sensor_says_who_holds_the_interface() {
    if !sensor::testing::bpf_available("a_second_sensor_says_who_holds_the_interface") {
        return;
    }
    let bed = Testbed::new("dup");
    let dir = tempfile::tempdir().unwrap();
    let rules = readable_rules(dir.path());
    let first_log = dir.path().join("first.log");
    let out = dir.path().join("first.json");
    let mut first = bed
        .sensor_run(Path::new(&rules))
        .json(&out)
        .start(None, &first_log);
    let output = bed
        .sensor_run(Path::new(&rules))
        .json(&dir.path().join("second.json"))
        .output();
    let line = failure_line(&output);
    let pid = first.0.id();
    assert!(
        line.contains(&format!(
            "an XDP program is already attached to {}",
            bed.sensor_if
        )),
        "{line}"
    );
    assert!(line.contains(&format!("held by sensor[{pid}]")), "{line}");
    let status = first.stop(Duration::from_secs(15)).expect("first exits");
    assert!(status.success(), "the first sensor is unharmed");
}

#[test]
fn one_missing_interface_of_two_is_named_and_nothing_stays_attached() {
    if !sensor::testing::bpf_available(
        "one_missing_interface_of_two_is_named_and_nothing_stays_attached",
    ) {
        return;
    }
    let bed = Testbed::new("two");
    let dir = tempfile::tempdir().unwrap();
    let rules = readable_rules(dir.path());
    // The existing interface first: it is attached, then let go.
    let output = bed
        .sensor_run(Path::new(&rules))
        .args(["--iface", "nosuch8"])
        .json(&dir.path().join("out.json"))
        .output();
    let line = failure_line(&output);
    assert_eq!(line, "sensor: interface nosuch8 does not exist");
    assert_eq!(bed.xdp_prog_id(), None, "the first interface was let go");
}

#[test]
fn an_interface_given_twice_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let rules = readable_rules(dir.path());
    let output = Command::new(SENSOR)
        .args(["run", "--iface", "lo", "--iface", "lo", "--rules", &rules])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--iface lo is given twice"), "{stderr}");
    let output = Command::new(SENSOR)
        .args(["run", "--iface", "a/b", "--rules", &rules])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a valid interface name"), "{stderr}");
}
