//! Differential test: generated frames through the real XDP program
//! (BPF_PROG_TEST_RUN) and through replay's parser and rule logic
//! (`parse_ethernet` + `detect::process` over `MemoryTables` and
//! `MemoryState`), compared frame by frame.
//!
//! Per frame: the XDP verdict, the parsed `PacketMeta` (the kernel's comes
//! from its inspect path, enabled with no filter and no budget limit), and
//! every alert record (all fields but `cpu`, plus the captured frame bytes).
//! Per epoch: the per-rule hit/alert counters and the global counters.
//!
//! Time: the kernel reads its (coarse) clock once per IP packet and puts
//! it in the inspect record (`clock_ns`); replay evaluates the frame at
//! exactly that time, so rate limits (per second) and `syn_flood` windows
//! (milliseconds) are compared exactly. An alert record's own timestamp is
//! the precise time it was sent: checked to lie within a second after that
//! clock, then compared as that clock. The test thread is pinned to one CPU, because the
//! rate-limit state is per CPU in the kernel and single in replay.
//!
//! The kernel glue around the shared code (drop mode: allowlist, static
//! blocklist, blocked sources, dry run, handshake watching and the blocking
//! counters) is modelled here in a few lines. Batches cycle through the
//! three `block_when` modes, and the generator completes TCP handshakes
//! (right and wrong final ACKs, conflicting SYN-ACKs) between the random
//! frames, so proofs and the blocks they allow are compared too.
//!
//! `DIFFTEST_FRAMES` (default 100,000) and `DIFFTEST_SEED` choose the run;
//! `scripts/difftest.sh N [SEED]` drives it. The last line printed is
//! `difftest: N frames, D disagreements`.

mod support;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use aya::maps::MapData;
use aya::maps::perf::{PerfEvent, PerfEventArrayBuffer};
use ipnet::IpNet;
use sensor::kernel::loader::{Counters, Kernel};
use sensor::kernel::perf::{AlertSample, Sample as _};
use sensor::replay::state::MemoryState;
use sensor::rules::{CompiledRules, MemoryTables};
use sensor::settings::{DropPolicy, SensorMode};
use sensor::testing::frames::{self, Ipv4};
use sensor_common::alert::{
    AlertRecord, DEFAULT_ALERT_PACKET_BYTES, aggregate, block, captured_len, outcome,
};
use sensor_common::detect::{AlertHead, process};
use sensor_common::filter::{FilterProgram, InspectRecord};
use sensor_common::packet::{AddrKey, PacketMeta};
use sensor_common::parse::{parse_ethernet, peek_source};
use sensor_common::proof::{observe, seen};
use sensor_common::tables::{ALERT_BUDGET, BlockPolicy, HandshakeKey, block_when, kind};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Frames per epoch: each epoch loads a fresh program and starts replay
/// from fresh state, which keeps the per-source maps far from their LRU
/// limits (the kernel's and replay's evictions are not the same).
const EPOCH: u64 = 100_000;
/// Frames per batch: between batches the blocked sources are cleared (so
/// drop rules keep being evaluated) and dry run is toggled.
const BATCH: u64 = 1_000;
/// Where in each epoch an alert storm starts: [`ALERT_BUDGET`] +
/// [`STORM_EXTRA`] SYN+FIN frames from new sources, back to back (well
/// inside a second), so the CPU's alert budget runs out and the rules'
/// storm accounts are compared too.
const STORM_AT: u64 = EPOCH / 2;
const STORM_EXTRA: u64 = 300;
/// Perf ring pages per CPU (alerts and inspect records are drained after
/// every frame; this only has to hold one frame's worth).
const PERF_PAGES: usize = 16;

/// Shipped rules plus scoped, stateful and drop rules over the addresses
/// the generator draws from.
const EXTRA_RULES: &str = r#"
rules:
  - id: 900001
    name: syn flood by dst, fast
    severity: high
    match: { syn_flood: { track: by_dst, threshold: 4, window_ms: 2 } }
  - id: 900002
    name: syn flood by src, drop
    severity: high
    action: drop
    block_seconds: 3600
    scope: { src: [192.0.2.0/28, "2001:db8::/124"] }
    match: { syn_flood: { track: by_src, threshold: 3, window_ms: 5 } }
  - id: 900003
    name: syn flood by dst, drop without block
    severity: high
    action: drop
    block_seconds: 0
    scope: { dst: [198.51.100.50, "2001:db8:ff::50"] }
    match: { syn_flood: { track: by_dst, threshold: 6, window_ms: 3 } }
  - id: 900004
    name: deviation 2, narrow scope
    severity: low
    scope: { src: [192.0.2.0/27, "2001:db8::/120"] }
    match: { ttl: { deviation: 2 } }
  - id: 900005
    name: deviation 0, any protocol (learns from TCP, compares everything)
    severity: low
    scope: { protocol: any }
    match: { ttl: { deviation: 0 } }
  - id: 900006
    name: FIN without ACK to ssh/http, drop
    severity: medium
    action: drop
    block_seconds: 3600
    scope: { protocol: tcp, dst_ports: [22, 80] }
    match: { tcp_flags: { set: [FIN], clear: [ACK] } }
  - id: 900007
    name: RST on vlan 10/20
    severity: low
    scope: { vlan: [10, 20] }
    match: { tcp_flags: { set: [RST] } }
  - id: 900008
    name: PSH from 198.51.100.0/25 to 192.0.2.100
    severity: low
    scope: { src: [198.51.100.0/25], dst: [192.0.2.100] }
    match: { tcp_flags: { set: [PSH] } }
  - id: 900009
    name: ttl above 200 on vlan 100
    severity: low
    scope: { vlan: [100] }
    match: { ttl: { above: 200 } }
  - id: 900010
    name: ttl below 40 icmp
    severity: low
    scope: { protocol: icmp }
    match: { ttl: { below: 40 } }
  - id: 900011
    name: ttl below 40 icmpv6, drop
    severity: low
    action: drop
    scope: { protocol: icmpv6 }
    match: { ttl: { below: 40 } }
  - id: 900012
    name: tiny first fragment below 100 to dst 2001:db8:ff::/48
    severity: medium
    scope: { dst: ["2001:db8:ff::/48", 192.0.2.0/24] }
    match: { fragment: { tiny_first_below: 100 } }
  - id: 900013
    name: tiny first fragment below 9
    severity: medium
    action: drop
    block_seconds: 3600
    match: { fragment: { tiny_first_below: 9 } }
  - id: 900014
    name: zero port udp to 53
    severity: low
    scope: { protocol: udp, dst_ports: [53, 0] }
    match: { header: { check: zero_port } }
  - id: 900015
    name: land, drop
    severity: high
    action: drop
    block_seconds: 3600
    scope: { src: [192.0.2.0/24, "2001:db8::/32"] }
    match: { header: { check: land } }
  - id: 900016
    name: martian any, vlan 20
    severity: low
    scope: { vlan: [20] }
    match: { header: { check: martian_src } }
  - id: 900017
    name: disabled rule
    severity: low
    enabled: false
    match: { tcp_flags: { set: [SYN] } }
  - id: 900018
    name: SYN ECE CWR from nested prefix
    severity: low
    scope: { src: [198.51.100.0/24, 198.51.100.0/26, 198.51.100.7] }
    match: { tcp_flags: { set: [SYN, ECE] } }
  - id: 900019
    name: any ACK to 443 from v6
    severity: low
    scope: { src: ["2001:db8::/32"], dst_ports: [443] }
    match: { tcp_flags: { set: [ACK] } }
  - id: 900021
    name: syn flood by dst, long window (alerts however slow the machine)
    severity: high
    match: { syn_flood: { track: by_dst, threshold: 50, window_ms: 600000 } }
  - id: 900020
    name: bad tcp offset, drop
    severity: medium
    action: drop
    block_seconds: 3600
    match: { header: { check: bad_tcp_offset } }
  - id: 900022
    name: IPv6 routing type 0
    severity: medium
    match: { header: { check: ipv6_routing_type0 } }
  - id: 900023
    name: IPv6 duplicate extension header, drop
    severity: medium
    action: drop
    block_seconds: 3600
    match: { header: { check: ipv6_duplicate_ext_header } }
  - id: 900024
    name: IPv6 hop-by-hop not first
    severity: low
    scope: { protocol: tcp }
    match: { header: { check: ipv6_hop_by_hop_not_first } }
  - id: 900025
    name: IPv4 source route
    severity: medium
    match: { header: { check: ipv4_source_route } }
  - id: 900026
    name: IPv4 malformed option
    severity: low
    match: { header: { check: ipv4_option_malformed } }
  - id: 900027
    name: TCP malformed option
    severity: low
    match: { header: { check: tcp_option_malformed } }
  - id: 900028
    name: flood of bare ACKs by dst
    severity: medium
    match: { flood: { packets: ack, track: by_dst, threshold: 3, window_ms: 4 } }
  - id: 900029
    name: flood of RSTs by src, drop
    severity: medium
    action: drop
    block_seconds: 3600
    scope: { src: [192.0.2.0/28, "2001:db8::/124"] }
    match: { flood: { packets: rst, track: by_src, threshold: 2, window_ms: 5 } }
  - id: 900030
    name: flood of FINs by dst
    severity: low
    match: { flood: { packets: fin, track: by_dst, threshold: 3, window_ms: 3 } }
  - id: 900031
    name: UDP bytes by dst, drop without block
    severity: medium
    action: drop
    block_seconds: 0
    match: { flood: { packets: udp, track: by_dst, bytes: 400, window_ms: 3 } }
  - id: 900032
    name: ICMP by dst, packets or bytes
    severity: low
    match: { flood: { packets: icmp, track: by_dst, threshold: 4, bytes: 300, window_ms: 5 } }
  - id: 900033
    name: fragments by src
    severity: low
    match: { flood: { packets: fragment, track: by_src, threshold: 3, window_ms: 5 } }
  - id: 900034
    name: any packet by dst, long window
    severity: low
    scope: { dst: [198.51.100.50, "2001:db8:ff::50"] }
    match: { flood: { packets: any, track: by_dst, threshold: 500, window_ms: 600000 } }
  - id: 900035
    name: reflected UDP from 53 by dst
    severity: high
    scope: { protocol: udp, src_ports: [53, 80] }
    match: { flood: { packets: udp, track: by_dst, threshold: 2, window_ms: 5 } }
  - id: 900036
    name: syn flood as a flood, by src
    severity: low
    match: { flood: { packets: syn, track: by_src, threshold: 5, window_ms: 2 } }
  - id: 900037
    name: port scan, small
    severity: low
    match: { scan: { track: by_src, distinct: ports, threshold: 3, window_ms: 5 } }
  - id: 900038
    name: host scan, drop
    severity: low
    action: drop
    block_seconds: 3600
    scope: { src: [192.0.2.0/28, "2001:db8::/124"] }
    match: { scan: { track: by_src, distinct: hosts, threshold: 2, window_ms: 5 } }
  - id: 900039
    name: adaptive UDP by dst
    severity: low
    match: { flood: { packets: udp, track: by_dst, window_ms: 3, adaptive: { factor: 1.5, min: 2, learn_windows: 2 } } }
"#;

/// splitmix64: a tiny seeded generator (no dependency, same stream everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

// ---- the generator ---------------------------------------------------------

/// A frame and the offsets where its layers start (for truncation).
struct Built {
    frame: Vec<u8>,
    layers: Vec<usize>,
}

fn v4_source(rng: &mut Rng) -> [u8; 4] {
    match rng.below(100) {
        0..=39 => [192, 0, 2, 1 + rng.below(20) as u8],
        40..=64 => [198, 51, 100, rng.pick(&[1, 5, 7, 60, 64, 100, 130, 200])],
        65..=84 => [203, 0, 113, 1 + rng.below(10) as u8],
        85..=89 => rng.pick(&[[127, 0, 0, 1], [0, 1, 2, 3], [224, 0, 0, 5], [255; 4]]),
        _ => [10, rng.byte(), rng.byte(), rng.byte()],
    }
}

fn v4_dest(rng: &mut Rng) -> [u8; 4] {
    rng.pick(&[
        [192, 0, 2, 100],
        [198, 51, 100, 50],
        [203, 0, 113, 9],
        [192, 0, 2, 3],
    ])
}

fn v6_source(rng: &mut Rng) -> [u8; 16] {
    let mut a = frames::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]);
    match rng.below(100) {
        0..=49 => a[15] = 1 + rng.below(20) as u8,
        50..=69 => {
            a[5] = 1;
            a[15] = rng.byte();
        }
        70..=84 => {
            a[5] = 0xaa;
            a[15] = 1 + rng.below(8) as u8;
        }
        85..=89 => {
            a = rng.pick(&[
                frames::v6([0, 0, 0, 0, 0, 0, 0, 1]),
                frames::v6([0xff02, 0, 0, 0, 0, 0, 0, 1]),
                frames::v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
            ])
        }
        _ => a[8..].copy_from_slice(&rng.bytes(8)),
    }
    a
}

fn v6_dest(rng: &mut Rng) -> [u8; 16] {
    rng.pick(&[
        frames::v6([0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x50]),
        frames::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 3]),
        frames::v6([0x2001, 0xdb8, 0xff, 1, 0, 0, 0, 9]),
    ])
}

fn ttl(rng: &mut Rng) -> u8 {
    match rng.below(10) {
        0 => rng.pick(&[0, 1, 2, 39, 40, 200, 201, 255]),
        1 => rng.byte(),
        2..=4 => 64 - rng.below(12) as u8,
        5..=6 => 128 - rng.below(12) as u8,
        _ => 64,
    }
}

fn port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0 => 0,
        1..=6 => rng.pick(&[22, 53, 80, 443, 8080]),
        _ => rng.next() as u16,
    }
}

fn tcp_flags(rng: &mut Rng) -> u16 {
    use frames::flags::*;
    match rng.below(10) {
        0..=3 => SYN,
        4 => SYN | ACK,
        5 => rng.pick(&[
            0,
            FIN,
            FIN | ACK,
            RST,
            PSH | ACK,
            FIN | PSH | URG,
            SYN | FIN,
        ]),
        6 => rng.pick(&[SYN | 0x40, SYN | 0x40 | 0x80, ACK, RST | ACK]),
        _ => rng.below(512) as u16,
    }
}

/// The transport bytes for `proto`; `icmp6` picks the ICMPv6 flavour.
fn transport(rng: &mut Rng, proto: u8) -> Vec<u8> {
    let len = rng.pick(&[0, 0, 1, 8, 40, 90]);
    let payload = rng.bytes(len);
    match proto {
        6 => {
            let mut tcp = frames::tcp(
                port(rng),
                port(rng),
                tcp_flags(rng),
                rng.next() as u32,
                &payload,
            );
            if rng.chance(10) {
                // Options: NOPs, EOL, MSS, SACK, timestamps, window scale,
                // any byte (lengths among them); 4 to 40 bytes.
                let len = 4 * (1 + rng.below(10) as usize);
                let options: Vec<u8> = (0..len)
                    .map(|_| {
                        let any = rng.byte();
                        rng.pick(&[1, 1, 0, 2, 4, 8, 10, 3, any])
                    })
                    .collect();
                let flags = u16::from_be_bytes([tcp[12], tcp[13]]) & 0x1ff;
                let ports = [tcp[0], tcp[1], tcp[2], tcp[3]];
                tcp = frames::tcp_raw(
                    u16::from_be_bytes([ports[0], ports[1]]),
                    u16::from_be_bytes([ports[2], ports[3]]),
                    flags,
                    5 + (len / 4) as u8,
                    &options,
                    &payload,
                );
            }
            if rng.chance(8) {
                // Data offset anything, options or not.
                tcp[12] = (rng.below(16) as u8) << 4 | (tcp[12] & 0x0f);
            }
            tcp
        }
        17 => frames::udp(port(rng), port(rng), &payload),
        1 | 58 => {
            let mut icmp =
                frames::icmp_echo(rng.pick(&[8, 0, 128, 129, 3, 135]), rng.next() as u16, 1);
            icmp.extend_from_slice(&payload);
            icmp
        }
        _ => payload,
    }
}

fn ip_proto(rng: &mut Rng, v6: bool) -> u8 {
    match rng.below(20) {
        0..=11 => 6,
        12..=15 => 17,
        16..=17 => {
            if v6 {
                58
            } else {
                1
            }
        }
        18 => rng.pick(&[1, 58, 47, 50, 132]),
        _ => rng.byte(),
    }
}

fn ipv4_packet(rng: &mut Rng, layers: &mut Vec<usize>, base: usize) -> Vec<u8> {
    let proto = ip_proto(rng, false);
    let mut src = v4_source(rng);
    let dst = v4_dest(rng);
    if rng.chance(3) {
        src = dst;
    }
    let mut header = Ipv4::new(src, dst, proto).ttl(ttl(rng));
    header.id = rng.next() as u16;
    header.frag_field = match rng.below(20) {
        0..=9 => 0,
        10 => 0x4000,
        11..=12 => 0x2000,
        13 => 0x2000 | rng.below(0x2000) as u16,
        14 => 1 | rng.pick(&[0, 0x2000]),
        15 => rng.pick(&[0x1fff, 0x1ff0, 0x3fff]),
        16 => 0x8000 | rng.pick(&[0, 0x2000, 0x4000]),
        17 => 0x6000 | rng.below(4) as u16,
        _ => rng.next() as u16,
    };
    if rng.chance(15) {
        // Options: NOPs, an EOL, timestamp, record and source routes, any
        // byte (lengths among them); up to 40 bytes.
        let len = 1 + rng.below(40) as usize;
        header.options = (0..len)
            .map(|_| {
                let any = rng.byte();
                rng.pick(&[1, 1, 0, 68, 7, 4, 131, 137, 8, any])
            })
            .collect();
    }
    if rng.chance(4) {
        header.ihl = Some(rng.below(16) as u8);
    }
    let body = transport(rng, proto);
    if rng.chance(4) {
        header.total_len = Some(match rng.below(3) {
            0 => rng.below(20) as u16,
            1 => (20 + header.options.len() + body.len() + 1 + rng.below(40) as usize) as u16,
            _ => rng.next() as u16,
        });
    }
    let packet = header.build(&body);
    let header_len = packet.len() - body.len();
    layers.push(base + header_len);
    packet
}

fn ipv6_packet(rng: &mut Rng, layers: &mut Vec<usize>, base: usize) -> Vec<u8> {
    let proto = ip_proto(rng, true);
    let mut src = v6_source(rng);
    let dst = v6_dest(rng);
    if rng.chance(3) {
        src = dst;
    }
    // Extension headers, built from the inside out.
    let count = match rng.below(10) {
        0..=4 => 0,
        5..=7 => 1 + rng.below(3),
        8 => 3 + rng.below(4),
        _ => 14 + rng.below(5),
    };
    let mut kinds: Vec<u8> = (0..count).map(|_| rng.pick(&[0, 43, 60, 51, 44])).collect();
    if rng.chance(10) && !kinds.contains(&44) {
        kinds.push(44);
    }
    let mut next = proto;
    let mut body = transport(rng, proto);
    let mut sizes = Vec::new();
    for &kind in kinds.iter().rev() {
        let header = match kind {
            44 => {
                let offset = match rng.below(6) {
                    0..=2 => 0,
                    3 => 1,
                    4 => rng.pick(&[8100, 8191]),
                    _ => rng.below(8192) as u16,
                };
                let more = rng.chance(60);
                let mut h = frames::ipv6_fragment(next, offset, more, rng.next() as u32, &[]);
                if rng.chance(10) {
                    h[3] |= rng.below(8) as u8 & 0x6;
                }
                h
            }
            51 => {
                let len_field = rng.pick(&[1, 2, 4]);
                let mut h = vec![next, len_field];
                h.extend(rng.bytes((len_field as usize + 2) * 4 - 2));
                h
            }
            _ => {
                let len_field = rng.pick(&[0, 0, 1, 3]);
                let mut h = vec![next, len_field];
                h.extend(rng.bytes((len_field as usize + 1) * 8 - 2));
                if kind == 43 && rng.chance(30) {
                    // A routing type of 0 (RFC 5095) or its neighbours.
                    h[2] = rng.pick(&[0, 0, 2, 4]);
                }
                h
            }
        };
        sizes.push(header.len());
        next = kind;
        let mut chained = header;
        chained.extend_from_slice(&body);
        body = chained;
    }
    let mut packet = frames::ipv6(src, dst, ttl(rng), next, &body);
    if rng.chance(4) {
        let len = match rng.below(2) {
            0 => rng.below(body.len() as u64 + 1) as u16,
            _ => rng.next() as u16,
        };
        packet[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let mut at = base + 40;
    layers.push(at);
    for size in sizes.iter().rev() {
        at += size;
        layers.push(at);
    }
    packet
}

/// A well-formed-ish frame: any tag stack, IPv4 or IPv6 or something else.
fn valid_frame(rng: &mut Rng) -> Built {
    let tags: Vec<(u16, u16)> = match rng.below(10) {
        0..=5 => Vec::new(),
        6..=7 => {
            let any = rng.below(4096) as u16;
            vec![(0x8100, rng.pick(&[10, 20, 100, 4095, any]))]
        }
        8 => vec![
            (rng.pick(&[0x88a8, 0x9100]), rng.pick(&[10, 100, 7])),
            (0x8100, rng.pick(&[20, 100])),
        ],
        _ => (0..3 + rng.below(3))
            .map(|_| (rng.pick(&[0x8100, 0x88a8, 0x9100]), rng.below(4096) as u16))
            .collect(),
    };
    let base = 14 + 4 * tags.len();
    let mut layers = vec![12, base];
    let (ethertype, payload) = match rng.below(20) {
        0..=10 => (frames::ETH_IPV4, ipv4_packet(rng, &mut layers, base)),
        11..=18 => (frames::ETH_IPV6, ipv6_packet(rng, &mut layers, base)),
        _ => (rng.pick(&[0x0806, 0x88cc, 0x8100]), {
            let len = rng.below(60) as usize;
            rng.bytes(len)
        }),
    };
    let mut frame = frames::ethernet(&tags, ethertype, &payload);
    if rng.chance(10) && frame.len() < 60 {
        frame = frames::pad_to(frame, 60);
    }
    Built { frame, layers }
}

/// A frame carrying a tunnel (VXLAN, GENEVE, GRE with its optional
/// fields, ERSPAN II / III, IP-in-IP) around a generated inner packet, now
/// and then with a wrong flag, version, port or protocol; its layers
/// include the inner packet's, so that truncation cuts inside it too.
fn tunnel_frame(rng: &mut Rng) -> Built {
    use frames::tunnel::*;
    let tags: Vec<(u16, u16)> = if rng.chance(20) {
        vec![(0x8100, 100)]
    } else {
        Vec::new()
    };
    let base = 14 + 4 * tags.len();
    let outer_v6 = rng.chance(30);
    let l4 = base + if outer_v6 { 40 } else { 20 };
    let mut layers = vec![12, base, l4];
    let kind = rng.below(6);
    // About where the inner packet starts (GENEVE options and GRE's
    // optional fields move it; layers are only where cuts are tried).
    let header_len = match kind {
        0..=1 | 3..=4 => 16,
        2 => 4,
        _ => 0,
    };
    let inner_at = l4 + header_len;
    let mut inner_layers = Vec::new();
    let ethernet_inner = |rng: &mut Rng, layers: &mut Vec<usize>| {
        let built = valid_frame(rng);
        layers.extend(built.layers.iter().map(|at| at + inner_at));
        built.frame
    };
    let ip_inner = |rng: &mut Rng, layers: &mut Vec<usize>, v6: bool| {
        if v6 {
            ipv6_packet(rng, layers, inner_at)
        } else {
            ipv4_packet(rng, layers, inner_at)
        }
    };
    let (proto, payload) = match kind {
        0 => {
            let flags = rng.pick(&[0x08, 0x08, 0x08, 0x0c, 0x00]);
            let inner = ethernet_inner(rng, &mut inner_layers);
            let port = rng.pick(&[4789, 4789, 4789, 4790]);
            (
                17,
                frames::udp(
                    rng.next() as u16 | 1,
                    port,
                    &vxlan(flags, rng.next() as u32 & 0xffffff, &inner),
                ),
            )
        }
        1 => {
            let version = rng.pick(&[0, 0, 0, 1]);
            let words = rng.below(4) as usize;
            let options = rng.bytes(4 * words);
            let protocol = rng.pick(&[TEB, TEB, frames::ETH_IPV4, frames::ETH_IPV6, 0x0806]);
            let inner = match protocol {
                TEB | 0x0806 => ethernet_inner(rng, &mut inner_layers),
                p => ip_inner(rng, &mut inner_layers, p == frames::ETH_IPV6),
            };
            let body = geneve(
                version,
                &options,
                protocol,
                rng.next() as u32 & 0xffffff,
                &inner,
            );
            (17, frames::udp(rng.next() as u16 | 1, 6081, &body))
        }
        2 => {
            let flags = rng.pick(&[
                0,
                GRE_KEY,
                GRE_SEQUENCE,
                GRE_CHECKSUM | GRE_KEY | GRE_SEQUENCE,
                0x4000,
                1,
            ]) | rng.pick(&[0, 0, 0, 0x0080]);
            let protocol = rng.pick(&[frames::ETH_IPV4, frames::ETH_IPV6, TEB, 0x880b]);
            let inner = match protocol {
                TEB | 0x880b => ethernet_inner(rng, &mut inner_layers),
                p => ip_inner(rng, &mut inner_layers, p == frames::ETH_IPV6),
            };
            (47, gre(flags, protocol, rng.next() as u32, &inner))
        }
        3 => {
            let inner = ethernet_inner(rng, &mut inner_layers);
            let flags = rng.pick(&[GRE_SEQUENCE, GRE_SEQUENCE, GRE_SEQUENCE | GRE_KEY, 0]);
            let version = rng.pick(&[1, 1, 1, 2]);
            (
                47,
                gre(
                    flags,
                    ERSPAN2,
                    7,
                    &erspan2(version, rng.next() as u16, &inner),
                ),
            )
        }
        4 => {
            let inner = ethernet_inner(rng, &mut inner_layers);
            let version = rng.pick(&[2, 2, 2, 1]);
            let frame_type = rng.pick(&[0, 0, 0, 2]);
            let body = erspan3(
                version,
                rng.next() as u16,
                frame_type,
                rng.chance(50),
                &inner,
            );
            (47, gre(0, ERSPAN3, 0, &body))
        }
        _ => {
            let inner_v6 = rng.chance(50);
            let inner = ip_inner(rng, &mut inner_layers, inner_v6);
            // Now and then the wrong protocol for the inner version.
            let proto = if inner_v6 != rng.chance(10) { 41 } else { 4 };
            (proto, inner)
        }
    };
    layers.extend(inner_layers);
    let packet = if outer_v6 {
        frames::ipv6(v6_source(rng), v6_dest(rng), ttl(rng), proto, &payload)
    } else {
        let mut header = Ipv4::new(v4_source(rng), v4_dest(rng), proto).ttl(ttl(rng));
        if rng.chance(5) {
            header.frag_field = 0x2000;
        }
        header.build(&payload)
    };
    let ethertype = if outer_v6 {
        frames::ETH_IPV6
    } else {
        frames::ETH_IPV4
    };
    Built {
        frame: frames::ethernet(&tags, ethertype, &packet),
        layers,
    }
}

/// The next frame: valid, truncated at a layer, mutated, or random bytes.
/// Frame `i` of an alert storm: SYN+FIN from 2001:db8:5::/64, one source each.
fn storm_frame(i: u64) -> Vec<u8> {
    let src = frames::v6([0x2001, 0xdb8, 5, 0, 0, 0, (i >> 16) as u16, i as u16]);
    let dst = frames::v6([0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 10]);
    let tcp = frames::tcp(40000, 80, frames::flags::SYN | frames::flags::FIN, 1, &[]);
    frames::ethernet(&[], frames::ETH_IPV6, &frames::ipv6(src, dst, 64, 6, &tcp))
}

fn next_frame(rng: &mut Rng, recent: &mut Vec<Vec<u8>>) -> Vec<u8> {
    let roll = rng.below(100);
    let mut frame = if roll < 45 {
        valid_frame(rng).frame
    } else if roll < 55 {
        tunnel_frame(rng).frame
    } else if roll < 75 {
        // Truncated at (or just around) a layer boundary, or anywhere.
        let built = if rng.chance(25) {
            tunnel_frame(rng)
        } else {
            valid_frame(rng)
        };
        let cut = if rng.chance(75) {
            let at = rng.pick(&built.layers) as i64 + rng.below(5) as i64 - 2;
            at.max(0) as usize
        } else {
            rng.below(built.frame.len() as u64 + 1) as usize
        };
        let mut frame = built.frame;
        frame.truncate(cut);
        frame
    } else if roll < 97 && !recent.is_empty() {
        // A recent frame with a few bytes changed, inserted or removed.
        let mut frame = recent[rng.below(recent.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(4) {
            if frame.is_empty() {
                break;
            }
            let at = rng.below(frame.len() as u64) as usize;
            match rng.below(6) {
                0..=2 => frame[at] = rng.byte(),
                3 => frame[at] ^= 1 << rng.below(8),
                4 => frame.insert(at, rng.byte()),
                _ => {
                    frame.remove(at);
                }
            }
        }
        frame
    } else {
        let len = rng.below(200) as usize;
        let mut frame = rng.bytes(len);
        if len >= 14 && rng.chance(50) {
            frame[12..14].copy_from_slice(&rng.pick(&[0x0800u16, 0x86dd, 0x8100]).to_be_bytes());
        }
        frame
    };
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    if frame.len() < 14 {
        frame.resize(14, 0);
    }
    if recent.len() < 64 {
        recent.push(frame.clone());
    } else {
        let slot = rng.below(64) as usize;
        recent[slot] = frame.clone();
    }
    frame
}

/// Batch `n`'s blocking policy: the three `block_when` modes in turn (with
/// small numbers, so `repeated` blocks within a batch).
fn block_policy(n: u64) -> BlockPolicy {
    let block_when = [
        block_when::PROVEN,
        block_when::REPEATED,
        block_when::FIRST_MATCH,
    ][(n % 3) as usize];
    BlockPolicy {
        block_when,
        repeat_count: 2,
        repeat_window_ns: 2_000_000,
        ..BlockPolicy::DEFAULT
    }
}

/// A TCP handshake between generator addresses, then a SYN+FIN from its
/// client (rule 900006 drops it on ports 22 and 80). Mostly right;
/// sometimes a wrong final ACK, a conflicting SYN-ACK, wrapped sequence
/// numbers, or a VLAN tag.
fn handshake(rng: &mut Rng) -> Vec<Vec<u8>> {
    let client = v4_source(rng);
    let server = v4_dest(rng);
    let (cport, sport) = (port(rng), rng.pick(&[22, 80, 443]));
    let isn = if rng.chance(10) {
        u32::MAX
    } else {
        rng.next() as u32
    };
    let server_isn = if rng.chance(10) {
        u32::MAX
    } else {
        rng.next() as u32
    };
    let tags: Vec<(u16, u16)> = if rng.chance(20) {
        vec![(0x8100, 10)]
    } else {
        Vec::new()
    };
    let seg = |src: [u8; 4], dst: [u8; 4], ports: (u16, u16), f: u16, seq: u32, ack: u32| {
        let mut tcp = frames::tcp(ports.0, ports.1, f, seq, &[]);
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        frames::ethernet(&tags, frames::ETH_IPV4, &Ipv4::new(src, dst, 6).build(&tcp))
    };
    use frames::flags::*;
    let mut out = vec![
        seg(client, server, (cport, sport), SYN, isn, 0),
        seg(
            server,
            client,
            (sport, cport),
            SYN | ACK,
            server_isn,
            isn.wrapping_add(1),
        ),
    ];
    if rng.chance(10) {
        out.push(seg(
            server,
            client,
            (sport, cport),
            SYN | ACK,
            server_isn ^ 1,
            isn.wrapping_add(1),
        ));
    }
    let final_ack = if rng.chance(15) {
        server_isn.wrapping_add(2)
    } else {
        server_isn.wrapping_add(1)
    };
    out.push(seg(
        client,
        server,
        (cport, sport),
        ACK,
        isn.wrapping_add(1),
        final_ack,
    ));
    out.push(seg(client, server, (cport, sport), SYN | FIN, isn, 0));
    out
}

// ---- the two sides ---------------------------------------------------------

/// What one side made of one frame.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    verdict: u32,
    /// The parsed fields (IP frames that reach the parser only).
    parsed: Option<PacketMeta>,
    /// Alert records with `cpu` zeroed, each with its captured bytes.
    alerts: Vec<(AlertRecord, Vec<u8>)>,
}

/// The perf buffers of one perf event array, every online CPU.
struct Rings(Vec<PerfEventArrayBuffer<MapData>>);

impl Rings {
    fn open(mut events: aya::maps::PerfEventArray<MapData>) -> Rings {
        let cpus = aya::util::online_cpus().expect("online CPUs");
        Rings(
            cpus.into_iter()
                .map(|cpu| events.open(cpu, Some(PERF_PAGES)).expect("perf buffer"))
                .collect(),
        )
    }

    /// Every sample since the last call; lost samples count as failures.
    fn drain(&mut self, lost: &mut u64, mut f: impl FnMut(&[u8], &[u8])) {
        for buffer in &mut self.0 {
            buffer.for_each(|event| match event {
                PerfEvent::Sample { head, tail } => f(head, tail),
                PerfEvent::Lost { count } => *lost += count,
            });
        }
    }
}

/// The kernel program, loaded with the rules, in drop mode, with inspect on.
struct KernelSide {
    kernel: Kernel,
    alerts: Rings,
    inspect: Rings,
    lost: u64,
}

impl KernelSide {
    fn new(rules: &CompiledRules, policy: &DropPolicy) -> KernelSide {
        let mut kernel = Kernel::load().expect("load the XDP program");
        kernel.write_rules(rules, SensorMode::Drop).expect("rules");
        kernel.write_drop_policy(policy).expect("drop policy");
        // Every IP packet, no budget: its parsed fields and its clock.
        kernel
            .start_inspect(&FilterProgram::default(), u32::MAX, false, loopback_index())
            .expect("inspect");
        let alerts = Rings::open(kernel.take_events().expect("EVENTS"));
        let inspect = Rings::open(kernel.take_inspect_events().expect("INSPECT_EVENTS"));
        KernelSide {
            kernel,
            alerts,
            inspect,
            lost: 0,
        }
    }

    /// Runs `frame`; the outcome, and the kernel clock if it read it.
    fn run(&mut self, frame: &[u8]) -> (Outcome, Option<u64>) {
        let verdict = self.kernel.test_run(frame).expect("BPF_PROG_TEST_RUN");
        let mut out = Outcome {
            verdict,
            ..Outcome::default()
        };
        let mut now = None;
        let mut extra_inspect = 0;
        self.inspect.drain(&mut self.lost, |head, tail| {
            let record: InspectRecord =
                sensor::kernel::perf::decode(head, tail).expect("well-formed inspect record");
            if out.parsed.is_some() {
                extra_inspect += 1;
            }
            out.parsed = Some(record.packet);
            now = Some(record.clock_ns);
        });
        self.alerts.drain(&mut self.lost, |head, tail| {
            let sample = AlertSample::decode(head, tail).expect("well-formed alert sample");
            let mut record = sample.record;
            record.cpu = 0;
            if let Some(clock) = now {
                assert!(
                    (clock..clock + 1_000_000_000).contains(&record.timestamp_ns),
                    "alert sent at {} ns, its packet judged at {clock} ns",
                    record.timestamp_ns
                );
                record.timestamp_ns = clock;
            }
            out.alerts.push((record, sample.frame));
        });
        assert_eq!(extra_inspect, 0, "more than one inspect record for a frame");
        (out, now)
    }
}

/// The index of this namespace's loopback, where BPF_PROG_TEST_RUN frames
/// arrive (asked once).
fn loopback_index() -> u32 {
    static INDEX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *INDEX.get_or_init(|| sensor::kernel::preflight::interface_index("lo").expect("lo"))
}

/// Replay's evaluation plus a model of the kernel's drop-mode glue.
struct ReplaySide<'r> {
    tables: MemoryTables<'r>,
    state: MemoryState,
    allowlist: Vec<IpNet>,
    blocklist: Vec<IpNet>,
    dry_run: bool,
    blocked: HashSet<AddrKey>,
    /// The kernel's global counters, as the glue would count them.
    counters: Counters,
    /// `block_when` and its numbers (also set in `state`).
    policy: BlockPolicy,
}

fn in_any(nets: &[IpNet], key: &AddrKey) -> bool {
    let addr = match key.version {
        4 => IpAddr::from(<[u8; 4]>::try_from(&key.addr[..4]).unwrap()),
        _ => IpAddr::from(key.addr),
    };
    nets.iter().any(|net| net.contains(&addr))
}

impl ReplaySide<'_> {
    /// The frame at kernel time `now` (None: the kernel did not read its
    /// clock, which the outcome then shows by having no parsed fields).
    fn run(&mut self, frame: &[u8], now: Option<u64>) -> Outcome {
        let counters = &mut self.counters;
        counters.packets += 1;
        let mut out = Outcome {
            verdict: XDP_PASS,
            ..Outcome::default()
        };
        let mut judge_drops = false;
        if let Some(src) = peek_source(frame) {
            let allowed = in_any(&self.allowlist, &src);
            if !allowed {
                let reason = if in_any(&self.blocklist, &src) {
                    Some(&mut counters.dropped_static_blocklist)
                } else if self.blocked.contains(&src) {
                    Some(&mut counters.dropped_blocked_source)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    if self.dry_run {
                        counters.would_drop += 1;
                    } else {
                        *reason += 1;
                        counters.dropped += 1;
                        out.verdict = XDP_DROP;
                        return out;
                    }
                }
            }
            judge_drops = !allowed;
        }
        let meta = parse_ethernet(frame);
        if meta.ip_version == 0 {
            counters.not_ip += 1;
            counters.passed += 1;
            return out;
        }
        if meta.in_tunnel() {
            counters.tunnel_packets += 1;
        }
        out.parsed = Some(meta);
        // The kernel read its clock for this frame: compare at its time. If
        // it did not, the outcomes differ already; evaluate at 0 anyway.
        let now = now.unwrap_or(0);
        // Drop mode follows handshakes for every parsed packet.
        let proof_ns = self.policy.proof_ns;
        let mut key = HandshakeKey::default();
        if observe(&meta, now, proof_ns, &mut self.state, &mut key) == seen::PROOF {
            counters.proofs += 1;
        }
        self.tables.drop_mode = judge_drops;
        let dry_run = self.dry_run;
        let cap = captured_len(meta.frame_len, DEFAULT_ALERT_PACKET_BYTES);
        let alerts = &mut out.alerts;
        let decision = process(
            &meta,
            now,
            &self.tables,
            &mut self.state,
            &mut |head: &AlertHead| {
                let mut record = head.record(&meta, now, 0);
                if dry_run {
                    record.action = outcome::ALLOWED;
                    if record.block == block::BLOCKED {
                        record.block = block::DRY_RUN;
                    }
                }
                record.captured_len = cap;
                // The kernel's glue records the ingress interface; test
                // runs receive on the namespace's loopback.
                record.ifindex = loopback_index();
                alerts.push((record, frame[..cap as usize].to_vec()));
            },
        );
        let counters = &mut self.counters;
        match decision.block {
            block::NOT_PROVEN => counters.refused_not_proven += 1,
            block::NOT_REPEATED => counters.refused_not_repeated += 1,
            _ => {}
        }
        if decision.drop && dry_run {
            counters.would_drop += 1;
        } else if decision.drop {
            if decision.block_ns > 0 {
                self.blocked.insert(meta.src_key());
                counters.blocks[self.policy.block_when as usize] += 1;
            }
            counters.dropped_by_rule += 1;
            counters.dropped += 1;
            out.verdict = XDP_DROP;
            return out;
        }
        counters.passed += 1;
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text}: not a number"))
        }
        Err(_) => default,
    }
}

/// Pins the thread to the CPU it runs on: the kernel's rate-limit state is
/// per CPU, and BPF_PROG_TEST_RUN runs the program on the caller's CPU.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is a plain
    // bitmask initialised by CPU_ZERO before use and outlives the call.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu failed");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu as usize, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity failed");
    }
}

fn rules() -> CompiledRules {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut set = sensor::rules::load_path(&dir).expect("shipped rules");
    let extra = sensor::rules::load_str("difftest.yaml", EXTRA_RULES).expect("difftest rules");
    set.rules.extend(extra.rules);
    sensor::rules::try_compile(&set, support::DEFAULT_BLOCK_SECONDS).expect("fits the kernel")
}

#[test]
fn kernel_and_replay_agree_frame_by_frame() {
    if !sensor::testing::bpf_available("difftest") {
        return;
    }
    let frames = env_u64("DIFFTEST_FRAMES", 100_000);
    let seed = env_u64("DIFFTEST_SEED", 0x5e45_0011);
    pin_to_current_cpu();
    let rules = rules();
    let mut policy = DropPolicy {
        allowlist: vec![
            "203.0.113.0/29".parse().unwrap(),
            "2001:db8:aa::/64".parse().unwrap(),
        ],
        blocklist: vec![
            "198.51.100.200/32".parse().unwrap(),
            "2001:db8:aa::/48".parse().unwrap(),
            "10.0.0.0/9".parse().unwrap(),
        ],
        dry_run: false,
        block: BlockPolicy::DEFAULT,
        maps: Default::default(),
    };

    let mut rng = Rng(seed);
    let mut recent = Vec::new();
    let mut handshakes: Vec<Vec<u8>> = Vec::new();
    let mut disagreements = 0u64;
    // Proofs, then blocks by block_when (proven, repeated, first_match).
    let mut proof_totals = [0u64; 4];
    let mut shown = 0;
    // Dropped frames, parsed IP frames, alert records, alerting frames,
    // syn_flood alerts, matches the rate limit held back, storm records,
    // frames judged on a tunnel's inner packet.
    let mut totals = [0u64; 8];
    let mut flood_alerts = 0u64;
    let mut scan_alerts = 0u64;
    // Matches of each rule (by signature id), over every epoch.
    let mut hits_by_sig = std::collections::BTreeMap::<u32, u64>::new();
    let started = std::time::Instant::now();
    let mut done = 0u64;
    while done < frames {
        policy.dry_run = false;
        let mut kernel = KernelSide::new(&rules, &policy);
        let mut replay = ReplaySide {
            tables: MemoryTables {
                rules: &rules,
                drop_mode: false,
            },
            state: MemoryState::new(),
            allowlist: policy.allowlist.clone(),
            blocklist: policy.blocklist.clone(),
            dry_run: false,
            blocked: HashSet::new(),
            counters: Counters::default(),
            policy: BlockPolicy::DEFAULT,
        };
        let epoch_end = (done + EPOCH).min(frames);
        while done < epoch_end {
            if done.is_multiple_of(BATCH) {
                // Unblock everyone; every other batch is a dry run.
                kernel.kernel.expire_blocks(u64::MAX).expect("clear blocks");
                replay.blocked.clear();
                policy.dry_run = (done / BATCH) % 2 == 1;
                policy.block = block_policy(done / BATCH);
                kernel.kernel.write_drop_policy(&policy).expect("policy");
                replay.dry_run = policy.dry_run;
                replay.policy = policy.block;
                replay.state.set_block_policy(policy.block);
            }
            if handshakes.is_empty() && rng.chance(3) {
                handshakes = handshake(&mut rng);
            }
            let storm = done % EPOCH;
            let frame =
                if (STORM_AT..STORM_AT + u64::from(ALERT_BUDGET) + STORM_EXTRA).contains(&storm) {
                    storm_frame(storm - STORM_AT)
                } else if handshakes.is_empty() || rng.chance(30) {
                    next_frame(&mut rng, &mut recent)
                } else {
                    handshakes.remove(0)
                };
            let (got, now) = kernel.run(&frame);
            let want = replay.run(&frame, now);
            totals[0] += (got.verdict == XDP_DROP) as u64;
            totals[1] += got.parsed.is_some() as u64;
            totals[7] += got.parsed.is_some_and(|meta| meta.in_tunnel()) as u64;
            totals[2] += got.alerts.len() as u64;
            totals[3] += !got.alerts.is_empty() as u64;
            for (record, _) in &got.alerts {
                totals[4] += kind::is_window(record.kind) as u64;
                flood_alerts += (record.kind == kind::FLOOD) as u64;
                scan_alerts += (record.kind == kind::SCAN) as u64;
                totals[6] += (record.aggregate == aggregate::RULE) as u64;
            }
            if got != want {
                disagreements += 1;
                if shown < 5 {
                    shown += 1;
                    eprintln!(
                        "DISAGREEMENT frame {done} (seed {seed:#x}) dry_run={}\n  frame {}\n  \
                         kernel {got:?}\n  replay {want:?}",
                        policy.dry_run,
                        hex(&frame)
                    );
                }
            }
            done += 1;
        }
        // Per-rule counters over the epoch, and nothing lost on the way.
        let kernel_stats = kernel.kernel.rule_stats().expect("rule stats");
        let replay_stats = replay.state.rule_stats();
        for (slot, stats) in kernel_stats.iter().enumerate().take(rules.rules.len()) {
            if !kind::is_window(rules.rules[slot].kind) {
                totals[5] += stats.hits - stats.alerts;
            }
            *hits_by_sig.entry(rules.rules[slot].sig_id).or_default() += stats.hits;
            if *stats != replay_stats[slot] {
                disagreements += 1;
                eprintln!(
                    "DISAGREEMENT rule slot {slot} counters: kernel {stats:?}, replay {:?}",
                    replay_stats[slot]
                );
            }
        }
        let counters = kernel.kernel.counters().expect("counters");
        proof_totals[0] += counters.proofs;
        for (total, blocks) in proof_totals[1..].iter_mut().zip(counters.blocks) {
            *total += blocks;
        }
        if counters != replay.counters {
            disagreements += 1;
            eprintln!(
                "DISAGREEMENT global counters: kernel {counters:?}, replay {:?}",
                replay.counters
            );
        }
        if kernel.lost != 0 || counters.alert_output_errors != 0 {
            disagreements += 1;
            eprintln!(
                "DISAGREEMENT perf records lost: {} (output errors {})",
                kernel.lost, counters.alert_output_errors
            );
        }
    }
    let elapsed = started.elapsed();
    sensor::testing::report(&format!(
        "difftest: seed {seed:#x}, {:.1} s; kernel dropped {}, parsed {} IP frames ({} inside a tunnel), sent {} alert records for {} frames ({} syn_flood, flood or scan, {} storm; {} matches held back by the rate limit or the alert budget); proofs {}, blocks by block_when {:?}",
        elapsed.as_secs_f64(),
        totals[0],
        totals[1],
        totals[7],
        totals[2],
        totals[3],
        totals[4],
        totals[6],
        totals[5],
        proof_totals[0],
        &proof_totals[1..]
    ));
    let line = format!("difftest: {frames} frames, {disagreements} disagreements");
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    assert_eq!(disagreements, 0, "{line}");
    // A generator that stopped exercising the rules would pass vacuously.
    if frames >= 10_000 {
        assert!(
            totals[0] > 0
                && totals[3] > frames / 50
                && totals[4] > 0
                && totals[5] > 0
                && totals[7] > frames / 50,
            "the frames exercise too little: {totals:?}"
        );
        assert!(
            proof_totals.iter().all(|n| *n > 0),
            "handshakes and block_when exercised too little: {proof_totals:?}"
        );
        assert!(flood_alerts > 0, "no flood alert");
        assert!(scan_alerts > 0, "no scan alert");
        // The option and extension-header checks (900022..900027), the
        // flood rules (900028..900036), the scan rules (900037, 900038),
        // an adaptive flood (900039).
        for sig in 900_022..=900_039 {
            assert!(
                hits_by_sig.get(&sig).copied().unwrap_or(0) > 0,
                "rule {sig} never matched: {hits_by_sig:?}"
            );
        }
    }
}
