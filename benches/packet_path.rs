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

use sensor::loader::{Kernel, SensorMode};
use sensor::rules::{MemoryTables, compile, load_path};
use sensor::state::MemoryState;
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

fn main() {
    let rules_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let set = load_path(&rules_dir).expect("default rules load");
    let rules = compile(&set, 300);
    println!(
        "rule set: {} rules (the default set in rules/)",
        rules.meta.len()
    );
    let cases = cases();

    println!("\n== in the kernel (BPF_PROG_TEST_RUN, {REPEAT} runs per frame, average per run)");
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP: needs root");
    } else {
        let mut kernel = Kernel::load().expect("XDP program loads");
        kernel
            .write_rules(&rules, SensorMode::Ids)
            .expect("rules written");
        // Alert records need a reader; open the rings so output succeeds.
        let mut events = kernel.take_events().expect("events");
        let _rings: Vec<_> = aya::util::online_cpus()
            .unwrap()
            .into_iter()
            .map(|cpu| events.open(cpu, Some(64)).unwrap())
            .collect();
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
