//! The real XDP program, run by the kernel on crafted frames
//! (BPF_PROG_TEST_RUN): verdict, alert records and counters, case by case.
//! Also proves the kernel and `replay`'s in-memory evaluation agree on
//! every case (one parser, one rule logic).

mod support;

use sensor::kernel::loader::Kernel;
use sensor::settings::SensorMode;
use sensor::testing::frames::{self, Ipv4, flags};
use sensor_common::alert::AlertRecord;
use sensor_common::packet::flag;
use support::{KernelAlerts, compile_yaml, memory_alerts};

const XDP_PASS: u32 = 2;

const RULES: &str = r#"
rules:
  - id: 1001
    name: SYN and FIN
    severity: high
    match: { tcp_flags: { set: [SYN, FIN] } }
  - id: 1002
    name: NULL scan
    severity: medium
    match: { tcp_flags: { clear: [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] } }
  - id: 1003
    name: XMAS scan
    severity: medium
    match: { tcp_flags: { set: [FIN, PSH, URG] } }
  - id: 1004
    name: SYN to ssh from 198.51.100.0/24 on vlan 100
    severity: low
    scope:
      src: [198.51.100.0/24]
      protocol: tcp
      dst_ports: [22]
      vlan: [100]
    match: { tcp_flags: { set: [SYN], clear: [ACK] } }
"#;

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    alerts: &'static [u32],
}

fn cases() -> Vec<Case> {
    let tcp4 = |src_last: u8, flags: u16| {
        frames::ipv4_tcp(
            [198, 51, 100, src_last],
            [192, 0, 2, 10],
            40000 + src_last as u16,
            80,
            flags,
        )
    };
    let ssh_syn = |tags: &[(u16, u16)], src: [u8; 4]| {
        frames::ethernet(
            tags,
            frames::ETH_IPV4,
            &Ipv4::new(src, [192, 0, 2, 22], 6).build(&frames::tcp(50000, 22, flags::SYN, 7, &[])),
        )
    };
    vec![
        Case {
            name: "SYN+FIN",
            frame: tcp4(1, flags::SYN | flags::FIN),
            alerts: &[1001],
        },
        Case {
            name: "NULL",
            frame: tcp4(2, 0),
            alerts: &[1002],
        },
        Case {
            name: "XMAS",
            frame: tcp4(3, flags::FIN | flags::PSH | flags::URG),
            alerts: &[1003],
        },
        Case {
            name: "benign SYN",
            frame: tcp4(4, flags::SYN),
            alerts: &[],
        },
        Case {
            name: "benign SYN-ACK",
            frame: tcp4(5, flags::SYN | flags::ACK),
            alerts: &[],
        },
        Case {
            name: "benign FIN-ACK",
            frame: tcp4(6, flags::FIN | flags::ACK),
            alerts: &[],
        },
        Case {
            name: "SYN+FIN over IPv6 with a destination-options header",
            frame: frames::ethernet(
                &[],
                frames::ETH_IPV6,
                &frames::ipv6(
                    frames::doc_v6(7),
                    frames::doc_v6(8),
                    64,
                    60,
                    &frames::ipv6_ext(6, &frames::tcp(1234, 80, flags::SYN | flags::FIN, 1, &[])),
                ),
            ),
            alerts: &[1001],
        },
        Case {
            name: "NULL inside QinQ",
            frame: frames::ethernet(
                &[(frames::TPID_8021AD, 200), (frames::TPID_8021Q, 100)],
                frames::ETH_IPV4,
                &Ipv4::new([203, 0, 113, 9], [192, 0, 2, 10], 6).build(&frames::tcp(
                    1,
                    2,
                    0,
                    3,
                    &[],
                )),
            ),
            alerts: &[1002],
        },
        Case {
            name: "scoped rule: all conditions hold",
            frame: ssh_syn(&[(frames::TPID_8021Q, 100)], [198, 51, 100, 20]),
            alerts: &[1004],
        },
        Case {
            name: "scoped rule: wrong vlan",
            frame: ssh_syn(&[(frames::TPID_8021Q, 101)], [198, 51, 100, 21]),
            alerts: &[],
        },
        Case {
            name: "scoped rule: untagged",
            frame: ssh_syn(&[], [198, 51, 100, 22]),
            alerts: &[],
        },
        Case {
            name: "scoped rule: source outside the prefix",
            frame: ssh_syn(&[(frames::TPID_8021Q, 100)], [203, 0, 113, 23]),
            alerts: &[],
        },
        Case {
            name: "first fragment with 8 bytes of TCP: no flags to judge",
            frame: frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new([198, 51, 100, 30], [192, 0, 2, 10], 6)
                    .frag(0x2000)
                    .build(&frames::tcp(1, 2, flags::SYN | flags::FIN, 3, &[])[..8]),
            ),
            alerts: &[],
        },
        Case {
            name: "truncated frame",
            frame: tcp4(31, 0)[..30].to_vec(),
            alerts: &[],
        },
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
        Case {
            name: "Ethernet header only, IPv4 ethertype",
            frame: frames::ethernet(&[], frames::ETH_IPV4, &[]),
            alerts: &[],
        },
        Case {
            name: "ARP",
            frame: frames::ethernet(&[], 0x0806, &[0u8; 28]),
            alerts: &[],
        },
    ]
}

#[test]
fn kernel_verdicts_and_alert_records_on_crafted_frames() {
    if !sensor::testing::bpf_available("kernel_verdicts_and_alert_records_on_crafted_frames") {
        return;
    }
    let rules = compile_yaml(RULES);
    let mut kernel = Kernel::load().expect("XDP program loads");
    // The verifier's budget is a hard limit (1,000,000): say how much of it
    // the program takes, so that a change's cost shows in the test log.
    if let Ok(Some(insns)) = kernel.verified_insns() {
        sensor::testing::report(&format!(
            "xdp_test_run: the verifier processed {insns} instructions (limit 1000000)"
        ));
    }
    for (name, what) in [("sensor_inner", "tunnels' inner packets")] {
        if let Ok(Some(insns)) = kernel.program_verified_insns(name) {
            sensor::testing::report(&format!(
                "xdp_test_run: {name} ({what}): the verifier processed {insns} instructions \
                 (limit 1000000)"
            ));
        }
    }
    kernel
        .write_rules(&rules, SensorMode::Ids)
        .expect("rule maps written");
    let mut alerts = KernelAlerts::open(&mut kernel);

    let mut failures = Vec::new();
    for case in cases() {
        let verdict = kernel.test_run(&case.frame).expect("BPF_PROG_TEST_RUN");
        let records = alerts.drain();
        let got: Vec<u32> = records.iter().map(|r| r.sig_id).collect();
        if verdict != XDP_PASS || got != case.alerts {
            failures.push(format!(
                "{}: verdict {verdict} (want {XDP_PASS}), alerts {got:?} (want {:?})",
                case.name, case.alerts
            ));
        }
        // The kernel and replay's evaluation must agree on every frame.
        let in_memory: Vec<u32> = memory_alerts(&rules, &case.frame)
            .iter()
            .map(|r| r.sig_id)
            .collect();
        if in_memory != got {
            failures.push(format!(
                "{}: kernel {got:?} but replay logic {in_memory:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );

    let counters = kernel.counters().unwrap();
    assert_eq!(counters.packets, cases().len() as u64);
    assert_eq!(
        counters.not_ip, 3,
        "truncated, header-only and ARP frames are not IP"
    );
    assert_eq!(counters.passed, counters.packets);
}

#[test]
fn kernel_alert_record_carries_the_packet_fields() {
    if !sensor::testing::bpf_available("kernel_alert_record_carries_the_packet_fields") {
        return;
    }
    let rules = compile_yaml(RULES);
    let mut kernel = Kernel::load().expect("XDP program loads");
    kernel
        .write_rules(&rules, SensorMode::Ids)
        .expect("rule maps written");
    let mut alerts = KernelAlerts::open(&mut kernel);

    let frame = frames::ethernet(
        &[(frames::TPID_8021Q, 100)],
        frames::ETH_IPV4,
        &Ipv4::new([198, 51, 100, 77], [192, 0, 2, 22], 6)
            .ttl(61)
            .build(&frames::tcp(50001, 22, flags::SYN, 99, &[])),
    );
    assert_eq!(kernel.test_run(&frame).unwrap(), XDP_PASS);
    let records = alerts.drain();
    assert_eq!(records.len(), 1, "{records:?}");
    let record: &AlertRecord = &records[0];
    let p = &record.packet;
    assert_eq!(record.sig_id, 1004);
    assert_eq!(record.count, 1, "first match of this (rule, source)");
    assert!(record.timestamp_ns > 0);
    assert_eq!((p.ip_version, p.ttl, p.proto), (4, 61, 6));
    assert_eq!(&p.src_addr[..4], &[198, 51, 100, 77]);
    assert_eq!(&p.dst_addr[..4], &[192, 0, 2, 22]);
    assert_eq!((p.src_port, p.dst_port), (50001, 22));
    assert_eq!(p.tcp_flags, flags::SYN);
    assert!(p.has(flag::HAS_PORTS) && p.has(flag::HAS_TCP_FLAGS));
    assert_eq!((p.vlan_count, p.vlan[0]), (1, 100));
    assert_eq!(p.frame_len as usize, frame.len());
    assert_eq!(p.ip_id, 0x1234);
    // BPF_PROG_TEST_RUN hands the program a frame "received" on the
    // namespace's loopback: the record names that interface's index.
    let lo = sensor::kernel::preflight::interface_index("lo").expect("lo");
    assert_eq!(record.ifindex, lo);

    let stats = kernel.rule_stats().unwrap();
    let slot = rules.meta.iter().position(|m| m.id == 1004).unwrap();
    assert_eq!((stats[slot].hits, stats[slot].alerts), (1, 1));
}

/// Each alert record carries the frame's first bytes (EVE `packet`): as
/// many as the cap, or the whole frame when it is shorter; none at 0.
#[test]
fn kernel_alert_records_carry_the_frame_up_to_the_cap() {
    if !sensor::testing::bpf_available("kernel_alert_records_carry_the_frame_up_to_the_cap") {
        return;
    }
    let rules = compile_yaml(RULES);
    let mut kernel = Kernel::load().expect("XDP program loads");
    kernel
        .write_rules(&rules, SensorMode::Ids)
        .expect("rule maps written");
    let mut alerts = KernelAlerts::open(&mut kernel);
    // SYN+FIN with 300 bytes of payload: rule 1001. A new source per run
    // keeps the rate limiter out of the way.
    let frame = |last: u8| {
        frames::ethernet(
            &[],
            frames::ETH_IPV4,
            &Ipv4::new([198, 51, 100, last], [192, 0, 2, 10], 6).build(&frames::tcp(
                40000,
                80,
                flags::SYN | flags::FIN,
                1,
                &[0x5a; 300],
            )),
        )
    };
    let cases = [(None, 128), (Some(16), 16), (Some(1024), 354), (Some(0), 0)];
    for (last, (cap, shown)) in (1..).zip(cases) {
        if let Some(cap) = cap {
            kernel
                .write_alert_packet_bytes(cap)
                .expect("config written");
        }
        let frame = frame(last);
        assert_eq!(frame.len(), 354);
        assert_eq!(kernel.test_run(&frame).unwrap(), XDP_PASS);
        let samples = alerts.drain_samples();
        assert_eq!(samples.len(), 1, "cap {cap:?}: {samples:?}");
        assert_eq!(usize::from(samples[0].record.captured_len), shown);
        assert_eq!(samples[0].frame, &frame[..shown], "cap {cap:?}");
    }
}

/// A reload writes the rule tables not in force, then switches: the first
/// frame after `write_rules` sees only the new set, and each generation
/// keeps its own per-slot counters.
#[test]
fn reload_switches_rule_generations() {
    if !sensor::testing::bpf_available("reload_switches_rule_generations") {
        return;
    }
    let syn_fin = "rules:\n  - id: 11\n    name: a\n    severity: low\n    match: { tcp_flags: { set: [SYN, FIN] } }\n";
    let also_null = "rules:\n  - id: 22\n    name: b\n    severity: low\n    match: { tcp_flags: { clear: [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] } }\n  - id: 11\n    name: a\n    severity: low\n    match: { tcp_flags: { set: [SYN, FIN] } }\n";
    let mut kernel = Kernel::load().expect("XDP program loads");
    let mut alerts = KernelAlerts::open(&mut kernel);
    let frame_syn_fin = frames::ipv4_tcp(
        [198, 51, 100, 1],
        [192, 0, 2, 1],
        1,
        2,
        flags::SYN | flags::FIN,
    );
    let frame_null = frames::ipv4_tcp([198, 51, 100, 2], [192, 0, 2, 1], 1, 2, 0);

    let first = kernel
        .write_rules(&compile_yaml(syn_fin), SensorMode::Ids)
        .unwrap();
    assert_eq!(kernel.generation().unwrap(), first);
    kernel.test_run(&frame_syn_fin).unwrap();
    kernel.test_run(&frame_null).unwrap();
    assert_eq!(
        alerts.drain().iter().map(|r| r.sig_id).collect::<Vec<_>>(),
        [11]
    );

    let second = kernel
        .write_rules(&compile_yaml(also_null), SensorMode::Ids)
        .unwrap();
    assert_ne!(first, second, "a reload uses the other generation");
    kernel.test_run(&frame_syn_fin).unwrap();
    kernel.test_run(&frame_null).unwrap();
    let mut got: Vec<u32> = alerts.drain().iter().map(|r| r.sig_id).collect();
    got.sort();
    assert_eq!(got, [11, 22]);

    // Rule 11 sits in slot 0 of the first generation and slot 1 of the second.
    let all = kernel.rule_stats_all().unwrap();
    let base = |generation: u8| generation as usize * sensor_common::tables::MAX_RULES as usize;
    assert_eq!(all[base(first)].hits, 1, "first generation, rule 11");
    assert_eq!(all[base(second)].hits, 1, "second generation, rule 22");
    assert_eq!(all[base(second) + 1].hits, 1, "second generation, rule 11");
}

/// Windows live in pages of per-address state (with the TTL baselines),
/// keyed by global rule slot: recycling a generation must empty the flood
/// and scan windows its rules left there, or the rules that take its slots
/// two reloads later would go on counting from them. Here a source sends
/// two SYNs to two ports under a generation, then the rule set is installed
/// twice (as `run` does on SIGHUP: recycle the free generation, write it):
/// its third SYN, back in the first generation's slots, counts one again
/// (no alert); two more reach the thresholds of three.
#[test]
fn recycling_a_generation_empties_its_flood_and_scan_windows() {
    if !sensor::testing::bpf_available("recycling_a_generation_empties_its_flood_and_scan_windows")
    {
        return;
    }
    let rules = "rules:
  - id: 31
    name: burst
    severity: low
    match: { syn_flood: { track: by_src, threshold: 3, window_ms: 600000 } }
  - id: 32
    name: victim
    severity: low
    match: { syn_flood: { track: by_dst, threshold: 3, window_ms: 600000 } }
  - id: 33
    name: ports
    severity: low
    match: { scan: { track: by_src, distinct: ports, threshold: 3, window_ms: 600000 } }
";
    let compiled = compile_yaml(rules);
    let mut kernel = Kernel::load().expect("XDP program loads");
    let mut alerts = KernelAlerts::open(&mut kernel);
    let syn = |port| frames::ipv4_tcp([198, 51, 100, 7], [192, 0, 2, 9], 40_000, port, flags::SYN);
    let install = |kernel: &mut Kernel| {
        let free = 1 - kernel.generation().unwrap();
        kernel.recycle_generation(free).unwrap();
        assert_eq!(
            kernel.write_rules(&compiled, SensorMode::Ids).unwrap(),
            free
        );
    };
    install(&mut kernel);
    let first = kernel.generation().unwrap();
    for port in [1, 2] {
        kernel.test_run(&syn(port)).unwrap();
    }
    assert!(
        alerts.drain().is_empty(),
        "two SYNs, two ports: under every threshold"
    );
    install(&mut kernel);
    install(&mut kernel);
    assert_eq!(
        kernel.generation().unwrap(),
        first,
        "back in the first generation"
    );
    kernel.test_run(&syn(3)).unwrap();
    assert!(
        alerts.drain().is_empty(),
        "the windows of two reloads ago were emptied: this SYN counts one"
    );
    for port in [4, 5] {
        kernel.test_run(&syn(port)).unwrap();
    }
    let mut got: Vec<u32> = alerts.drain().iter().map(|r| r.sig_id).collect();
    got.sort();
    assert_eq!(
        got,
        [31, 32, 33],
        "three SYNs to three ports since the reload"
    );
}

/// Port and VLAN scopes live in arrays indexed by value: a reload must
/// clear the entries the generation it overwrites held, or a port an older
/// rule set named would still match (generation 0: 80, 1: 443, 0 again:
/// 8080, where 80 must no longer match). Source ports and VLANs likewise.
#[test]
fn reload_clears_the_port_and_vlan_scopes_of_the_generation_it_overwrites() {
    if !sensor::testing::bpf_available(
        "reload_clears_the_port_and_vlan_scopes_of_the_generation_it_overwrites",
    ) {
        return;
    }
    let rules = |dst: u16, src: u16, vlan: u16| {
        format!(
            "rules:\n  - id: 31\n    name: by dst port\n    severity: low\n    scope: {{ dst_ports: [{dst}] }}\n    match: {{ tcp_flags: {{ set: [SYN, FIN] }} }}\n  - id: 32\n    name: by src port\n    severity: low\n    scope: {{ src_ports: [{src}] }}\n    match: {{ tcp_flags: {{ set: [SYN, FIN] }} }}\n  - id: 33\n    name: by vlan\n    severity: low\n    scope: {{ vlan: [{vlan}] }}\n    match: {{ tcp_flags: {{ set: [SYN, FIN] }} }}\n"
        )
    };
    let mut kernel = Kernel::load().expect("XDP program loads");
    let mut alerts = KernelAlerts::open(&mut kernel);
    let syn_fin = flags::SYN | flags::FIN;
    // Sources differ per frame so no rate limit can hide an alert.
    let mut next_src = 0u8;
    let mut sig_ids = |kernel: &mut Kernel, sport: u16, dport: u16, vlan: u16| {
        next_src += 1;
        let ip = frames::Ipv4::new([198, 51, 100, next_src], [192, 0, 2, 1], 6)
            .build(&frames::tcp(sport, dport, syn_fin, 1000, &[]));
        let frame = frames::ethernet(&[(frames::TPID_8021Q, vlan)], frames::ETH_IPV4, &ip);
        kernel.test_run(&frame).unwrap();
        let mut got: Vec<u32> = alerts.drain().iter().map(|r| r.sig_id).collect();
        got.sort();
        got
    };
    for (dst, src, vlan) in [(80, 1000, 100), (443, 2000, 200), (8080, 3000, 300)] {
        kernel
            .write_rules(&compile_yaml(&rules(dst, src, vlan)), SensorMode::Ids)
            .unwrap();
        assert_eq!(sig_ids(&mut kernel, 9, dst, 7), [31], "dst port {dst}");
        assert_eq!(sig_ids(&mut kernel, src, 9, 7), [32], "src port {src}");
        assert_eq!(sig_ids(&mut kernel, 9, 9, vlan), [33], "vlan {vlan}");
    }
    // The set now in force is the third; the first, in the same generation,
    // named 80, 1000 and 100, and the second 443, 2000 and 200.
    for (dst, src, vlan) in [(80, 1000, 100), (443, 2000, 200)] {
        assert_eq!(
            sig_ids(&mut kernel, 9, dst, 7),
            [] as [u32; 0],
            "old dst port {dst}"
        );
        assert_eq!(
            sig_ids(&mut kernel, src, 9, 7),
            [] as [u32; 0],
            "old src port {src}"
        );
        assert_eq!(
            sig_ids(&mut kernel, 9, 9, vlan),
            [] as [u32; 0],
            "old vlan {vlan}"
        );
    }
}

/// Several interfaces share one program: it counts each one's packets (by
/// ingress ifindex, for the interfaces userspace registered), and an
/// inspect session for one interface sees none of another's.
#[test]
fn per_interface_packets_and_inspect_by_interface() {
    if !sensor::testing::bpf_available("per_interface_packets_and_inspect_by_interface") {
        return;
    }
    use sensor_common::filter::FilterProgram;
    let lo = sensor::kernel::preflight::interface_index("lo").expect("lo");
    let mut kernel = Kernel::load().expect("XDP program loads");
    kernel
        .write_rules(&compile_yaml(RULES), SensorMode::Ids)
        .expect("rule maps written");
    let frame = frames::ipv4_tcp([198, 51, 100, 7], [192, 0, 2, 10], 41000, 80, flags::SYN);

    // Not registered: not counted per interface (the global count goes on).
    kernel.test_run(&frame).unwrap();
    assert_eq!(kernel.iface_packets(lo).unwrap(), 0);
    kernel.count_iface_packets(lo).unwrap();
    for _ in 0..3 {
        kernel.test_run(&frame).unwrap();
    }
    assert_eq!(kernel.iface_packets(lo).unwrap(), 3);
    // Registering again keeps the count; another index counts nothing.
    kernel.count_iface_packets(lo).unwrap();
    kernel.count_iface_packets(lo + 1000).unwrap();
    kernel.test_run(&frame).unwrap();
    assert_eq!(kernel.iface_packets(lo).unwrap(), 4);
    // A frame without IP (passed before the parse) is the interface's too:
    // the per-interface counts add up to the global one.
    kernel
        .test_run(&frames::arp(1, [192, 0, 2, 1], [192, 0, 2, 10]))
        .unwrap();
    assert_eq!(kernel.iface_packets(lo).unwrap(), 5);
    assert_eq!(kernel.iface_packets(lo + 1000).unwrap(), 0);
    assert_eq!(kernel.forget_iface_packets(lo).unwrap(), 5);
    assert_eq!(kernel.iface_packets(lo).unwrap(), 0, "forgotten");
    assert_eq!(kernel.counters().unwrap().packets, 6);

    let all = FilterProgram::default();
    kernel.start_inspect(&all, 100, true, lo + 1000).unwrap();
    kernel.test_run(&frame).unwrap();
    assert_eq!(
        kernel.inspect_counters().unwrap().matched,
        0,
        "another interface's session"
    );
    kernel.start_inspect(&all, 100, true, lo).unwrap();
    kernel.test_run(&frame).unwrap();
    assert_eq!(
        kernel.inspect_counters().unwrap().matched,
        1,
        "this interface's session"
    );
    kernel.stop_inspect().unwrap();
    kernel.test_run(&frame).unwrap();
    assert_eq!(kernel.inspect_counters().unwrap().matched, 1, "off");
}
