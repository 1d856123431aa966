//! Drop mode's proof of address and `block_when` (issue #16), run by the
//! real XDP program (BPF_PROG_TEST_RUN) on crafted TCP segments: handshake
//! tracking at its boundaries (sequence wrap-around, retransmitted and
//! conflicting SYN-ACKs, a wrong final ACK, proof expiry), what each
//! `block_when` mode does with a matching packet, the alert records'
//! `block`, the counters, and the allowlist and dry run in every mode.
//!
//! Each test loads a fresh program, so state never leaks between tests.

mod support;

use std::time::Duration;

use sensor::kernel::loader::{Counters, Kernel};
use sensor::settings::{DropPolicy, SensorMode};
use sensor::testing::frames::{self, flags};
use sensor_common::alert::block;
use sensor_common::tables::{BlockPolicy, block_when};
use support::kinds::addr_key_v4 as addr_key;
use support::{KernelAlerts, compile_yaml};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const RULES: &str = r#"
rules:
  - id: 1601
    name: SYN and FIN, drop
    severity: high
    action: drop
    match: { tcp_flags: { set: [SYN, FIN] } }
  - id: 1602
    name: URG without ACK, drop without block
    severity: low
    action: drop
    block_seconds: 0
    match: { tcp_flags: { set: [URG], clear: [ACK] } }
"#;

const CLIENT: [u8; 4] = [192, 0, 2, 20];
const SERVER: [u8; 4] = [198, 51, 100, 80];
const CLIENT_PORT: u16 = 40_001;
const SERVER_PORT: u16 = 443;

fn segment(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), f: u16, seq: u32, ack: u32) -> Vec<u8> {
    frames::ipv4_tcp_numbered((src, dst), ports, f, seq, ack)
}

fn from_client(f: u16, seq: u32, ack: u32) -> Vec<u8> {
    segment(CLIENT, SERVER, (CLIENT_PORT, SERVER_PORT), f, seq, ack)
}

fn from_server(f: u16, seq: u32, ack: u32) -> Vec<u8> {
    segment(SERVER, CLIENT, (SERVER_PORT, CLIENT_PORT), f, seq, ack)
}

/// The forged packet the drop rule matches: SYN+FIN from `src`.
fn syn_fin(src: [u8; 4]) -> Vec<u8> {
    segment(
        src,
        [203, 0, 113, 9],
        (1234, 80),
        flags::SYN | flags::FIN,
        7,
        0,
    )
}

struct Sensor {
    kernel: Kernel,
    alerts: KernelAlerts,
}

impl Sensor {
    fn new(block: BlockPolicy, dry_run: bool, allowlist: &[&str]) -> Sensor {
        let mut kernel = Kernel::load().expect("load the XDP program");
        kernel
            .write_rules(&compile_yaml(RULES), SensorMode::Drop)
            .expect("rules");
        kernel
            .write_drop_policy(&DropPolicy {
                allowlist: allowlist.iter().map(|n| n.parse().unwrap()).collect(),
                blocklist: Vec::new(),
                dry_run,
                block,
                ..DropPolicy::default()
            })
            .expect("drop policy");
        let alerts = KernelAlerts::open(&mut kernel);
        Sensor { kernel, alerts }
    }

    fn proven() -> Sensor {
        Sensor::new(BlockPolicy::DEFAULT, false, &[])
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        self.kernel.test_run(frame).expect("BPF_PROG_TEST_RUN")
    }

    /// Runs the frames, each of which must pass.
    fn pass_all(&mut self, frames: &[Vec<u8>]) {
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(self.run(frame), XDP_PASS, "frame {i} of the handshake");
        }
    }

    /// The `block` of every alert record since the last call.
    fn blocks(&mut self) -> Vec<u8> {
        self.alerts.drain().iter().map(|r| r.block).collect()
    }

    fn counters(&self) -> Counters {
        self.kernel.counters().expect("counters")
    }

    fn is_blocked(&self, src: [u8; 4]) -> bool {
        self.kernel
            .blocked_sources()
            .expect("blocked sources")
            .iter()
            .any(|(key, _)| *key == addr_key(src))
    }

    /// SYN+FIN from `src`: dropped; the record's `block`; whether `src`
    /// is blocked now.
    fn forged(&mut self, src: [u8; 4]) -> (u8, bool) {
        assert_eq!(
            self.run(&syn_fin(src)),
            XDP_DROP,
            "the matching packet is dropped"
        );
        let blocks = self.blocks();
        assert_eq!(blocks.len(), 1, "one alert: {blocks:?}");
        (blocks[0], self.is_blocked(src))
    }
}

/// The three packets of a handshake: SYN (seq `isn`), SYN-ACK (seq
/// `server_isn`), and the final ACK acknowledging `final_ack`.
fn handshake(isn: u32, server_isn: u32, final_ack: u32) -> Vec<Vec<u8>> {
    vec![
        from_client(flags::SYN, isn, 0),
        from_server(flags::SYN | flags::ACK, server_isn, isn.wrapping_add(1)),
        from_client(flags::ACK, isn.wrapping_add(1), final_ack),
    ]
}

fn skip_unless_bpf(test: &str) -> bool {
    !sensor::testing::bpf_available(test)
}

#[test]
fn a_completed_handshake_proves_the_client_and_its_match_blocks_it() {
    if skip_unless_bpf("a_completed_handshake_proves_the_client_and_its_match_blocks_it") {
        return;
    }
    let mut sensor = Sensor::proven();
    sensor.pass_all(&handshake(1000, 5000, 5001));
    assert_eq!(sensor.counters().proofs, 1);
    assert_eq!(sensor.forged(CLIENT), (block::BLOCKED, true));
    // Blocked: its next packets are dropped before any rule.
    assert_eq!(sensor.run(&from_client(flags::ACK, 1001, 5001)), XDP_DROP);
    let counters = sensor.counters();
    assert_eq!(counters.blocks, [1, 0, 0], "{counters:?}");
    assert_eq!(counters.dropped_blocked_source, 1, "{counters:?}");
    assert_eq!(counters.refused_not_proven, 0, "{counters:?}");
}

#[test]
fn a_forged_source_is_dropped_packet_by_packet_never_blocked() {
    if skip_unless_bpf("a_forged_source_is_dropped_packet_by_packet_never_blocked") {
        return;
    }
    let mut sensor = Sensor::proven();
    // The server's address never proved itself: its forged packet is
    // dropped, the server is not blocked.
    assert_eq!(sensor.forged(SERVER), (block::NOT_PROVEN, false));
    for seq in 0..20 {
        assert_eq!(sensor.run(&from_server(flags::ACK, seq, 1)), XDP_PASS);
    }
    // A rule that never blocks says so, whatever the proof.
    assert_eq!(sensor.run(&from_server(flags::URG, 1, 0)), XDP_DROP);
    assert_eq!(sensor.blocks(), vec![block::DROP_ONLY]);
    let counters = sensor.counters();
    assert_eq!(counters.refused_not_proven, 1, "{counters:?}");
    assert_eq!(counters.blocks, [0, 0, 0], "{counters:?}");
    assert_eq!(counters.proofs, 0, "{counters:?}");
}

#[test]
fn a_wrong_final_ack_proves_nothing_and_ends_the_handshake() {
    if skip_unless_bpf("a_wrong_final_ack_proves_nothing_and_ends_the_handshake") {
        return;
    }
    let mut sensor = Sensor::proven();
    for wrong in [5000, 5002, 0] {
        sensor.pass_all(&handshake(1000, 5000, wrong));
    }
    // A guess that misses is not followed by a second guess: the right ACK
    // after a wrong one proves nothing either.
    sensor.pass_all(&handshake(2000, 6000, 6002));
    sensor.pass_all(&[from_client(flags::ACK, 2001, 6001)]);
    assert_eq!(sensor.counters().proofs, 0);
    // An ACK for a SYN-ACK never seen proves nothing; nor does the SYN-ACK
    // of a SYN never seen, nor one that does not acknowledge the SYN.
    sensor.pass_all(&[
        from_client(flags::SYN, 3000, 0),
        from_client(flags::ACK, 3001, 1),
        from_server(flags::SYN | flags::ACK, 7000, 9999),
        from_client(flags::ACK, 3001, 7001),
    ]);
    assert_eq!(sensor.counters().proofs, 0);
    assert_eq!(sensor.forged(CLIENT), (block::NOT_PROVEN, false));
}

#[test]
fn sequence_numbers_wrap_around() {
    if skip_unless_bpf("sequence_numbers_wrap_around") {
        return;
    }
    let mut sensor = Sensor::proven();
    // The client's ISN + 1 and the server's ISN + 1 both wrap to 0.
    sensor.pass_all(&handshake(u32::MAX, u32::MAX, 0));
    assert_eq!(sensor.counters().proofs, 1);
    assert_eq!(sensor.forged(CLIENT), (block::BLOCKED, true));
    // And an ACK of 2^32 (no wrap) does not prove.
    let mut sensor = Sensor::proven();
    let mut frames = handshake(u32::MAX, u32::MAX, 0);
    frames[2] = from_client(flags::ACK, 0, u32::MAX);
    sensor.pass_all(&frames);
    assert_eq!(sensor.counters().proofs, 0);
}

#[test]
fn a_retransmitted_syn_ack_still_proves_a_conflicting_one_does_not() {
    if skip_unless_bpf("a_retransmitted_syn_ack_still_proves_a_conflicting_one_does_not") {
        return;
    }
    let mut sensor = Sensor::proven();
    let syn_ack = from_server(flags::SYN | flags::ACK, 5000, 1001);
    sensor.pass_all(&[
        from_client(flags::SYN, 1000, 0),
        syn_ack.clone(),
        // Retransmitted SYN, then SYN-ACK: same numbers.
        from_client(flags::SYN, 1000, 0),
        syn_ack,
        from_client(flags::ACK, 1001, 5001),
    ]);
    assert_eq!(sensor.counters().proofs, 1);

    // A second SYN-ACK with another sequence number (a forged one raced
    // the real one): neither can be trusted, no ACK proves.
    let mut sensor = Sensor::proven();
    sensor.pass_all(&[
        from_client(flags::SYN, 1000, 0),
        from_server(flags::SYN | flags::ACK, 5000, 1001),
        from_server(flags::SYN | flags::ACK, 9000, 1001),
        from_client(flags::ACK, 1001, 5001),
        from_client(flags::ACK, 1001, 9001),
    ]);
    assert_eq!(sensor.counters().proofs, 0);
    assert_eq!(sensor.forged(CLIENT), (block::NOT_PROVEN, false));
}

#[test]
fn a_proof_ends_after_proof_seconds() {
    if skip_unless_bpf("a_proof_ends_after_proof_seconds") {
        return;
    }
    let policy = BlockPolicy {
        proof_ns: 1_000_000_000,
        ..BlockPolicy::DEFAULT
    };
    let mut sensor = Sensor::new(policy, false, &[]);
    sensor.pass_all(&handshake(1000, 5000, 5001));
    assert_eq!(sensor.counters().proofs, 1);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(sensor.forged(CLIENT), (block::NOT_PROVEN, false));
    // A fresh handshake proves it again.
    sensor.pass_all(&handshake(2000, 6000, 6001));
    assert_eq!(sensor.forged(CLIENT), (block::BLOCKED, true));
    // A handshake whose final ACK comes after proof_seconds proves nothing.
    let mut sensor = Sensor::new(policy, false, &[]);
    let frames = handshake(1000, 5000, 5001);
    sensor.pass_all(&frames[..2]);
    std::thread::sleep(Duration::from_millis(1_100));
    sensor.pass_all(&frames[2..]);
    assert_eq!(sensor.counters().proofs, 0);
}

#[test]
fn repeated_blocks_on_the_count_th_match_first_match_on_the_first() {
    if skip_unless_bpf("repeated_blocks_on_the_count_th_match_first_match_on_the_first") {
        return;
    }
    let repeated = BlockPolicy {
        block_when: block_when::REPEATED,
        ..BlockPolicy::DEFAULT
    };
    let mut sensor = Sensor::new(repeated, false, &[]);
    assert_eq!(sensor.forged(SERVER), (block::NOT_REPEATED, false));
    assert_eq!(sensor.forged(SERVER), (block::NOT_REPEATED, false));
    assert_eq!(sensor.forged(SERVER), (block::BLOCKED, true));
    let counters = sensor.counters();
    assert_eq!(counters.refused_not_repeated, 2, "{counters:?}");
    assert_eq!(counters.blocks, [0, 1, 0], "{counters:?}");

    // The window: matches further apart than window_seconds never add up.
    let mut sensor = Sensor::new(
        BlockPolicy {
            repeat_count: 2,
            repeat_window_ns: 500_000_000,
            ..repeated
        },
        false,
        &[],
    );
    assert_eq!(sensor.forged(SERVER), (block::NOT_REPEATED, false));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(sensor.forged(SERVER), (block::NOT_REPEATED, false));
    assert_eq!(sensor.forged(SERVER), (block::BLOCKED, true));

    let first_match = BlockPolicy {
        block_when: block_when::FIRST_MATCH,
        ..BlockPolicy::DEFAULT
    };
    let mut sensor = Sensor::new(first_match, false, &[]);
    assert_eq!(sensor.forged(SERVER), (block::BLOCKED, true));
    assert_eq!(sensor.counters().blocks, [0, 0, 1]);
}

#[test]
fn the_allowlist_and_dry_run_hold_in_every_mode() {
    if skip_unless_bpf("the_allowlist_and_dry_run_hold_in_every_mode") {
        return;
    }
    for mode in [
        block_when::PROVEN,
        block_when::REPEATED,
        block_when::FIRST_MATCH,
    ] {
        let policy = BlockPolicy {
            block_when: mode,
            repeat_count: 1,
            ..BlockPolicy::DEFAULT
        };
        // Allowlisted and proven: never dropped, never blocked, no `block`.
        let mut sensor = Sensor::new(policy, false, &["192.0.2.0/24"]);
        sensor.pass_all(&handshake(1000, 5000, 5001));
        assert_eq!(sensor.counters().proofs, 1, "mode {mode}");
        for _ in 0..3 {
            assert_eq!(sensor.run(&syn_fin(CLIENT)), XDP_PASS, "mode {mode}");
        }
        assert_eq!(sensor.blocks(), vec![block::NONE; 3], "mode {mode}");
        assert!(!sensor.is_blocked(CLIENT), "mode {mode}");

        // Dry run, proven: nothing dropped, nothing blocked; the record
        // says the source would have been blocked.
        let mut sensor = Sensor::new(policy, true, &[]);
        sensor.pass_all(&handshake(1000, 5000, 5001));
        assert_eq!(sensor.run(&syn_fin(CLIENT)), XDP_PASS, "mode {mode}");
        assert_eq!(sensor.blocks(), vec![block::DRY_RUN], "mode {mode}");
        assert!(!sensor.is_blocked(CLIENT), "mode {mode}");
        let counters = sensor.counters();
        assert_eq!(
            (counters.dropped, counters.would_drop),
            (0, 1),
            "mode {mode}"
        );
        assert_eq!(counters.blocks, [0, 0, 0], "mode {mode}");
    }
}

#[test]
fn ids_mode_follows_no_handshake() {
    if skip_unless_bpf("ids_mode_follows_no_handshake") {
        return;
    }
    let mut kernel = Kernel::load().expect("load the XDP program");
    kernel
        .write_rules(&compile_yaml(RULES), SensorMode::Ids)
        .expect("rules");
    for frame in handshake(1000, 5000, 5001) {
        assert_eq!(kernel.test_run(&frame).expect("test run"), XDP_PASS);
    }
    assert_eq!(
        kernel.test_run(&syn_fin(CLIENT)).expect("test run"),
        XDP_PASS
    );
    let counters = kernel.counters().expect("counters");
    assert_eq!(counters.proofs, 0, "{counters:?}");
    assert!(kernel.proven_sources().expect("PROVEN").is_empty());
}
