//! Community ID v1 (the Corelight Community ID Flow Hash), as Suricata and
//! Zeek write it in `community_id`: SHA-1 over the seed, the two endpoints
//! in a canonical order, the protocol and the ports (or ICMP's type and
//! counter-type), base64, prefixed with `1:`.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use sensor_common::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PacketMeta, flag};

use crate::alert::ip_addr;

const PROTO_SCTP: u8 = 132;

/// The flow's transport part, as the hash sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP, UDP, SCTP: the ports.
    Ports { src: u16, dst: u16 },
    /// ICMP / ICMPv6: type and code (mapped to port equivalents).
    Icmp { kind: u8, code: u8 },
    /// Any other IP protocol: addresses and protocol only.
    None,
}

/// The Community ID of one packet's flow, or `None` when the packet has no
/// flow to name: a non-first fragment, or a transport header cut short.
pub fn of_packet(packet: &PacketMeta, seed: u16) -> Option<String> {
    if packet.has(flag::FRAGMENT) && packet.frag_offset > 0 {
        return None;
    }
    let transport = match packet.proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => {
            if !packet.has(flag::HAS_PORTS) {
                return None;
            }
            Transport::Ports {
                src: packet.src_port,
                dst: packet.dst_port,
            }
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            if !packet.has(flag::HAS_ICMP) {
                return None;
            }
            Transport::Icmp {
                kind: packet.icmp_type,
                code: packet.icmp_code,
            }
        }
        _ => Transport::None,
    };
    let src = ip_addr(packet.ip_version, &packet.src_addr);
    let dst = ip_addr(packet.ip_version, &packet.dst_addr);
    Some(community_id(src, dst, packet.proto, transport, seed))
}

/// Community ID v1 of a flow.
pub fn community_id(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    transport: Transport,
    seed: u16,
) -> String {
    let (ports, one_way) = match transport {
        Transport::Ports { src, dst } => (Some((src, dst)), false),
        Transport::Icmp { kind, code } => {
            let (src_port, dst_port, one_way) = icmp_port_equivalents(proto, kind, code);
            (Some((src_port, dst_port)), one_way)
        }
        Transport::None => (None, false),
    };
    let octets = |addr: IpAddr| match addr {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let (mut a, mut b) = (octets(src), octets(dst));
    let (mut port_a, mut port_b) = ports.unwrap_or((0, 0));
    // The smaller (address, port) end first, so both directions agree;
    // one-way ICMP messages keep their direction.
    let ordered = a < b || (a == b && port_a < port_b);
    if !(one_way || ordered) {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut port_a, &mut port_b);
    }
    let mut hash = Sha1::new();
    hash.update(seed.to_be_bytes());
    hash.update(&a);
    hash.update(&b);
    hash.update([proto, 0]);
    if ports.is_some() {
        hash.update(port_a.to_be_bytes());
        hash.update(port_b.to_be_bytes());
    }
    format!("1:{}", BASE64.encode(hash.finalize()))
}

/// ICMP's "ports": the type, and the type of the answer where the message
/// has one (echo and echo reply, ...), else the code and "one way".
fn icmp_port_equivalents(proto: u8, kind: u8, code: u8) -> (u16, u16, bool) {
    let counterpart = if proto == PROTO_ICMPV6 {
        match kind {
            128 => Some(129), // echo request / reply
            129 => Some(128),
            130 => Some(131), // multicast listener query / report
            131 => Some(130),
            133 => Some(134), // router solicitation / advertisement
            134 => Some(133),
            135 => Some(136), // neighbor solicitation / advertisement
            136 => Some(135),
            139 => Some(140), // node information query / reply
            140 => Some(139),
            144 => Some(145), // home agent address discovery request / reply
            145 => Some(144),
            _ => None,
        }
    } else {
        match kind {
            8 => Some(0), // echo / echo reply
            0 => Some(8),
            13 => Some(14), // timestamp / reply
            14 => Some(13),
            15 => Some(16), // information request / reply
            16 => Some(15),
            10 => Some(9),  // router solicitation -> advertisement
            17 => Some(18), // address mask request / reply
            18 => Some(17),
            _ => None,
        }
    };
    match counterpart {
        Some(other) => (u16::from(kind), other, false),
        None => (u16::from(kind), u16::from(code), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The specification's baseline (community-id-spec, baseline/
    /// baseline_deflt.json, seed 0): TCP, UDP, SCTP, other protocols, both
    /// directions.
    #[test]
    fn spec_baseline_ports_and_other_protocols() {
        /// proto, source, destination, ports, expected.
        type Case<'a> = (u8, &'a str, &'a str, Option<(u16, u16)>, &'a str);
        let cases: &[Case] = &[
            (
                6,
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                "2607:f8b0:400c:c03::1a",
                Some((63943, 25)),
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                6,
                "2607:f8b0:400c:c03::1a",
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                Some((25, 63943)),
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            ),
            (
                132,
                "192.168.170.8",
                "192.168.170.56",
                Some((7, 7)),
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                132,
                "192.168.170.56",
                "192.168.170.8",
                Some((7, 7)),
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                6,
                "128.232.110.120",
                "66.35.250.204",
                Some((34855, 80)),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                6,
                "66.35.250.204",
                "128.232.110.120",
                Some((80, 34855)),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                17,
                "192.168.1.52",
                "8.8.8.8",
                Some((54585, 53)),
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                17,
                "8.8.8.8",
                "192.168.1.52",
                Some((53, 54585)),
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                46,
                "10.1.12.1",
                "10.1.12.2",
                None,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            ),
            (
                46,
                "10.1.12.2",
                "10.1.12.1",
                None,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
            ),
        ];
        for (proto, src, dst, ports, expected) in cases {
            let transport = match ports {
                Some((src, dst)) => Transport::Ports {
                    src: *src,
                    dst: *dst,
                },
                None => Transport::None,
            };
            assert_eq!(
                community_id(ip(src), ip(dst), *proto, transport, 0),
                *expected,
                "{proto} {src} -> {dst}"
            );
        }
    }

    /// The baseline's ICMP and ICMPv6 flows, given as the packets' type
    /// and code (the baseline lists their port equivalents).
    #[test]
    fn spec_baseline_icmp() {
        let cases: &[(u8, &str, &str, u8, u8, &str)] = &[
            // Neighbor solicitation / advertisement, both ways.
            (
                58,
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                135,
                0,
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                136,
                0,
                "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                135,
                0,
                "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            ),
            (
                58,
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                136,
                0,
                "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            ),
            // Time exceeded and parameter problem: one way, type and code.
            (
                58,
                "3ffe:501:1800:2345::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                3,
                0,
                "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            ),
            (
                58,
                "3ffe:501:410:0:2c0:dfff:fe47:33e",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                1,
                4,
                "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            ),
            // Echo request and reply.
            (
                58,
                "3ffe:507:0:1:200:86ff:fe05:80da",
                "3ffe:501:0:1001::2",
                128,
                0,
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            (
                58,
                "3ffe:501:0:1001::2",
                "3ffe:507:0:1:200:86ff:fe05:80da",
                129,
                0,
                "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            ),
            // Router solicitation and advertisement (to multicast groups).
            (
                58,
                "fe80::200:86ff:fe05:80da",
                "ff02::2",
                133,
                0,
                "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "ff02::1",
                134,
                0,
                "1:pkvHqCL88/tg1k4cPigmZXUtL00=",
            ),
            // ICMPv4 echo both ways, and time exceeded.
            (
                1,
                "192.168.0.89",
                "192.168.0.1",
                8,
                0,
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                1,
                "192.168.0.1",
                "192.168.0.89",
                0,
                0,
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                1,
                "10.0.0.1",
                "10.0.0.2",
                11,
                0,
                "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            ),
        ];
        for (proto, src, dst, kind, code, expected) in cases {
            let transport = Transport::Icmp {
                kind: *kind,
                code: *code,
            };
            assert_eq!(
                community_id(ip(src), ip(dst), *proto, transport, 0),
                *expected,
                "{proto} {src} -> {dst} type {kind}"
            );
        }
    }

    /// baseline/baseline_seed1.json: the same flows with seed 1.
    #[test]
    fn spec_baseline_with_seed_one() {
        let tcp = Transport::Ports {
            src: 80,
            dst: 34855,
        };
        let udp = Transport::Ports {
            src: 54585,
            dst: 53,
        };
        let echo_reply = Transport::Icmp { kind: 0, code: 0 };
        let ns = Transport::Icmp { kind: 135, code: 0 };
        let cases = [
            (
                6,
                "66.35.250.204",
                "128.232.110.120",
                tcp,
                "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
            ),
            (
                17,
                "192.168.1.52",
                "8.8.8.8",
                udp,
                "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
            ),
            (
                46,
                "10.1.12.2",
                "10.1.12.1",
                Transport::None,
                "1:rYir8gphR31noO9iDRQmF/BteEI=",
            ),
            (
                1,
                "192.168.0.1",
                "192.168.0.89",
                echo_reply,
                "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
            ),
            (
                58,
                "fe80::260:97ff:fe07:69ea",
                "fe80::200:86ff:fe05:80da",
                ns,
                "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
            ),
        ];
        for (proto, src, dst, transport, expected) in cases {
            assert_eq!(
                community_id(ip(src), ip(dst), proto, transport, 1),
                expected,
                "{src}"
            );
        }
    }

    #[test]
    fn packets_without_a_flow_have_no_id() {
        let mut packet = PacketMeta {
            ip_version: 4,
            proto: PROTO_UDP,
            flags: flag::FRAGMENT | flag::MORE_FRAGMENTS,
            frag_offset: 185,
            ..PacketMeta::default()
        };
        assert_eq!(of_packet(&packet, 0), None, "non-first fragment");
        packet.frag_offset = 0;
        assert_eq!(of_packet(&packet, 0), None, "ports cut off");
        packet.flags |= flag::HAS_PORTS;
        assert!(of_packet(&packet, 0).is_some(), "first fragment with ports");
        packet.proto = 47;
        packet.flags = 0;
        assert!(
            of_packet(&packet, 0).is_some(),
            "GRE: addresses and protocol"
        );
    }
}
