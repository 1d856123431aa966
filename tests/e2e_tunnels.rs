//! End to end through tunnels (docs/CONTRACT.md section 3, *Tunnels*): a
//! SYN+FIN attack inside VXLAN and inside GRE (with a key), built and sent
//! by scapy from the injector namespace onto the span port, raises the
//! inner packet's alert with the inner addresses and the contract's
//! `tunnel` object; the same attack with decapsulation turned off in the
//! config raises nothing (the outer packets are plain UDP and GRE).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::fixtures::SYN_FIN_RULE;
use support::live::read_lines;
use support::netns::{Testbed, wait_for};

/// Outer (tunnel endpoints) and inner (attacker, victim) addresses.
const VTEP_A: &str = "198.51.100.1";
const VTEP_B: &str = "198.51.100.2";
const ATTACKER: &str = "192.0.2.66";
const VICTIM: &str = "203.0.113.80";

/// Sends one SYN+FIN from ATTACKER inside VXLAN (VNI 4242, UDP 4789) and
/// one inside GRE (key 77), from the injector namespace; scapy builds the
/// frames (not the sensor's own builders).
fn send_tunnelled_attacks(bed: &Testbed) {
    let script = format!(
        "from scapy.all import Ether, IP, UDP, TCP, GRE, sendp\n\
         from scapy.layers.vxlan import VXLAN\n\
         inner = IP(src='{ATTACKER}', dst='{VICTIM}', ttl=64) / TCP(sport=40001, dport=80, flags='SF')\n\
         vxlan = Ether() / IP(src='{VTEP_A}', dst='{VTEP_B}') / UDP(sport=51515, dport=4789) / VXLAN(vni=4242, flags=0x08) / Ether() / inner\n\
         gre = Ether() / IP(src='{VTEP_B}', dst='{VTEP_A}') / GRE(key_present=1, key=77, proto=0x0800) / inner\n\
         sendp([vxlan, gre], iface='{iface}', inter=0.05, verbose=False)\n",
        iface = bed.injector_if,
    );
    let output = Command::new("ip")
        .args(["netns", "exec", &bed.injector_ns, "/usr/bin/python3", "-c"])
        .arg(&script)
        .output()
        .expect("python3 with scapy (scripts/bootstrap.sh installs it)");
    assert!(
        output.status.success(),
        "scapy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tunnel_line<'a>(lines: &'a [Value], kind: &str) -> Option<&'a Value> {
    lines.iter().find(|line| line["tunnel"]["type"] == kind)
}

#[test]
fn attacks_inside_vxlan_and_gre_raise_inner_alerts_with_their_tunnel() {
    if !sensor::testing::bpf_available(
        "attacks_inside_vxlan_and_gre_raise_inner_alerts_with_their_tunnel",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let alerts_path = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");

    let bed = Testbed::new("tun");
    let mut sensor = bed
        .sensor_run(&rules)
        .json(&alerts_path)
        .start(None, &stderr);
    send_tunnelled_attacks(&bed);
    let complete = wait_for(Duration::from_secs(10), || {
        read_lines(&alerts_path).len() >= 2
    });
    sensor.stop(Duration::from_secs(10));
    let lines = read_lines(&alerts_path);
    assert!(
        complete,
        "expected 2 alert lines, got {lines:?}; stderr: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        // The inner packet's alert: its addresses, ports and flags.
        assert_eq!(line["alert"]["signature_id"], 1, "{line}");
        assert_eq!(line["src_ip"], ATTACKER, "{line}");
        assert_eq!(line["dest_ip"], VICTIM, "{line}");
        assert_eq!(line["src_port"], 40001, "{line}");
        assert_eq!(line["dest_port"], 80, "{line}");
        assert_eq!(line["proto"], "TCP", "{line}");
        assert_eq!(line["tcp"]["tcp_flags"], "03", "{line}");
        assert_eq!(line["tunnel"]["depth"], 1, "{line}");
    }
    let vxlan = tunnel_line(&lines, "vxlan").expect("a vxlan line");
    assert_eq!(vxlan["tunnel"]["src_ip"], VTEP_A, "{vxlan}");
    assert_eq!(vxlan["tunnel"]["dest_ip"], VTEP_B, "{vxlan}");
    assert_eq!(vxlan["tunnel"]["src_port"], 51515, "{vxlan}");
    assert_eq!(vxlan["tunnel"]["dest_port"], 4789, "{vxlan}");
    assert_eq!(vxlan["tunnel"]["proto"], "UDP", "{vxlan}");
    assert_eq!(vxlan["tunnel"]["vni"], 4242, "{vxlan}");
    let gre = tunnel_line(&lines, "gre").expect("a gre line");
    assert_eq!(gre["tunnel"]["src_ip"], VTEP_B, "{gre}");
    assert_eq!(gre["tunnel"]["dest_ip"], VTEP_A, "{gre}");
    assert_eq!(gre["tunnel"]["proto"], "47", "{gre}");
    assert_eq!(gre["tunnel"]["gre_key"], 77, "{gre}");
    assert!(gre["tunnel"].get("src_port").is_none(), "{gre}");
    assert!(gre["tunnel"].get("vni").is_none(), "{gre}");
}

#[test]
fn decap_off_in_the_config_judges_only_the_outer_packets() {
    if !sensor::testing::bpf_available("decap_off_in_the_config_judges_only_the_outer_packets") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, SYN_FIN_RULE).unwrap();
    let config = dir.path().join("sensor.yaml");
    std::fs::write(&config, "decap:\n  enabled: false\n").unwrap();
    let alerts_path = dir.path().join("alerts.json");
    let stderr = dir.path().join("sensor.stderr");
    let metrics = "127.0.0.1:19481";

    let bed = Testbed::new("tuo");
    let mut sensor = bed
        .sensor_run(&rules)
        .arg("--config")
        .arg(&config)
        .json(&alerts_path)
        .metrics(metrics)
        .start(None, &stderr);
    send_tunnelled_attacks(&bed);
    // Both frames seen by the program, and no line.
    let seen = wait_for(Duration::from_secs(10), || {
        support::netns::metric(
            &support::netns::scrape(&bed, metrics),
            "sensor_packets_total",
        )
        .is_some_and(|n| n >= 2)
    });
    std::thread::sleep(Duration::from_millis(500));
    sensor.stop(Duration::from_secs(10));
    assert!(
        seen,
        "the frames never reached the program; stderr: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let lines = read_lines(&alerts_path);
    assert!(lines.is_empty(), "{lines:?}");
}
