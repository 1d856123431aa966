//! Flood traffic against the default `flood` rules (`rules/floods.yaml`,
//! `rules/reflection.yaml`): for each rule, frames of its packet class to
//! one victim, just over the rule's threshold, from spoofed sources. The
//! replay test and the end-to-end test send the same attacks.

use sensor::testing::frames::{self, ETH_IPV4, Ipv4, flags};
use sensor_common::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// One attack: the default rule it must raise and its frames.
pub struct Flood {
    pub name: &'static str,
    pub sig: u32,
    /// The victim (`dest_ip` of the alert).
    pub victim: [u8; 4],
    pub frames: Vec<Vec<u8>>,
}

/// The `i`-th spoofed source: 198.51.100.0/24 and 203.0.113.0/24 in turn.
pub fn source(i: usize) -> [u8; 4] {
    if i.is_multiple_of(2) {
        [198, 51, 100, (i / 2 % 250) as u8 + 1]
    } else {
        [203, 0, 113, (i / 2 % 250) as u8 + 1]
    }
}

/// `ip` in an Ethernet frame.
pub fn eth(ip: Vec<u8>) -> Vec<u8> {
    frames::ethernet(&[], ETH_IPV4, &ip)
}

fn tcp(i: usize, victim: [u8; 4], f: u16) -> Vec<u8> {
    eth(Ipv4::new(source(i), victim, PROTO_TCP).build(&frames::tcp(
        1024 + (i % 60000) as u16,
        80,
        f,
        i as u32,
        &[],
    )))
}

fn udp(i: usize, victim: [u8; 4], sport: u16, payload: usize) -> Vec<u8> {
    eth(Ipv4::new(source(i), victim, PROTO_UDP).build(&frames::udp(
        sport,
        1024 + (i % 60000) as u16,
        &vec![0x5a; payload],
    )))
}

/// `count` frames made by `frame(i)`.
fn many(count: usize, frame: impl Fn(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
    (0..count).map(frame).collect()
}

/// Every default flood and reflection rule's attack, `over` frames beyond
/// its packet threshold (or, for byte thresholds, enough frames to pass
/// the bytes). Victims are 192.0.2.{31..39}, one per attack.
pub fn attacks(over: usize) -> Vec<Flood> {
    let v = |last: u8| [192, 0, 2, last];
    vec![
        Flood {
            name: "ACK flood",
            sig: 100311,
            victim: v(31),
            frames: many(60_000 + over, |i| tcp(i, v(31), flags::ACK)),
        },
        Flood {
            name: "RST flood",
            sig: 100312,
            victim: v(32),
            frames: many(2_000 + over, |i| tcp(i, v(32), flags::RST | flags::ACK)),
        },
        Flood {
            name: "FIN flood",
            sig: 100313,
            victim: v(33),
            frames: many(5_000 + over, |i| tcp(i, v(33), flags::FIN | flags::ACK)),
        },
        Flood {
            name: "UDP flood",
            sig: 100314,
            victim: v(34),
            frames: many(50_000 + over, |i| udp(i, v(34), 40_000, 18)),
        },
        Flood {
            name: "ICMP flood",
            sig: 100315,
            victim: v(35),
            frames: many(1_000 + over, |i| {
                eth(Ipv4::new(source(i), v(35), PROTO_ICMP)
                    .build(&frames::icmp_echo(8, 7, i as u16)))
            }),
        },
        Flood {
            name: "fragment flood",
            sig: 100316,
            victim: v(36),
            // Non-first fragments (offset 185 × 8): no ports, so no
            // reflection rule counts them.
            frames: many(2_000 + over, |i| {
                let mut ip = Ipv4::new(source(i), v(36), PROTO_UDP).frag(185);
                ip.id = i as u16;
                eth(ip.build(&[0x5a; 64]))
            }),
        },
        Flood {
            name: "DNS reflection",
            sig: 100501,
            victim: v(37),
            frames: many(5_000 + over, |i| udp(i, v(37), 53, 60)),
        },
        Flood {
            name: "NTP reflection (by bytes: 250,000 in 1,000-byte answers)",
            sig: 100502,
            victim: v(38),
            // 1,000-byte frames: the 250th reaches the bytes, far below
            // the packet threshold (1,000).
            frames: many(250 + over.min(500), |i| udp(i, v(38), 123, 1_000 - 42)),
        },
        Flood {
            name: "memcached reflection",
            sig: 100503,
            victim: v(39),
            frames: many(200 + over, |i| udp(i, v(39), 11211, 60)),
        },
    ]
}

/// One reflection attack for each reflector port of the default rules
/// (`rules/reflection.yaml`): answers from that source port to a victim
/// of their own (192.0.2.{41..47}), `over` frames beyond the rule's
/// packet threshold, or past its bytes for the byte-counted rule.
pub fn reflectors(over: usize) -> Vec<Flood> {
    let v = |last: u8| [192, 0, 2, last];
    let by_port: [(&'static str, u16, u32); 7] = [
        ("DNS (53)", 53, 100501),
        ("NTP (123)", 123, 100502),
        ("SNMP (161)", 161, 100502),
        ("SSDP (1900)", 1900, 100502),
        ("chargen (19)", 19, 100503),
        ("CLDAP (389)", 389, 100503),
        ("memcached (11211)", 11211, 100503),
    ];
    by_port
        .iter()
        .enumerate()
        .map(|(k, &(name, port, sig))| {
            let victim = v(41 + k as u8);
            let frames = match sig {
                100501 => many(5_000 + over, |i| udp(i, victim, port, 60)),
                // By bytes: 1,000-byte answers, the 250th reaches them.
                100502 => many(250 + over.min(500), |i| udp(i, victim, port, 1_000 - 42)),
                _ => many(200 + over, |i| udp(i, victim, port, 60)),
            };
            Flood {
                name,
                sig,
                victim,
                frames,
            }
        })
        .collect()
}
