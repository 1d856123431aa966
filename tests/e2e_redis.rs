//! The Redis sink against a real redis-server (on the loopback of the
//! sensor's namespace): list, channel and stream modes carry exactly the
//! JSON sink's lines; a Redis restart mid-stream loses nothing within the
//! queue bound and is counted as a reconnect. Over TLS (`rediss://` with
//! `--redis-ca`, redis-server's own TLS port, certificates the test makes)
//! the lines arrive, and a server outside the CA is refused and counted.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sensor::testing::frames::{self, flags};
use support::certs::TestPki;
use support::fixtures::SYN_FIN_RULE;
use support::netns::{Started, Testbed, metric, scrape, wait_for};
use support::pcap::write_pcap;

const PORT: &str = "6391";
const TLS_PORT: &str = "6392";
const METRICS: &str = "127.0.0.1:9468";

fn start_redis(bed: &Testbed, dir: &Path) -> Started {
    let log = std::fs::File::create(dir.join("redis.log")).unwrap();
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.sensor_ns,
            "redis-server",
            "--port",
            PORT,
        ])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("redis-server (scripts/bootstrap.sh installs it)");
    let started = Started(child);
    let up = wait_for(Duration::from_secs(10), || {
        redis_cli(bed, &["PING"]).trim() == "PONG"
    });
    assert!(up, "redis-server did not start");
    started
}

/// `redis-cli -p PORT --raw ARGS` in the sensor's namespace.
fn redis_cli_command(bed: &Testbed, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &bed.sensor_ns,
            "redis-cli",
            "-p",
            PORT,
            "--raw",
        ])
        .args(args);
    command
}

fn redis_cli(bed: &Testbed, args: &[&str]) -> String {
    let out = redis_cli_command(bed, args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The alert lines in redis-cli's raw output (keys, ids, field names and
/// message kinds are the other lines).
fn json_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

fn attacks(bed: &Testbed, dir: &Path, name: &str, sources: std::ops::Range<u8>) {
    let frames: Vec<Vec<u8>> = sources
        .map(|last| {
            frames::ipv4_tcp(
                [198, 51, 100, last],
                [192, 0, 2, 10],
                40000,
                80,
                flags::SYN | flags::FIN,
            )
        })
        .collect();
    let path = dir.join(format!("{name}.pcap"));
    write_pcap(&path, &frames);
    bed.inject(&path, 100);
}

fn start_sensor(bed: &Testbed, dir: &Path, mode: &str, json: &Path) -> Started {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    bed.sensor_run(&rules)
        .json(json)
        .arg("--redis")
        .arg(format!("redis://127.0.0.1:{PORT}"))
        .arg("--redis-mode")
        .arg(mode)
        .arg("--redis-key")
        .arg(format!("alerts-{mode}"))
        .metrics(METRICS)
        .start(None, &dir.join(format!("sensor-{mode}.log")))
}

fn file_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        support::eve::check_alert_text(line);
    }
    text.lines().map(str::to_owned).collect()
}

#[test]
fn every_mode_carries_the_json_sinks_lines() {
    if !sensor::testing::bpf_available("every_mode_carries_the_json_sinks_lines") {
        return;
    }
    let bed = Testbed::new("red");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _redis = start_redis(&bed, dir);
    for mode in ["list", "channel", "stream"] {
        let key = format!("alerts-{mode}");
        // A channel keeps nothing: subscribe before anything is published.
        let subscriber = (mode == "channel").then(|| {
            let out = std::fs::File::create(dir.join("subscribed.txt")).unwrap();
            let child = redis_cli_command(&bed, &["SUBSCRIBE", &key])
                .stdout(out)
                .spawn()
                .unwrap();
            let ready = wait_for(Duration::from_secs(5), || {
                redis_cli(&bed, &["PUBSUB", "NUMSUB", &key]).lines().nth(1) == Some("1")
            });
            assert!(ready, "subscriber not ready");
            Started(child)
        });
        let json = dir.join(format!("alerts-{mode}.json"));
        let mut sensor = start_sensor(&bed, dir, mode, &json);
        attacks(&bed, dir, mode, 1..4);
        let read = || match mode {
            "list" => json_lines(&redis_cli(&bed, &["LRANGE", &key, "0", "-1"])),
            "stream" => json_lines(&redis_cli(&bed, &["XRANGE", &key, "-", "+"])),
            _ => json_lines(&std::fs::read_to_string(dir.join("subscribed.txt")).unwrap()),
        };
        let arrived = wait_for(Duration::from_secs(10), || {
            file_lines(&json).len() == 3 && read().len() == 3
        });
        assert!(
            arrived,
            "{mode}: json {:?}, redis {:?}",
            file_lines(&json),
            read()
        );
        assert_eq!(
            read(),
            file_lines(&json),
            "{mode}: Redis has the JSON sink's lines"
        );
        let status = sensor.stop(Duration::from_secs(15)).expect("exits");
        assert!(status.success(), "{mode}");
        drop(subscriber);
    }
    // The stream is capped with MAXLEN ~ and holds one `alert` field.
    let raw = redis_cli(&bed, &["XRANGE", "alerts-stream", "-", "+"]);
    assert_eq!(raw.lines().filter(|l| *l == "alert").count(), 3, "{raw}");
}

#[test]
fn a_redis_restart_loses_nothing_within_the_bound() {
    if !sensor::testing::bpf_available("a_redis_restart_loses_nothing_within_the_bound") {
        return;
    }
    let bed = Testbed::new("rer");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut redis = start_redis(&bed, dir);
    let json = dir.join("alerts.json");
    let mut sensor = start_sensor(&bed, dir, "list", &json);
    let list = || json_lines(&redis_cli(&bed, &["LRANGE", "alerts-list", "0", "-1"]));
    attacks(&bed, dir, "first", 1..3);
    assert!(
        wait_for(Duration::from_secs(10), || list().len() == 2),
        "{:?}",
        list()
    );

    // Redis goes away (its data with it: no persistence), alerts keep coming.
    assert!(
        redis.stop(Duration::from_secs(10)).is_some(),
        "redis stopped"
    );
    attacks(&bed, dir, "while-down", 3..6);
    assert!(wait_for(Duration::from_secs(10), || file_lines(&json)
        .len()
        == 5));
    let _redis = start_redis(&bed, dir);
    assert!(
        wait_for(Duration::from_secs(15), || list().len() == 3),
        "the 3 alerts sent while Redis was down arrive after it returns: {:?}",
        list()
    );
    assert_eq!(list(), file_lines(&json)[2..].to_vec());
    let text = scrape(&bed, METRICS);
    let reconnected = wait_for(Duration::from_secs(5), || {
        metric(&scrape(&bed, METRICS), "sensor_redis_reconnects_total").is_some_and(|n| n >= 1)
    });
    assert!(reconnected, "{text}");
    let text = scrape(&bed, METRICS);
    assert_eq!(
        metric(&text, "sensor_redis_dropped_total{reason=\"queue_full\"}"),
        Some(0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sensor_alert_lines_total{sink=\"redis\"}"),
        Some(5),
        "{text}"
    );
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success());
}

/// redis-server with only its TLS port open (no client certificates asked).
fn start_redis_tls(bed: &Testbed, dir: &Path, pki: &TestPki) -> Started {
    let log = std::fs::File::create(dir.join("redis-tls.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &bed.sensor_ns, "redis-server"])
        .args([
            "--port",
            "0",
            "--tls-port",
            TLS_PORT,
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&pki.server_cert)
        .arg("--tls-key-file")
        .arg(&pki.server_key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("redis-server (scripts/bootstrap.sh installs it)");
    let started = Started(child);
    let up = wait_for(Duration::from_secs(10), || {
        redis_cli_tls(bed, pki, &["PING"]).trim() == "PONG"
    });
    assert!(up, "redis-server did not start with TLS");
    started
}

fn redis_cli_tls(bed: &Testbed, pki: &TestPki, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.sensor_ns,
            "redis-cli",
            "--tls",
            "--cacert",
        ])
        .arg(&pki.ca)
        .args(["-p", TLS_PORT, "--raw"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rediss_delivers_with_the_given_ca_and_refuses_another() {
    if !sensor::testing::bpf_available("rediss_delivers_with_the_given_ca_and_refuses_another") {
        return;
    }
    let bed = Testbed::new("rtl");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = TestPki::create(dir);
    let _redis = start_redis_tls(&bed, dir, &pki);
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let start = |ca: &Path, name: &str| {
        let json = dir.join(format!("{name}.json"));
        let sensor = bed
            .sensor_run(&rules)
            .json(&json)
            .arg("--redis")
            .arg(format!("rediss://127.0.0.1:{TLS_PORT}"))
            .arg("--redis-ca")
            .arg(ca)
            .args(["--redis-key", "alerts-tls"])
            .metrics(METRICS)
            .start(None, &dir.join(format!("{name}.log")));
        (sensor, json)
    };
    let list = || {
        json_lines(&redis_cli_tls(
            &bed,
            &pki,
            &["LRANGE", "alerts-tls", "0", "-1"],
        ))
    };

    let (mut sensor, json) = start(&pki.ca, "trusting");
    attacks(&bed, dir, "tls", 1..4);
    let arrived = wait_for(Duration::from_secs(10), || {
        file_lines(&json).len() == 3 && list().len() == 3
    });
    assert!(arrived, "json {:?}, redis {:?}", file_lines(&json), list());
    assert_eq!(list(), file_lines(&json), "Redis has the JSON sink's lines");
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success());

    let (mut sensor, json) = start(&pki.other_ca, "distrusting");
    attacks(&bed, dir, "refused", 4..5);
    let mut text = String::new();
    let refused = wait_for(Duration::from_secs(15), || {
        text = scrape(&bed, METRICS);
        metric(&text, "sensor_sink_errors_total{sink=\"redis\"}").is_some_and(|n| n >= 2)
    });
    assert!(refused, "{text}");
    assert_eq!(file_lines(&json).len(), 1);
    assert_eq!(
        metric(&text, "sensor_alert_lines_total{sink=\"redis\"}"),
        Some(0),
        "{text}"
    );
    assert_eq!(metric(&text, "sensor_redis_queue_depth"), Some(1), "{text}");
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success());
    assert_eq!(
        list().len(),
        3,
        "nothing reached Redis through a distrusted server"
    );
}

/// `--redis-ca` is checked before anything starts (exit 2).
#[test]
fn bad_redis_ca_usage_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pki = TestPki::create(dir);
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let missing = dir.join("missing.pem");
    let ca = pki.ca.to_str().unwrap();
    for (redis, redis_ca, expected) in [
        (
            "redis://127.0.0.1:6379",
            ca,
            "--redis-ca is only for rediss://",
        ),
        (
            "rediss://127.0.0.1:6379",
            missing.to_str().unwrap(),
            "cannot read --redis-ca",
        ),
        (
            "rediss://127.0.0.1:6379",
            rules.to_str().unwrap(),
            "no PEM `CERTIFICATE` block",
        ),
    ] {
        let out = support::netns::sensor_run_unattached(&rules)
            .args(["--redis", redis, "--redis-ca", redis_ca])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{redis} {redis_ca}: {stderr}");
        assert!(stderr.contains(expected), "{expected} in: {stderr}");
    }
    let config = dir.join("sensor.yaml");
    std::fs::write(
        &config,
        "redis: rediss://127.0.0.1:6379\nredis_ca: missing.pem\n",
    )
    .unwrap();
    let out = support::netns::sensor_run_unattached(&rules)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!("{}:2:11: cannot read `redis_ca`", config.display());
    assert!(stderr.contains(&expected), "{expected} in: {stderr}");
}
