//! How much the sensor costs per packet, measured two ways:
//!
//! 1. **In the kernel**: the real XDP program, verified and loaded, run by
//!    BPF_PROG_TEST_RUN `REPEAT` times per frame; the kernel reports the
//!    average time per run. This is the per-packet cost at the driver hook
//!    (without the driver's own work).
//! 2. **In userspace**: the same parser and rule evaluation as `sensor
//!    replay`, timed over the same frames.
//!
//! Run: `sudo cargo bench -p sensor --bench packet_path` (needs root for
//! part 1; without it part 1 is skipped). Results and method: benches/README.md.

use std::hint::black_box;
use std::time::Instant;

use sensor::kernel::loader::Kernel;
use sensor::replay::state::MemoryState;
use sensor::rules::{MemoryTables, compile, load_path};
use sensor::settings::{DropPolicy, SensorMode};
use sensor::testing::frames::{self, Ipv4, flags};
use sensor_common::detect::{AlertHead, process};
use sensor_common::parse::parse_ethernet;

const REPEAT: u32 = 1_000_000;
const USER_ITERATIONS: u32 = 2_000_000;

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let v6 = |next, payload: Vec<u8>| {
        frames::ethernet(
            &[],
            frames::ETH_IPV6,
            &frames::ipv6(frames::doc_v6(1), frames::doc_v6(2), 64, next, &payload),
        )
    };
    vec![
        (
            "IPv4 TCP ACK (benign)",
            frames::ipv4_tcp([203, 0, 113, 5], [192, 0, 2, 10], 50000, 443, flags::ACK),
        ),
        (
            "IPv4 TCP SYN (benign; counted by the syn_flood rules)",
            frames::ipv4_tcp([203, 0, 113, 5], [192, 0, 2, 10], 50001, 443, flags::SYN),
        ),
        (
            "IPv4 UDP (benign)",
            frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new([203, 0, 113, 5], [192, 0, 2, 53], 17)
                    .build(&frames::udp(53000, 53, &[0; 30])),
            ),
        ),
        (
            "IPv6 TCP SYN (benign; counted by the syn_flood rules)",
            v6(6, frames::tcp(50002, 443, flags::SYN, 1, &[])),
        ),
        (
            "IPv4 non-first fragment (benign)",
            frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new([203, 0, 113, 5], [192, 0, 2, 10], 17)
                    .frag(185)
                    .build(&[0; 64]),
            ),
        ),
        (
            "IPv4 TCP SYN+FIN (alerts; rate-limited after 5/s)",
            frames::ipv4_tcp(
                [198, 51, 100, 7],
                [192, 0, 2, 10],
                41000,
                80,
                flags::SYN | flags::FIN,
            ),
        ),
        (
            "QinQ IPv4 UDP DNS",
            frames::ethernet(
                &[(frames::TPID_8021AD, 200), (frames::TPID_8021Q, 100)],
                frames::ETH_IPV4,
                &Ipv4::new([203, 0, 113, 5], [192, 0, 2, 53], 17)
                    .build(&frames::udp(53000, 53, &[0; 30])),
            ),
        ),
        (
            "IPv6 hop-by-hop + dest-opts + TCP ACK",
            v6(
                0,
                frames::ipv6_ext(
                    60,
                    &frames::ipv6_ext(6, &frames::tcp(1, 443, flags::ACK, 1, &[])),
                ),
            ),
        ),
        (
            "IPv4 first fragment, 8 bytes (tiny)",
            frames::ethernet(
                &[],
                frames::ETH_IPV4,
                &Ipv4::new([198, 51, 100, 9], [192, 0, 2, 10], 6)
                    .frag(0x2000)
                    .build(&[0; 8]),
            ),
        ),
        ("ARP (not IP)", frames::ethernet(&[], 0x0806, &[0; 28])),
    ]
}

/// `count` more rules, copies of the default ones that do not count per
/// address (`syn_flood`, `flood`, `scan`; new ids, same kinds and scopes):
/// a rule set of the most rules the kernel holds whose rows for a benign
/// packet stay as empty as with the default set.
fn copies_yaml(defaults: &sensor::rules::RuleSet, count: usize) -> String {
    let mut out = String::from("rules:\n");
    let kinds: Vec<_> = defaults
        .rules
        .iter()
        .filter(|r| !matches!(r.matcher.category(), "syn_flood" | "flood" | "scan"))
        .collect();
    for i in 0..count {
        let rule = kinds[i % kinds.len()];
        out.push_str(&rule_yaml(900_000 + i as u32, rule));
    }
    out
}

fn rule_yaml(id: u32, rule: &sensor::rules::Rule) -> String {
    use sensor::rules::{FragmentMatch, HeaderCheck, Match, Protocol, TtlMatch};
    let protocol = match rule.scope.protocol {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "icmpv6",
    };
    let matcher = match rule.matcher {
        Match::TcpFlags { set, clear } => {
            let names = |bits: u16| {
                sensor_common::packet::tcp::LETTERS
                    .iter()
                    .zip(["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"])
                    .filter(|((bit, _), _)| bits & bit != 0)
                    .map(|(_, name)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{{ tcp_flags: {{ set: [{}], clear: [{}] }} }}",
                names(set),
                names(clear)
            )
        }
        Match::Ttl(TtlMatch::Below(n)) => format!("{{ ttl: {{ below: {n} }} }}"),
        Match::Ttl(TtlMatch::Above(n)) => format!("{{ ttl: {{ above: {n} }} }}"),
        Match::Ttl(TtlMatch::Deviation(n)) => format!("{{ ttl: {{ deviation: {n} }} }}"),
        Match::Fragment(FragmentMatch::TinyFirstBelow(n)) => {
            format!("{{ fragment: {{ tiny_first_below: {n} }} }}")
        }
        Match::Fragment(FragmentMatch::OffsetOne) => "{ fragment: { offset_one: true } }".into(),
        Match::Fragment(FragmentMatch::Oversize) => "{ fragment: { oversize: true } }".into(),
        Match::Fragment(FragmentMatch::Atomic) => "{ fragment: { atomic: true } }".into(),
        Match::Header(check) => format!("{{ header: {{ check: {} }} }}", header_name(check)),
        Match::SynFlood(_) | Match::Flood(_) | Match::Scan(_) => unreachable!("not copied"),
    };
    fn header_name(check: HeaderCheck) -> &'static str {
        check.name()
    }
    format!(
        "  - {{ id: {id}, name: copy {id}, severity: low, scope: {{ protocol: {protocol} }}, match: {matcher} }}\n"
    )
}

/// `count` rules that each scope one service: `dst_ports`, `src`, `dst`
/// and `vlan` tables all in use (the default rules use none of them).
fn scoped_yaml(count: u32) -> String {
    let mut out = String::from("rules:\n");
    for i in 0..count {
        let id = 800_000 + i;
        let (scope, matcher) = match i % 4 {
            0 => (
                format!("{{ protocol: tcp, dst_ports: [{}] }}", 10_000 + i),
                "{ tcp_flags: { set: [SYN, FIN] } }",
            ),
            1 => (
                format!("{{ src: [10.{}.{}.0/24] }}", i / 256, i % 256),
                "{ header: { check: land } }",
            ),
            2 => (
                format!("{{ dst: [172.16.{}.{}] }}", i / 256, i % 256),
                "{ ttl: { below: 5 } }",
            ),
            _ => (
                format!("{{ vlan: [{}] }}", 1 + i % 4000),
                "{ fragment: { tiny_first_below: 64 } }",
            ),
        };
        out.push_str(&format!(
            "  - {{ id: {id}, name: scoped {id}, severity: low, scope: {scope}, match: {matcher} }}\n"
        ));
    }
    out
}

fn main() {
    let rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let set = load_path(&rules_dir).expect("default rules load");
    let rules = compile(&set, 300);
    println!(
        "rule set: {} rules (the default set in rules/)",
        rules.meta.len()
    );
    let cases = cases();
    if let Ok(dir) = std::env::var("PACKET_PATH_FRAMES") {
        // For test-running other XDP programs (`bpftool prog run`) on the same frames.
        for (i, (name, frame)) in cases.iter().enumerate() {
            std::fs::write(format!("{dir}/{i:02}.bin"), frame).expect("frame written");
            println!("frame {i:02}: {name}");
        }
    }
    // The default set filled up to the most rules the kernel holds:
    // copies of its rules, and scoped ones.
    let extra = sensor_common::tables::MAX_RULES as usize - set.rules.len();
    let big_sets: Vec<(String, Option<sensor::rules::CompiledRules>)> = [
        (
            format!("default + {extra} copies"),
            copies_yaml(&set, extra),
        ),
        (
            format!("default + {extra} scoped"),
            scoped_yaml(extra as u32),
        ),
    ]
    .into_iter()
    .map(|(name, yaml)| {
        let compiled = sensor::rules::load_str("extra.yaml", &yaml)
            .map_err(|err| err.to_string())
            .and_then(|extra| {
                let mut big = set.clone();
                big.rules.extend(extra.rules);
                sensor::rules::try_compile(&big, 300).map_err(|err| err.to_string())
            });
        match compiled {
            Ok(compiled) => (name, Some(compiled)),
            Err(err) => {
                println!("SKIP {name}: {err}");
                (name, None)
            }
        }
    })
    .collect();

    println!("\n== in the kernel (BPF_PROG_TEST_RUN, {REPEAT} runs per frame, average per run)");
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: needs root");
    } else {
        let mut kernel = Kernel::load().expect("XDP program loads");
        if let Ok(Some(insns)) = kernel.verified_insns() {
            println!("(the verifier processed {insns} instructions to accept the program)");
        }
        // Alert records need a reader; open the rings so output succeeds.
        let mut events = kernel.take_events().expect("events");
        let _rings: Vec<_> = aya::util::online_cpus()
            .unwrap()
            .into_iter()
            .map(|cpu| events.open(cpu, Some(64)).unwrap())
            .collect();
        // PACKET_PATH_QUICK=1: the default rule set only (ids, then drop mode).
        let quick = std::env::var("PACKET_PATH_QUICK").is_ok_and(|v| v == "1");
        for (name, big) in big_sets.iter().filter(|_| !quick) {
            let Some(big) = big else {
                println!("SKIP {name}: does not fit");
                continue;
            };
            kernel
                .write_rules(big, SensorMode::Ids)
                .expect("rules written");
            println!("-- {} rules ({name})", big.meta.len());
            for (name, frame) in &cases {
                let (verdict, per_run) = kernel.test_run_repeat(frame, REPEAT).expect("test run");
                println!("{:>8} ns  verdict {verdict}  {name}", per_run.as_nanos());
            }
        }
        println!("-- {} rules (default)", rules.meta.len());
        kernel
            .write_rules(&rules, SensorMode::Ids)
            .expect("rules written");
        for (name, frame) in &cases {
            let (verdict, per_run) = kernel.test_run_repeat(frame, REPEAT).expect("test run");
            println!("{:>8} ns  verdict {verdict}  {name}", per_run.as_nanos());
        }
        // Drop mode, default policy (`block_when: proven`): the handshake
        // watching's one LRU lookup for segments with ACK set, and for the
        // SYN+FIN frame a dropped, unproven, never blocked packet.
        println!(
            "-- {} rules (default), drop mode, block_when: proven",
            rules.meta.len()
        );
        kernel
            .write_rules(&rules, SensorMode::Drop)
            .expect("rules written");
        kernel
            .write_drop_policy(&DropPolicy::default())
            .expect("drop policy written");
        for (name, frame) in &cases {
            let (verdict, per_run) = kernel.test_run_repeat(frame, REPEAT).expect("test run");
            println!("{:>8} ns  verdict {verdict}  {name}", per_run.as_nanos());
        }
        let counters = kernel.counters().unwrap();
        println!(
            "(alert records the rings refused during the run: {})",
            counters.alert_output_errors
        );
    }

    println!(
        "\n== in userspace (parse + evaluate, as `sensor replay`; {USER_ITERATIONS} iterations)"
    );
    let tables = MemoryTables {
        rules: &rules,
        drop_mode: false,
    };
    for (name, frame) in &cases {
        let mut state = MemoryState::default();
        let mut alerts = 0u64;
        let start = Instant::now();
        for i in 0..USER_ITERATIONS {
            let meta = parse_ethernet(black_box(frame.as_slice()));
            // 1 µs apart in capture time, as a 1 Mpps stream.
            process(
                &meta,
                1_000_000_000 + i as u64 * 1_000,
                &tables,
                &mut state,
                &mut |_h: &AlertHead| alerts += 1,
            );
        }
        let per = start.elapsed().as_nanos() as f64 / USER_ITERATIONS as f64;
        println!("{per:>8.1} ns  alerts {alerts:>7}  {name}");
    }
}
