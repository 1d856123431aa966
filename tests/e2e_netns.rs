//! End to end on real frames: two network namespaces joined by a veth pair,
//! `sensor run` attached in native XDP mode on the side without an address
//! (a span port), attack and benign frames sent from the other side with
//! tcpreplay. Alert lines are checked field by field against the contract,
//! benign frames must stay silent, and `sensor replay` of the same frames
//! must give the same alerts.

mod support;

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sensor::testing::frames::{self, Ipv4, flags};
use serde_json::Value;
use support::fixtures::FLAG_SCAN_RULES;
use support::live::{essence, read_lines};
use support::netns::{Testbed, wait_for};
use support::pcap::write_pcap;

const SENSOR: &str = env!("CARGO_BIN_EXE_sensor");

const ATTACKER: [u8; 4] = [198, 51, 100, 7];
const CLIENT: [u8; 4] = [203, 0, 113, 5];
const SERVER: [u8; 4] = [192, 0, 2, 10];

/// The attack frames, in order, with the rule each must raise.
fn attacks() -> Vec<(Vec<u8>, u32, &'static str)> {
    vec![
        (
            frames::ipv4_tcp(ATTACKER, SERVER, 41000, 80, flags::SYN | flags::FIN),
            100001,
            "FS",
        ),
        (
            frames::ipv4_tcp(ATTACKER, SERVER, 41001, 443, 0),
            100002,
            "",
        ),
        (
            frames::ipv4_tcp(
                ATTACKER,
                SERVER,
                41002,
                22,
                flags::FIN | flags::PSH | flags::URG,
            ),
            100003,
            "FPU",
        ),
    ]
}

/// Ordinary traffic that no rule may flag: a handshake and teardown, DNS,
/// ICMP echo, and a VLAN-tagged SYN.
fn benign() -> Vec<Vec<u8>> {
    let tcp = |src, dst, sport, dport, f| frames::ipv4_tcp(src, dst, sport, dport, f);
    vec![
        tcp(CLIENT, SERVER, 50000, 80, flags::SYN),
        tcp(SERVER, CLIENT, 80, 50000, flags::SYN | flags::ACK),
        tcp(CLIENT, SERVER, 50000, 80, flags::ACK),
        tcp(CLIENT, SERVER, 50000, 80, flags::PSH | flags::ACK),
        tcp(CLIENT, SERVER, 50000, 80, flags::FIN | flags::ACK),
        tcp(SERVER, CLIENT, 80, 50000, flags::FIN | flags::ACK),
        tcp(CLIENT, SERVER, 50000, 80, flags::ACK),
        frames::ethernet(
            &[],
            frames::ETH_IPV4,
            &Ipv4::new(CLIENT, SERVER, 17).build(&frames::udp(
                53000,
                53,
                b"\x12\x34\x01\x00\x00\x01",
            )),
        ),
        frames::ethernet(
            &[],
            frames::ETH_IPV4,
            &Ipv4::new(CLIENT, SERVER, 1).build(&frames::icmp_echo(8, 1, 1)),
        ),
        frames::ethernet(
            &[(frames::TPID_8021Q, 100)],
            frames::ETH_IPV4,
            &Ipv4::new(CLIENT, SERVER, 6).build(&frames::tcp(50001, 80, flags::SYN, 1, &[])),
        ),
    ]
}

#[test]
fn live_alerts_on_a_veth_span_port_match_the_contract_and_replay() {
    if !sensor::testing::bpf_available(
        "live_alerts_on_a_veth_span_port_match_the_contract_and_replay",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, FLAG_SCAN_RULES).unwrap();
    let alerts_path = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let pcap = dir.path().join("traffic.pcap");

    let attacks = attacks();
    let mut traffic: Vec<Vec<u8>> = benign();
    traffic.extend(attacks.iter().map(|(f, _, _)| f.clone()));
    traffic.extend(benign());
    write_pcap(&pcap, &traffic);

    let bed = Testbed::new("e2e");
    let mut sensor = bed
        .sensor_run(&rules)
        .arg("--xdp-mode")
        .arg("native")
        .json(&alerts_path)
        .start(None, &stderr);

    bed.inject(&pcap, 200);
    let complete = wait_for(Duration::from_secs(10), || {
        read_lines(&alerts_path).len() >= attacks.len()
    });
    // A moment more: a wrong extra line would arrive now.
    std::thread::sleep(Duration::from_millis(300));
    let status = sensor
        .stop(Duration::from_secs(15))
        .expect("sensor exits on SIGTERM");
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "sensor exit {status:?}:\n{log}");
    assert!(complete, "alerts missing:\n{log}");

    let live = read_lines(&alerts_path);
    assert_eq!(
        live.len(),
        attacks.len(),
        "one line per attack frame, none for benign ones:\n{live:#?}"
    );
    for ((frame, sid, letters), alert) in attacks.iter().zip(&live) {
        assert_eq!(alert["event_type"], "alert");
        assert_eq!(alert["in_iface"], bed.sensor_if.as_str());
        assert_eq!(alert["src_ip"], "198.51.100.7");
        assert_eq!(alert["dest_ip"], "192.0.2.10");
        assert_eq!(alert["proto"], "TCP");
        assert_eq!(alert["alert"]["signature_id"], *sid);
        assert_eq!(alert["alert"]["category"], "tcp_flags");
        assert_eq!(alert["alert"]["action"], "allowed");
        let severity = if *sid == 100001 { 2 } else { 3 };
        assert_eq!(alert["alert"]["severity"], severity);
        assert_eq!(alert["alert"]["gid"], 1);
        assert_eq!(alert["alert"]["rev"], 1);
        assert_eq!(alert["ip_v"], 4);
        assert_eq!(alert["sensor"]["length"], frame.len());
        assert_eq!(alert["sensor"]["ttl"], 64);
        assert_eq!(alert["sensor"]["ip_id"], 0x1234);
        assert_eq!(alert["sensor"]["frag_offset"], 0);
        assert_eq!(alert["sensor"]["more_fragments"], false);
        assert_eq!(alert["sensor"]["tcp_flags"], *letters);
        assert!(alert.get("vlan").is_none(), "untagged");
        assert_eq!(alert["sensor"]["count"], 1);
        // The frame itself, as it arrived, from the kernel.
        let packet = BASE64
            .decode(alert["packet"].as_str().expect("packet"))
            .expect("base64");
        assert_eq!(packet, *frame, "the frame as sent (shorter than the cap)");
        assert_eq!(alert["packet_info"]["linktype"], 1);
        let ts = alert["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with("+0000") && ts.len() == "2026-11-26T13:07:51.123456+0000".len(),
            "{ts}"
        );
    }
    let ports: Vec<(u64, u64)> = live
        .iter()
        .map(|a| {
            (
                a["src_port"].as_u64().unwrap(),
                a["dest_port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports, [(41000, 80), (41001, 443), (41002, 22)]);

    // community_id, against an independent computation (Python's hashlib
    // over the spec's byte layout) of each live alert's flow.
    for alert in &live {
        let script = format!(
            "import hashlib,base64,socket,struct\n\
             a=socket.inet_aton('{}'); b=socket.inet_aton('{}'); sp={}; dp={}\n\
             if (b, dp) < (a, sp): a, b, sp, dp = b, a, dp, sp\n\
             d=struct.pack('!H',0)+a+b+bytes([6,0])+struct.pack('!HH',sp,dp)\n\
             print('1:'+base64.b64encode(hashlib.sha1(d).digest()).decode())",
            alert["src_ip"].as_str().unwrap(),
            alert["dest_ip"].as_str().unwrap(),
            alert["src_port"],
            alert["dest_port"],
        );
        let out = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        let expected = String::from_utf8(out.stdout).unwrap();
        assert_eq!(alert["community_id"], expected.trim(), "{alert}");
    }

    // Replay of the very frames sent gives the same alerts.
    let output = Command::new(SENSOR)
        .args([
            "replay",
            "--pcap",
            pcap.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--json",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            support::eve::check_alert_text(l);
            essence(&serde_json::from_str(l).unwrap())
        })
        .collect();
    let live: Vec<Value> = live.iter().map(essence).collect();
    assert_eq!(replayed, live);

    // `--packet-bytes` caps `packet` (0: no `packet` at all).
    for (cap, shown) in [("16", Some(16)), ("0", None)] {
        let output = Command::new(SENSOR)
            .args(["replay", "--pcap", pcap.to_str().unwrap()])
            .args(["--rules", rules.to_str().unwrap(), "--packet-bytes", cap])
            .output()
            .unwrap();
        assert!(output.status.success());
        let lines = support::live::parse_lines(&String::from_utf8(output.stdout).unwrap());
        assert_eq!(lines.len(), attacks.len());
        for line in &lines {
            let packet = line.get("packet").and_then(Value::as_str);
            let len = packet.map(|p| BASE64.decode(p).unwrap().len());
            assert_eq!(len, shown, "--packet-bytes {cap}: {line}");
            assert_eq!(line.get("packet_info").is_some(), shown.is_some());
        }
    }
}

/// SIGHUP reloads the rules without detaching the program; an invalid set
/// is reported with its position and the old set stays in force; SIGTERM
/// flushes every line before exit.
#[test]
fn sighup_reloads_rules_in_place_and_keeps_the_old_set_when_invalid() {
    if !sensor::testing::bpf_available(
        "sighup_reloads_rules_in_place_and_keeps_the_old_set_when_invalid",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let alerts_path = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let syn_fin_only = "rules:\n  - id: 1\n    name: SYN FIN\n    severity: high\n    match: { tcp_flags: { set: [SYN, FIN] } }\n";
    let null_only = "rules:\n  - id: 2\n    name: NULL scan\n    severity: low\n    match: { tcp_flags: { clear: [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] } }\n";
    std::fs::write(&rules, syn_fin_only).unwrap();

    let bed = Testbed::new("rld");
    let mut sensor = bed
        .sensor_run(&rules)
        .json(&alerts_path)
        .start(None, &stderr);
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let prog_before = bed.xdp_prog_id().expect("XDP attached");

    let probes = dir.path().join("probes.pcap");
    let syn_fin = frames::ipv4_tcp(ATTACKER, SERVER, 1, 80, flags::SYN | flags::FIN);
    let null = frames::ipv4_tcp(CLIENT, SERVER, 2, 80, 0);
    let send_probes = |name: &str| {
        let path = dir.path().join(name);
        write_pcap(&path, &[syn_fin.clone(), null.clone()]);
        bed.inject(&path, 100);
    };
    let sids = || -> Vec<u64> {
        read_lines(&alerts_path)
            .iter()
            .map(|a| a["alert"]["signature_id"].as_u64().unwrap())
            .collect()
    };

    send_probes("probe1.pcap");
    assert!(
        wait_for(Duration::from_secs(10), || sids() == [1]),
        "before reload: {:?}",
        sids()
    );

    // A valid new set: only the NULL rule.
    std::fs::write(&rules, null_only).unwrap();
    unsafe { libc::kill(sensor.0.id() as i32, libc::SIGHUP) };
    assert!(
        wait_for(Duration::from_secs(10), || log().contains("rules reloaded")),
        "{}",
        log()
    );
    send_probes("probe2.pcap");
    assert!(
        wait_for(Duration::from_secs(10), || sids() == [1, 2]),
        "after reload: {:?}",
        sids()
    );

    // An invalid set: reported with its position; the NULL rule stays.
    std::fs::write(&rules, "rules:\n  - id: 3\n    name: bad\n    severity: high\n    match: { tcp_flags: { set: [SYNN] } }\n").unwrap();
    unsafe { libc::kill(sensor.0.id() as i32, libc::SIGHUP) };
    assert!(
        wait_for(Duration::from_secs(10), || log()
            .contains("rules reload rejected")),
        "{}",
        log()
    );
    assert!(
        log().contains("rules.yaml:5:"),
        "error without file:line: {}",
        log()
    );
    send_probes("probe3.pcap");
    assert!(
        wait_for(Duration::from_secs(10), || sids() == [1, 2, 2]),
        "after bad reload: {:?}",
        sids()
    );
    drop(probes);

    assert_eq!(
        bed.xdp_prog_id().as_deref(),
        Some(prog_before.as_str()),
        "program replaced or detached"
    );
    let status = sensor
        .stop(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{}", log());
    assert_eq!(bed.xdp_prog_id(), None, "still attached after exit");
    assert_eq!(sids(), [1, 2, 2], "lines lost at shutdown");
}

/// A reload in the middle of rate-limited matches keeps the account: the
/// `sensor.count`s of the lines add up to the kernel's matches, once and
/// only once (the rate limiter is keyed by rule id, so the reload does not
/// split a (rule, source) in two). Found by scripts/soak.sh.
#[test]
fn a_reload_keeps_the_rate_limited_account() {
    if !sensor::testing::bpf_available("a_reload_keeps_the_rate_limited_account") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: 1\n    name: SYN FIN\n    severity: high\n    match: { tcp_flags: { set: [SYN, FIN] } }\n",
    )
    .unwrap();
    let alerts_path = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let bed = Testbed::new("acc");
    let metrics = "127.0.0.1:9467";
    let mut sensor = bed
        .sensor_run(&rules)
        .json(&alerts_path)
        .metrics(metrics)
        .start(None, &stderr);
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let burst = |name: &str, n: u16| {
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| frames::ipv4_tcp(ATTACKER, SERVER, 1000 + i, 80, flags::SYN | flags::FIN))
            .collect();
        let path = dir.path().join(name);
        write_pcap(&path, &frames);
        bed.inject(&path, 200);
    };
    // 20 matches before the reload, 10 after: more than the burst of 5 a
    // second each time, so both phases leave suppressed matches behind.
    burst("before.pcap", 20);
    unsafe { libc::kill(sensor.0.id() as i32, libc::SIGHUP) };
    assert!(
        wait_for(Duration::from_secs(10), || log().contains("rules reloaded")),
        "{}",
        log()
    );
    burst("after.pcap", 10);
    let counted = || -> u64 {
        read_lines(&alerts_path)
            .iter()
            .map(|a| a["sensor"]["count"].as_u64().unwrap())
            .sum()
    };
    // Suppressed matches are reported once their window has ended.
    let settled = wait_for(Duration::from_secs(10), || counted() >= 30);
    std::thread::sleep(Duration::from_secs(2));
    let text = support::netns::scrape(&bed, metrics);
    let hits = support::netns::metric(
        &text,
        "sensor_rule_hits_total{sig_id=\"1\",name=\"SYN FIN\"}",
    );
    assert_eq!(hits, Some(30), "{text}");
    assert!(settled, "lines count {} of 30", counted());
    assert_eq!(counted(), 30, "lines: {:#?}", read_lines(&alerts_path));
    let status = sensor.stop(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{}", log());
    assert_eq!(counted(), 30, "nothing more at exit");
}
