//! `sensor inspect` end to end: two network namespaces joined by a veth
//! pair, `sensor inspect` attached on the sensor side, known frames sent
//! from the other side with tcpreplay. Matching frames must produce lines
//! with the right fields and non-matching ones none; the kernel's rate
//! limit must hold under a bounded flood with an exact footer; the summary
//! view must count the right talkers and protocols. Bad filters are refused
//! (exit 2, with the column) before anything is loaded.
//!
//! Alongside `sensor run`: inspect sessions run in the program `sensor run`
//! attached, through its control socket, while alerts keep flowing; one
//! session at a time; each session's counters start from zero; stopping
//! `sensor run` ends the session it hosts.

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use sensor::testing::frames::{self, Ipv4, flags};
use serde_json::{Value, json};
use support::live::read_lines;
use support::netns::{Started, Testbed, wait_for};
use support::pcap::write_pcap;

const SENSOR: &str = env!("CARGO_BIN_EXE_sensor");

const ATTACKER: [u8; 4] = [198, 51, 100, 7];
const CLIENT: [u8; 4] = [203, 0, 113, 5];
const SERVER: [u8; 4] = [192, 0, 2, 10];
const ELSEWHERE: [u8; 4] = [203, 0, 113, 99];

/// One `sensor inspect` in the sensor namespace, stdout and stderr in files.
struct Inspect {
    process: Started,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Inspect {
    fn start(bed: &Testbed, dir: &Path, name: &str, args: &[&str]) -> Inspect {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let process = bed
            .sensor_inspect()
            .args(args)
            .start(Some(&stdout), &stderr);
        Inspect {
            process,
            stdout,
            stderr,
        }
    }

    fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout_text()
            .lines()
            .map(|l| {
                let line =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                support::eve::check_alert_line(&line);
                line
            })
            .collect()
    }

    /// SIGTERM, and the exit status of a clean exit.
    fn stop(&mut self) -> ExitStatus {
        let status = self
            .process
            .stop(Duration::from_secs(15))
            .expect("sensor inspect exits on SIGTERM");
        assert!(status.success(), "exit {status:?}:\n{}", self.stderr_text());
        status
    }

    /// Waits for the process to end by itself (`--count`).
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.process.0.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "sensor inspect still running after {limit:?}:\n{}",
            self.stderr_text()
        );
    }

    fn footer(&self) -> Footer {
        let text = self.stderr_text();
        let line = text
            .lines()
            .rfind(|l| l.starts_with("sensor inspect: ") && l.contains(" matched, "))
            .unwrap_or_else(|| panic!("no footer in:\n{text}"));
        Footer::parse(line)
    }
}

/// The footer's numbers: "sensor inspect: M matched, S shown, K skipped
/// (R over --max-rate, L lost to a full perf ring, U not printed)".
#[derive(Debug, PartialEq, Eq)]
struct Footer {
    matched: u64,
    shown: u64,
    skipped: u64,
    over_rate: Option<u64>,
    ring_full: Option<u64>,
    unprinted: Option<u64>,
}

impl Footer {
    fn parse(line: &str) -> Footer {
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(numbers.len() == 3 || numbers.len() == 6, "footer {line:?}");
        Footer {
            matched: numbers[0],
            shown: numbers[1],
            skipped: numbers[2],
            over_rate: numbers.get(3).copied(),
            ring_full: numbers.get(4).copied(),
            unprinted: numbers.get(5).copied(),
        }
    }
}

fn udp_frame(tags: &[(u16, u16)], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    frames::ethernet(
        tags,
        frames::ETH_IPV4,
        &Ipv4::new(src, dst, 17).build(&frames::udp(sport, dport, b"inspect")),
    )
}

/// Frames the JSON test's filter matches (with what their lines must say)
/// and frames it must not show.
struct Traffic {
    frames: Vec<Vec<u8>>,
    expected: Vec<Value>,
}

const FILTER: &str = "(tcp and dst port 80) or udp port 53";

fn traffic() -> Traffic {
    let syn_fin = frames::ipv4_tcp(ATTACKER, SERVER, 41000, 80, flags::SYN | flags::FIN);
    let tagged_syn = frames::ethernet(
        &[(frames::TPID_8021Q, 100)],
        frames::ETH_IPV4,
        &Ipv4::new(CLIENT, SERVER, 6).build(&frames::tcp(50001, 80, flags::SYN, 1, &[])),
    );
    let dns6 = frames::ethernet(
        &[],
        frames::ETH_IPV6,
        &frames::ipv6(
            frames::doc_v6(2),
            frames::doc_v6(1),
            255,
            17,
            &frames::udp(5353, 53, b"query"),
        ),
    );
    let fragments: Vec<Vec<u8>> = frames::ipv4_fragments(
        &Ipv4::new(CLIENT, SERVER, 17).ttl(30),
        &frames::udp(53001, 53, &[7u8; 40]),
        24,
    )
    .iter()
    .map(|p| frames::ethernet(&[], frames::ETH_IPV4, p))
    .collect();

    let silent = [
        frames::ipv4_tcp(CLIENT, SERVER, 50000, 443, flags::SYN),
        frames::ipv4_tcp(SERVER, CLIENT, 80, 50000, flags::SYN | flags::ACK),
        udp_frame(&[], CLIENT, SERVER, 53000, 123),
        frames::ethernet(
            &[],
            frames::ETH_IPV4,
            &Ipv4::new(CLIENT, SERVER, 1).build(&frames::icmp_echo(8, 1, 1)),
        ),
        // The second fragment has no ports: `port 53` cannot match it.
        fragments[1].clone(),
        frames::arp(1, CLIENT, SERVER),
    ];
    let mut all = vec![silent[0].clone(), syn_fin.clone(), silent[1].clone()];
    all.push(tagged_syn.clone());
    all.push(silent[2].clone());
    all.push(dns6.clone());
    all.push(silent[3].clone());
    all.push(fragments[0].clone());
    all.extend(silent[4..].iter().cloned());

    let expected = vec![
        json!({"src_ip":"198.51.100.7","src_port":41000,"dest_ip":"192.0.2.10","dest_port":80,
               "proto":"TCP","packet":{"ip_version":4,"length":syn_fin.len(),"ttl":64,"ip_id":4660,
               "frag_offset":0,"more_fragments":false,"tcp_flags":"FS","dont_fragment":false,
               "tcp_seq":1000,"tcp_window":64240}}),
        json!({"src_ip":"203.0.113.5","src_port":50001,"dest_ip":"192.0.2.10","dest_port":80,
               "proto":"TCP","packet":{"ip_version":4,"length":tagged_syn.len(),"ttl":64,"ip_id":4660,
               "frag_offset":0,"more_fragments":false,"tcp_flags":"S","vlan":[100],
               "dont_fragment":false,"tcp_seq":1,"tcp_window":64240}}),
        json!({"src_ip":"2001:db8::2","src_port":5353,"dest_ip":"2001:db8::1","dest_port":53,
               "proto":"UDP","packet":{"ip_version":6,"length":dns6.len(),"ttl":255}}),
        json!({"src_ip":"203.0.113.5","src_port":53001,"dest_ip":"192.0.2.10","dest_port":53,
               "proto":"UDP","packet":{"ip_version":4,"length":fragments[0].len(),"ttl":30,
               "ip_id":4660,"frag_offset":0,"more_fragments":true,"dont_fragment":false}}),
    ];
    Traffic {
        frames: all,
        expected,
    }
}

/// A line without what changes from run to run; checks those on the way.
fn essence(line: &Value, iface: &str) -> Value {
    let mut line = line.clone();
    let obj = line.as_object_mut().unwrap();
    assert_eq!(obj.remove("event_type"), Some(json!("packet")));
    assert_eq!(obj.remove("iface"), Some(json!(iface)));
    let timestamp = obj.remove("timestamp").expect("timestamp");
    let timestamp = time::OffsetDateTime::parse(
        timestamp.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 timestamp");
    let age = time::OffsetDateTime::now_utc() - timestamp;
    assert!(
        age.abs() < time::Duration::seconds(120),
        "timestamp {timestamp} is not now"
    );
    line
}

/// In source port order (every expected line has its own).
fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v["src_port"].as_u64());
    values
}

#[test]
fn json_lines_for_matching_frames_only_with_their_fields() {
    if !sensor::testing::bpf_available("json_lines_for_matching_frames_only_with_their_fields") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let traffic = traffic();
    write_pcap(&pcap, &traffic.frames);

    let bed = Testbed::new("ijs");
    let mut inspect = Inspect::start(&bed, dir.path(), "json", &["--filter", FILTER, "--json"]);
    bed.inject(&pcap, 200);
    let complete = wait_for(Duration::from_secs(10), || {
        inspect.stdout_text().lines().count() >= traffic.expected.len()
    });
    // A moment more: a wrong extra line would arrive now.
    std::thread::sleep(Duration::from_millis(300));
    inspect.stop();
    assert!(complete, "lines missing:\n{}", inspect.stderr_text());

    let lines = inspect.json_lines();
    let got: Vec<Value> = lines.iter().map(|l| essence(l, &bed.sensor_if)).collect();
    assert_eq!(
        sorted(got),
        sorted(traffic.expected.clone()),
        "one line per matching frame, none for the others"
    );
    let footer = inspect.footer();
    assert_eq!(
        (footer.matched, footer.shown, footer.skipped),
        (4, 4, 0),
        "{footer:?}"
    );
}

#[test]
fn text_lines_and_count_stop_the_session() {
    if !sensor::testing::bpf_available("text_lines_and_count_stop_the_session") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    write_pcap(&pcap, &traffic().frames);

    let bed = Testbed::new("itx");
    let mut inspect = Inspect::start(
        &bed,
        dir.path(),
        "text",
        &[
            "--filter",
            "vlan 100 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
            "--count",
            "1",
        ],
    );
    bed.inject(&pcap, 200);
    let status = inspect.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}:\n{}", inspect.stderr_text());
    let out = inspect.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let (time, rest) = lines[0].split_once(' ').unwrap();
    let time_ok = time.len() == 15
        && time.char_indices().all(|(i, c)| match i {
            2 | 5 => c == ':',
            8 => c == '.',
            _ => c.is_ascii_digit(),
        });
    assert!(time_ok, "HH:MM:SS.uuuuuu: {time}");
    assert_eq!(
        rest,
        "vlan 100 IPv4 203.0.113.5.50001 > 192.0.2.10.80: TCP [S] seq 1 win 64240 ttl 64 \
         id 4660 off 0 len 58"
    );
    let footer = inspect.footer();
    assert_eq!((footer.matched, footer.shown, footer.skipped), (1, 1, 0));
}

#[test]
fn rate_limit_holds_under_a_bounded_flood_and_the_footer_adds_up() {
    if !sensor::testing::bpf_available(
        "rate_limit_holds_under_a_bounded_flood_and_the_footer_adds_up",
    ) {
        return;
    }
    const FLOOD: usize = 5_000;
    const RATE: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("flood.pcap");
    let mut flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| udp_frame(&[], CLIENT, SERVER, 10_000 + (i % 50_000) as u16, 9999))
        .collect();
    // Some traffic the filter leaves out, spread through the flood.
    for i in 0..50 {
        flood.insert(i * 100, udp_frame(&[], CLIENT, SERVER, 40_000, 9998));
    }
    write_pcap(&pcap, &flood);

    let bed = Testbed::new("ifl");
    let mut inspect = Inspect::start(
        &bed,
        dir.path(),
        "flood",
        &[
            "--filter",
            "udp and dst port 9999",
            "--max-rate",
            &RATE.to_string(),
            "--json",
        ],
    );
    let start = Instant::now();
    bed.inject(&pcap, 2_500);
    let seconds = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    inspect.stop();

    let lines = inspect.json_lines();
    let footer = inspect.footer();
    let cpus = aya::util::online_cpus().expect("online CPUs").len() as u64;
    // Each CPU opens at most one budget window per started second.
    let bound = RATE * cpus * (seconds.ceil() as u64 + 1);
    eprintln!("flood: {footer:?}, {seconds:.2} s on {cpus} CPUs, bound {bound}");
    assert_eq!(footer.matched, FLOOD as u64, "{footer:?}");
    assert_eq!(footer.shown, lines.len() as u64, "{footer:?}");
    assert!(
        footer.shown >= RATE && footer.shown <= bound,
        "{} lines for {FLOOD} frames in {seconds:.2} s on {cpus} CPUs (bound {bound})",
        footer.shown
    );
    assert_eq!(footer.skipped, footer.matched - footer.shown, "{footer:?}");
    assert_eq!(footer.over_rate, Some(footer.skipped), "{footer:?}");
    assert_eq!((footer.ring_full, footer.unprinted), (Some(0), Some(0)));
    assert!(
        lines.iter().all(|l| l["dest_port"] == 9999),
        "only matching frames are shown"
    );
}

#[test]
fn summary_counts_talkers_protocols_flags_and_ttls_in_the_kernel() {
    if !sensor::testing::bpf_available(
        "summary_counts_talkers_protocols_flags_and_ttls_in_the_kernel",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcap");
    let tcp_syn = frames::ipv4_tcp(ATTACKER, SERVER, 41000, 80, flags::SYN);
    let mut mix = Vec::new();
    for i in 0..30 {
        mix.push(tcp_syn.clone());
        if i < 10 {
            mix.push(frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new(CLIENT, SERVER, 17)
                    .ttl(128)
                    .build(&frames::udp(5000, 53, b"q")),
            ));
        }
        if i < 5 {
            mix.push(frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new([192, 0, 2, 77], SERVER, 1)
                    .ttl(255)
                    .build(&frames::icmp_echo(8, 1, i)),
            ));
        }
        if i < 7 {
            // Not to 192.0.2.0/24: outside the filter.
            mix.push(frames::ipv4_tcp(CLIENT, ELSEWHERE, 1, 2, flags::ACK));
        }
    }
    write_pcap(&pcap, &mix);

    let bed = Testbed::new("isu");
    let mut inspect = Inspect::start(
        &bed,
        dir.path(),
        "summary",
        &[
            "--filter",
            "dst net 192.0.2.0/24",
            "--summary",
            "1",
            "--json",
        ],
    );
    bed.inject(&pcap, 200);
    std::thread::sleep(Duration::from_millis(1_600));
    inspect.stop();

    let reports = inspect.json_lines();
    let (total, intervals) = reports.split_last().expect("reports");
    assert!(!intervals.is_empty(), "periodic reports: {reports:#?}");
    for report in intervals {
        assert_eq!(report["event_type"], "inspect_summary");
        assert_eq!(report["scope"], "interval");
        assert_eq!(report["seconds"], 1);
    }
    let in_intervals: u64 = intervals
        .iter()
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert!(in_intervals <= 45, "{reports:#?}");

    assert_eq!(total["scope"], "total");
    assert_eq!(total["iface"], bed.sensor_if.as_str());
    assert_eq!(total["packets"], 45);
    assert_eq!(
        total["top_talkers"],
        json!([
            {"src_ip":"198.51.100.7","packets":30,"bytes":30 * tcp_syn.len()},
            {"src_ip":"203.0.113.5","packets":10,"bytes":10 * mix[1].len()},
            {"src_ip":"192.0.2.77","packets":5,"bytes":5 * mix[2].len()},
        ])
    );
    assert_eq!(
        total["protocols"],
        json!([
            {"proto":"TCP","packets":30},
            {"proto":"UDP","packets":10},
            {"proto":"ICMP","packets":5},
        ])
    );
    assert_eq!(total["tcp_flags"], json!([{"tcp_flags":"S","packets":30}]));
    assert_eq!(
        total["ttl"],
        json!([
            {"ttl":"0","packets":0},
            {"ttl":"1-32","packets":0},
            {"ttl":"33-64","packets":30},
            {"ttl":"65-128","packets":10},
            {"ttl":"129-255","packets":5},
        ])
    );
    let footer = inspect.footer();
    assert_eq!((footer.matched, footer.shown, footer.skipped), (45, 0, 45));
}

#[test]
fn an_interface_with_an_xdp_program_is_refused_clearly() {
    if !sensor::testing::bpf_available("an_interface_with_an_xdp_program_is_refused_clearly") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bed = Testbed::new("ibz");
    let mut first = Inspect::start(&bed, dir.path(), "first", &[]);
    let output = bed.sensor_inspect().output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already has an XDP program")
            && stderr.contains(&format!(
                "no `sensor run` answers on /run/sensor/{}.sock",
                bed.sensor_if
            ))
            && stderr.contains("xdp off"),
        "{stderr}"
    );
    first.stop();
}

#[test]
fn bad_filters_are_refused_with_the_column_before_anything_is_loaded() {
    // No root needed: the filter is checked before the kernel is touched.
    let run = |filter: &str| {
        let output = Command::new(SENSOR)
            .args(["inspect", "--iface", "no-such-if0", "--filter", filter])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("tcp and port 99999");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid filter at column 14: a port is 0-65535"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n  tcp and port 99999\n               ^"),
        "{stderr}"
    );
    let (code, stderr) = run("tcp udp");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("column 5"), "{stderr}");
    let many = (1..=12)
        .map(|i| format!("host 10.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let (code, stderr) = run(&many);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("too complex")
            && stderr.contains("at most 32")
            && stderr.contains("Supported:"),
        "{stderr}"
    );
}

// ---- alongside `sensor run` ---------------------------------------------------

const RUN_RULES: &str = "rules:\n  - id: 100001\n    name: TCP SYN and FIN set\n    severity: high\n    match: { tcp_flags: { set: [SYN, FIN] } }\n";

/// `sensor run` on the sensor side, alert lines to a file.
struct Run {
    process: Started,
    alerts: PathBuf,
    log: PathBuf,
}

impl Run {
    fn start(bed: &Testbed, dir: &Path) -> Run {
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, RUN_RULES).unwrap();
        let alerts = dir.join("alerts.json");
        let log = dir.join("run.stderr");
        let process = bed.sensor_run(&rules).json(&alerts).start(None, &log);
        Run {
            process,
            alerts,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (source address, source port) of every alert line so far.
    fn alerts(&self) -> Vec<(String, u64)> {
        read_lines(&self.alerts)
            .iter()
            .map(|a| {
                assert_eq!(a["alert"]["signature_id"], 100001, "{a}");
                (
                    a["src_ip"].as_str().unwrap().to_owned(),
                    a["src_port"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn wait_alert(&self, src: &str, port: u64) {
        let seen = wait_for(Duration::from_secs(10), || {
            self.alerts().contains(&(src.to_owned(), port))
        });
        assert!(
            seen,
            "no alert for {src}.{port}: {:?}\n{}",
            self.alerts(),
            self.log_text()
        );
    }
}

fn socket_path(bed: &Testbed) -> PathBuf {
    PathBuf::from(format!("/run/sensor/{}.sock", bed.sensor_if))
}

/// `sensor inspect` run to its end (for refusals).
fn inspect_output(bed: &Testbed, args: &[&str]) -> (Option<i32>, String) {
    let output = bed.sensor_inspect().args(args).output();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn send(bed: &Testbed, dir: &Path, name: &str, frames: &[Vec<u8>]) {
    let pcap = dir.join(name);
    write_pcap(&pcap, frames);
    bed.inject(&pcap, 200);
}

#[test]
fn inspect_runs_alongside_sensor_run_in_its_program() {
    if !sensor::testing::bpf_available("inspect_runs_alongside_sensor_run_in_its_program") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bed = Testbed::new("ial");
    let mut run = Run::start(&bed, dir.path());
    let program = bed.xdp_prog_id().expect("sensor run attached");

    // The control socket: root's only.
    let socket = socket_path(&bed);
    let meta = std::fs::metadata(&socket).expect("control socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir_mode = std::fs::metadata("/run/sensor")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    // Session 1: packet lines, in sensor run's program, while it alerts.
    let traffic = traffic();
    let mut first = Inspect::start(
        &bed,
        dir.path(),
        "first",
        &["--filter", FILTER, "--json", "--count", "4"],
    );
    assert!(
        first
            .stderr_text()
            .contains("XDP, shared with `sensor run`, pid "),
        "{}",
        first.stderr_text()
    );
    // One session at a time.
    let (code, stderr) = inspect_output(&bed, &["--filter", "udp"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("an inspect session is already running on")
            && stderr.contains("one session at a time"),
        "{stderr}"
    );
    send(&bed, dir.path(), "traffic.pcap", &traffic.frames);
    let status = first.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}:\n{}", first.stderr_text());
    let got: Vec<Value> = first
        .json_lines()
        .iter()
        .map(|l| essence(l, &bed.sensor_if))
        .collect();
    assert_eq!(sorted(got), sorted(traffic.expected.clone()));
    let footer = first.footer();
    assert_eq!((footer.matched, footer.shown, footer.skipped), (4, 4, 0));
    // ... and the same frames raised the alert: both roles at once.
    run.wait_alert("198.51.100.7", 41000);
    assert_eq!(bed.xdp_prog_id(), Some(program.clone()), "program replaced");

    // After the session, alerts still flow.
    let syn_fin = |src, sport| frames::ipv4_tcp(src, SERVER, sport, 80, flags::SYN | flags::FIN);
    send(&bed, dir.path(), "after.pcap", &[syn_fin(CLIENT, 42000)]);
    run.wait_alert("203.0.113.5", 42000);

    // Session 2: a summary; its counters start from zero.
    let mut second = Inspect::start(
        &bed,
        dir.path(),
        "second",
        &[
            "--filter",
            "dst net 192.0.2.0/24",
            "--summary",
            "1",
            "--json",
        ],
    );
    let mut mix: Vec<Vec<u8>> = (0..6)
        .map(|i| udp_frame(&[], CLIENT, SERVER, 6000 + i, 53))
        .collect();
    mix.push(syn_fin(ELSEWHERE, 43000));
    send(&bed, dir.path(), "mix.pcap", &mix);
    run.wait_alert("203.0.113.99", 43000);
    std::thread::sleep(Duration::from_millis(1_500));
    second.stop();
    let reports = second.json_lines();
    let total = reports.last().expect("reports");
    assert_eq!(total["scope"], "total", "{reports:#?}");
    assert_eq!(total["packets"], 7, "{reports:#?}");
    assert_eq!(
        total["protocols"],
        json!([{"proto":"UDP","packets":6}, {"proto":"TCP","packets":1}])
    );
    assert!(
        reports[..reports.len() - 1]
            .iter()
            .all(|r| r["scope"] == "interval"),
        "{reports:#?}"
    );
    let footer = second.footer();
    assert_eq!((footer.matched, footer.shown, footer.skipped), (7, 0, 7));

    // Session 3: packet lines again, counted from zero; then sensor run
    // stops, which ends the session (exit 1, with the footer).
    let mut third = Inspect::start(&bed, dir.path(), "third", &["--filter", "udp"]);
    send(&bed, dir.path(), "udp.pcap", &mix[..3]);
    assert!(
        wait_for(Duration::from_secs(10), || third
            .stdout_text()
            .lines()
            .count()
            == 3),
        "{}",
        third.stdout_text()
    );
    let status = run
        .process
        .stop(Duration::from_secs(15))
        .expect("sensor run exits on SIGTERM");
    assert!(status.success(), "{status:?}:\n{}", run.log_text());
    let status = third.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(1), "{}", third.stderr_text());
    assert!(
        third
            .stderr_text()
            .contains("is stopping, which ended this session"),
        "{}",
        third.stderr_text()
    );
    let footer = third.footer();
    assert_eq!((footer.matched, footer.shown, footer.skipped), (3, 3, 0));
    for line in third.stdout_text().lines() {
        assert!(line.contains(" IPv4 203.0.113.5.600"), "{line}");
    }

    let log = run.log_text();
    assert_eq!(log.matches("inspect session started").count(), 3, "{log}");
    assert_eq!(log.matches("inspect session ended").count(), 3, "{log}");
    assert!(!socket.exists(), "the socket outlived sensor run");
    assert_eq!(bed.xdp_prog_id(), None, "still attached");
    assert_eq!(run.alerts().len(), 3, "{:?}", run.alerts());
}

#[test]
fn a_stale_socket_is_ignored_by_inspect_and_replaced_by_run() {
    if !sensor::testing::bpf_available("a_stale_socket_is_ignored_by_inspect_and_replaced_by_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bed = Testbed::new("ist");
    let socket = socket_path(&bed);
    std::fs::create_dir_all("/run/sensor").unwrap();
    // What a crashed run leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    // No sensor run: inspect attaches its own program.
    let mut own = Inspect::start(&bed, dir.path(), "own", &[]);
    assert!(
        !own.stderr_text().contains("shared with"),
        "{}",
        own.stderr_text()
    );
    own.stop();

    let mut run = Run::start(&bed, dir.path());
    assert!(
        run.log_text().contains("replaced a stale control socket"),
        "{}",
        run.log_text()
    );
    let mut joined = Inspect::start(&bed, dir.path(), "joined", &["--count", "1"]);
    assert!(
        joined.stderr_text().contains("shared with `sensor run`"),
        "{}",
        joined.stderr_text()
    );
    send(
        &bed,
        dir.path(),
        "one.pcap",
        &[frames::ipv4_tcp(
            ATTACKER,
            SERVER,
            41000,
            80,
            flags::SYN | flags::FIN,
        )],
    );
    let status = joined.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{}", joined.stderr_text());
    assert_eq!(joined.stdout_text().lines().count(), 1);
    run.wait_alert("198.51.100.7", 41000);
    let status = run.process.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", run.log_text());
    assert!(!socket.exists());
}
