//! Decapsulation tests on hand-built frames (docs/CONTRACT.md section 3,
//! *Tunnels*): each encapsulation valid, cut short at every byte, with the
//! wrong version and with an unknown protocol inside, and the cases that
//! stay judged on the outer packet (decap off, fragments, outer anomalies).

use sensor_common::decap::{DecapConfig, candidate, tunnel_candidate};
use sensor_common::packet::{PROTO_TCP, PROTO_UDP, PacketMeta, event, flag, tcp, tunnel};
use sensor_common::parse::{ETH_P_IPV4, parse_ethernet, parse_ethernet_with, parse_ip_at};

const OUTER_SRC: [u8; 4] = [198, 51, 100, 1];
const OUTER_DST: [u8; 4] = [198, 51, 100, 2];
const INNER_SRC: [u8; 4] = [192, 0, 2, 7];
const INNER_DST: [u8; 4] = [203, 0, 113, 9];
const OUTER_SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const OUTER_DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const INNER_SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
const INNER_DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

const TEB: u16 = 0x6558;
const ETH_P_IPV6: u16 = 0x86dd;
const GRE_C: u16 = 0x8000;
const GRE_K: u16 = 0x2000;
const GRE_S: u16 = 0x1000;

// ---- builders ---------------------------------------------------------------

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    tagged(&[], ethertype, payload)
}

fn tagged(vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    for vlan in vlans {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(vlan.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_frag(src, dst, proto, 0, payload)
}

fn ipv4_frag(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend(total.to_be_bytes());
    h.extend([0x12, 0x34]);
    h.extend(frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend(((8 + payload.len()) as u16).to_be_bytes());
    h.extend([0, 0]);
    h.extend(payload);
    h
}

fn tcp_segment(sport: u16, dport: u16, flags: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend(1000u32.to_be_bytes());
    h.extend(0u32.to_be_bytes());
    h.extend((0x5000 | flags).to_be_bytes());
    h.extend([0x20, 0, 0, 0, 0, 0]);
    h
}

/// The attack the tunnels carry: a SYN+FIN from INNER_SRC.
fn inner_v4() -> Vec<u8> {
    ipv4(
        INNER_SRC,
        INNER_DST,
        PROTO_TCP,
        &tcp_segment(4242, 80, tcp::SYN | tcp::FIN),
    )
}

fn inner_v6() -> Vec<u8> {
    ipv6(
        INNER_SRC6,
        INNER_DST6,
        PROTO_TCP,
        &tcp_segment(4242, 80, tcp::SYN | tcp::FIN),
    )
}

fn vxlan(vni: u32, inner_frame: &[u8]) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend((vni << 8).to_be_bytes());
    h.extend(inner_frame);
    h
}

fn geneve(options: &[u8], protocol: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut h = vec![(options.len() / 4) as u8, 0];
    h.extend(protocol.to_be_bytes());
    h.extend((vni << 8).to_be_bytes());
    h.extend(options);
    h.extend(inner);
    h
}

fn gre(flags: u16, protocol: u16, key: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(flags.to_be_bytes());
    h.extend(protocol.to_be_bytes());
    if flags & GRE_C != 0 {
        h.extend([0xab, 0xcd, 0, 0]);
    }
    if flags & GRE_K != 0 {
        h.extend(key.to_be_bytes());
    }
    if flags & GRE_S != 0 {
        h.extend(7u32.to_be_bytes());
    }
    h.extend(inner);
    h
}

fn erspan2(session: u16, inner_frame: &[u8]) -> Vec<u8> {
    // Version 1, VLAN 0; COS/En/T 0 and the session id; index.
    let mut h = vec![0x10, 0x00];
    h.extend(session.to_be_bytes());
    h.extend([0, 0, 0, 1]);
    h.extend(inner_frame);
    h
}

fn erspan3(session: u16, subheader: bool, inner_frame: &[u8]) -> Vec<u8> {
    let mut h = vec![0x20, 0x00];
    h.extend(session.to_be_bytes());
    h.extend([0x11, 0x22, 0x33, 0x44]); // timestamp
    h.extend([0, 0]); // SGT
    h.push(0); // P, frame type 0 (Ethernet), hardware id
    h.push(u8::from(subheader)); // ..., O bit
    if subheader {
        h.extend([0xee; 8]);
    }
    h.extend(inner_frame);
    h
}

fn over_udp4(dport: u16, tunnel_payload: &[u8]) -> Vec<u8> {
    eth(
        ETH_P_IPV4,
        &ipv4(
            OUTER_SRC,
            OUTER_DST,
            PROTO_UDP,
            &udp(51000, dport, tunnel_payload),
        ),
    )
}

fn over_gre4(gre_packet: &[u8]) -> Vec<u8> {
    eth(ETH_P_IPV4, &ipv4(OUTER_SRC, OUTER_DST, 47, gre_packet))
}

fn outer_only(frame: &[u8]) -> PacketMeta {
    parse_ethernet_with(frame, &DecapConfig::OFF)
}

fn addr4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

/// The inner SYN+FIN over IPv4, found in a tunnel of `kind` from the
/// outer IPv4 addresses.
fn assert_inner_v4(m: &PacketMeta, kind: u8, proto: u8) {
    assert_eq!(m.ip_version, 4, "{m:?}");
    assert_eq!(m.src_addr, addr4(INNER_SRC));
    assert_eq!(m.dst_addr, addr4(INNER_DST));
    assert_eq!(m.proto, PROTO_TCP);
    assert_eq!((m.src_port, m.dst_port), (4242, 80));
    assert!(m.has(flag::HAS_TCP_FLAGS));
    assert_eq!(m.tcp_flags, tcp::SYN | tcp::FIN);
    assert_eq!(m.tunnel.kind, kind, "{m:?}");
    assert_eq!(m.tunnel.ip_version, 4);
    assert_eq!(m.tunnel.src_addr, addr4(OUTER_SRC));
    assert_eq!(m.tunnel.dst_addr, addr4(OUTER_DST));
    assert_eq!(m.tunnel.proto, proto);
    assert!(m.in_tunnel());
}

// ---- each encapsulation, valid -----------------------------------------------

#[test]
fn vxlan_is_judged_on_its_inner_packet() {
    let frame = over_udp4(4789, &vxlan(42, &eth(ETH_P_IPV4, &inner_v4())));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::VXLAN, PROTO_UDP);
    assert_eq!((m.tunnel.has_id, m.tunnel.id), (1, 42));
    assert_eq!((m.tunnel.src_port, m.tunnel.dst_port), (51000, 4789));
    assert_eq!(m.frame_len as usize, frame.len());
    assert_eq!(m.events, event::bit(event::SYN_NO_ACK));
    // Off: the outer UDP packet, as before decapsulation existed.
    let outer = outer_only(&frame);
    assert_eq!(outer.tunnel.kind, tunnel::NONE);
    assert_eq!(outer.src_addr, addr4(OUTER_SRC));
    assert_eq!(outer.proto, PROTO_UDP);
    assert_eq!(outer.dst_port, 4789);
}

#[test]
fn vxlan_inner_vlan_tags_follow_the_outer_ones() {
    let inner = tagged(&[300], ETH_P_IPV4, &inner_v4());
    let outer = ipv4(
        OUTER_SRC,
        OUTER_DST,
        PROTO_UDP,
        &udp(51000, 4789, &vxlan(7, &inner)),
    );
    let frame = tagged(&[100], ETH_P_IPV4, &outer);
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::VXLAN, PROTO_UDP);
    assert_eq!(m.vlan_count, 2);
    assert_eq!(&m.vlan[..2], &[100, 300]);
    // No room left for the inner tags: judged on the outer packet, with
    // the outer tags only.
    let frame = tagged(&[1, 2, 3, 4], ETH_P_IPV4, &outer);
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m, outer_only(&frame));
    assert_eq!(m.vlan_count, 4);
}

#[test]
fn vxlan_without_the_i_flag_or_on_another_port_is_not_decapsulated() {
    let mut payload = vxlan(42, &eth(ETH_P_IPV4, &inner_v4()));
    payload[0] = 0;
    let frame = over_udp4(4789, &payload);
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    let frame = over_udp4(4790, &vxlan(42, &eth(ETH_P_IPV4, &inner_v4())));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    // ... unless that port is configured.
    let decap = DecapConfig {
        vxlan_ports: [8472, 4790, 0, 0],
        ..DecapConfig::DEFAULT
    };
    assert_inner_v4(
        &parse_ethernet_with(&frame[..], &decap),
        tunnel::VXLAN,
        PROTO_UDP,
    );
}

/// The candidate (`decap::tunnel_candidate`), which the kernel decides in
/// one program and opens in the next: a port listed for both VXLAN and
/// GENEVE is VXLAN's, and a VXLAN header that fails its check is not tried
/// as GENEVE. (The config loader refuses one port in both lists; the
/// parser still answers one way for such settings, the same in the kernel
/// and in replay.)
#[test]
fn a_port_listed_twice_is_vxlans_and_one_candidate_is_tried() {
    let both = DecapConfig {
        vxlan_ports: [7000, 0, 0, 0],
        geneve_ports: [7000, 6081, 0, 0],
        ..DecapConfig::DEFAULT
    };
    let frame = over_udp4(7000, &vxlan(9, &eth(ETH_P_IPV4, &inner_v4())));
    let outer = outer_only(&frame);
    assert_eq!(tunnel_candidate(&outer, &both), candidate::VXLAN);
    assert_eq!(
        tunnel_candidate(&outer, &DecapConfig::DEFAULT),
        candidate::NONE
    );
    assert_eq!(tunnel_candidate(&outer, &DecapConfig::OFF), candidate::NONE);
    assert_inner_v4(
        &parse_ethernet_with(&frame[..], &both),
        tunnel::VXLAN,
        PROTO_UDP,
    );
    // A valid GENEVE header with the version bits clear but no VXLAN I
    // flag: as VXLAN's port, the frame stays outer.
    let frame = over_udp4(7000, &geneve(&[], ETH_P_IPV4, 5, &inner_v4()));
    assert_eq!(parse_ethernet_with(&frame[..], &both), outer_only(&frame));
    let gre = outer_only(&over_gre4(&gre(0, ETH_P_IPV4, 0, &inner_v4())));
    assert_eq!(tunnel_candidate(&gre, &both), candidate::GRE);
    let ipip = outer_only(&eth(
        ETH_P_IPV4,
        &ipv4(OUTER_SRC, OUTER_DST, 4, &inner_v4()),
    ));
    assert_eq!(tunnel_candidate(&ipip, &both), candidate::IPV4_IN_IP);
    let tcp = outer_only(&eth(
        ETH_P_IPV4,
        &ipv4(
            OUTER_SRC,
            OUTER_DST,
            PROTO_TCP,
            &tcp_segment(1, 7000, tcp::ACK),
        ),
    ));
    assert_eq!(tunnel_candidate(&tcp, &both), candidate::NONE);
}

#[test]
fn geneve_skips_its_options_and_takes_ethernet_ipv4_or_ipv6() {
    let options = [0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef];
    let frame = over_udp4(
        6081,
        &geneve(&options, TEB, 0xabcdef, &eth(ETH_P_IPV4, &inner_v4())),
    );
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::GENEVE, PROTO_UDP);
    assert_eq!((m.tunnel.has_id, m.tunnel.id), (1, 0xabcdef));
    assert_eq!(m.tunnel.dst_port, 6081);
    let frame = over_udp4(6081, &geneve(&[], ETH_P_IPV4, 5, &inner_v4()));
    assert_inner_v4(&parse_ethernet(&frame[..]), tunnel::GENEVE, PROTO_UDP);
    let frame = over_udp4(6081, &geneve(&[], ETH_P_IPV6, 5, &inner_v6()));
    let m = parse_ethernet(&frame[..]);
    assert_eq!(
        (m.ip_version, m.src_addr, m.tunnel.kind),
        (6, INNER_SRC6, tunnel::GENEVE)
    );
}

#[test]
fn geneve_of_another_version_or_protocol_is_not_decapsulated() {
    let mut payload = geneve(&[], TEB, 5, &eth(ETH_P_IPV4, &inner_v4()));
    payload[0] |= 0x40; // version 1
    let frame = over_udp4(6081, &payload);
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    let frame = over_udp4(6081, &geneve(&[], 0x0806, 5, &[0; 28]));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
}

#[test]
fn gre_carries_ipv4_ipv6_and_ethernet_with_key_and_sequence() {
    let frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &inner_v4()));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::GRE, 47);
    assert_eq!(m.tunnel.has_id, 0);
    assert_eq!((m.tunnel.src_port, m.tunnel.dst_port), (0, 0));
    let frame = over_gre4(&gre(
        GRE_C | GRE_K | GRE_S,
        ETH_P_IPV4,
        0xdeadbeef,
        &inner_v4(),
    ));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::GRE, 47);
    assert_eq!((m.tunnel.has_id, m.tunnel.id), (1, 0xdeadbeef));
    let frame = over_gre4(&gre(GRE_K, TEB, 9, &eth(ETH_P_IPV4, &inner_v4())));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::GRE, 47);
    assert_eq!(m.tunnel.id, 9);
    let frame = over_gre4(&gre(GRE_S, ETH_P_IPV6, 0, &inner_v6()));
    let m = parse_ethernet(&frame[..]);
    assert_eq!(
        (m.ip_version, m.dst_addr, m.tunnel.kind),
        (6, INNER_DST6, tunnel::GRE)
    );
    assert_eq!(m.tcp_flags, tcp::SYN | tcp::FIN);
}

#[test]
fn gre_of_version_1_with_routing_or_unknown_protocol_is_not_decapsulated() {
    for flags in [0x0001, 0x4000, 0x0800, 0x0400] {
        let frame = over_gre4(&gre(flags, ETH_P_IPV4, 0, &inner_v4()));
        assert_eq!(
            parse_ethernet(&frame[..]),
            outer_only(&frame),
            "flags {flags:#x}"
        );
    }
    // Bits RFC 2784 says to ignore do not matter.
    let frame = over_gre4(&gre(0x0080, ETH_P_IPV4, 0, &inner_v4()));
    assert_inner_v4(&parse_ethernet(&frame[..]), tunnel::GRE, 47);
    let frame = over_gre4(&gre(0, 0x880b, 0, &inner_v4()));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
}

#[test]
fn erspan_type_2_and_3_are_decapsulated() {
    let inner = eth(ETH_P_IPV4, &inner_v4());
    let frame = over_gre4(&gre(GRE_S, 0x88be, 0, &erspan2(0x0123, &inner)));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::ERSPAN, 47);
    assert_eq!((m.tunnel.has_id, m.tunnel.id), (1, 0x123));
    // The COS / En / T bits around the session id are not part of it.
    let frame = over_gre4(&gre(GRE_S, 0x88be, 0, &erspan2(0xfc05, &inner)));
    assert_eq!(parse_ethernet(&frame[..]).tunnel.id, 5);
    for subheader in [false, true] {
        let frame = over_gre4(&gre(0, 0x22eb, 0, &erspan3(0x3ff, subheader, &inner)));
        let m = parse_ethernet(&frame[..]);
        assert_inner_v4(&m, tunnel::ERSPAN, 47);
        assert_eq!(m.tunnel.id, 0x3ff);
    }
}

#[test]
fn erspan_without_sequence_or_of_the_wrong_version_is_not_decapsulated() {
    let inner = eth(ETH_P_IPV4, &inner_v4());
    // Type I (no sequence number, no ERSPAN header).
    let frame = over_gre4(&gre(0, 0x88be, 0, &erspan2(1, &inner)));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    let mut payload = erspan2(1, &inner);
    payload[0] = 0x20;
    let frame = over_gre4(&gre(GRE_S, 0x88be, 0, &payload));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    let mut payload = erspan3(1, false, &inner);
    payload[0] = 0x10;
    let frame = over_gre4(&gre(0, 0x22eb, 0, &payload));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    // Type III frame type other than Ethernet.
    let mut payload = erspan3(1, false, &inner);
    payload[10] = 0x3 << 2;
    let frame = over_gre4(&gre(0, 0x22eb, 0, &payload));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
}

#[test]
fn ip_in_ip_all_four_combinations() {
    let frame = eth(ETH_P_IPV4, &ipv4(OUTER_SRC, OUTER_DST, 4, &inner_v4()));
    let m = parse_ethernet(&frame[..]);
    assert_inner_v4(&m, tunnel::IPIP, 4);
    assert_eq!(m.tunnel.has_id, 0);
    let frame = eth(ETH_P_IPV4, &ipv4(OUTER_SRC, OUTER_DST, 41, &inner_v6()));
    let m = parse_ethernet(&frame[..]);
    assert_eq!((m.ip_version, m.src_addr), (6, INNER_SRC6));
    assert_eq!(
        (m.tunnel.kind, m.tunnel.proto, m.tunnel.ip_version),
        (tunnel::IPIP, 41, 4)
    );
    let frame = eth(ETH_P_IPV6, &ipv6(OUTER_SRC6, OUTER_DST6, 4, &inner_v4()));
    let m = parse_ethernet(&frame[..]);
    assert_eq!((m.ip_version, m.src_addr), (4, addr4(INNER_SRC)));
    assert_eq!((m.tunnel.ip_version, m.tunnel.src_addr), (6, OUTER_SRC6));
    assert_eq!((m.tunnel.kind, m.tunnel.proto), (tunnel::IPIP, 4));
    let frame = eth(ETH_P_IPV6, &ipv6(OUTER_SRC6, OUTER_DST6, 41, &inner_v6()));
    let m = parse_ethernet(&frame[..]);
    assert_eq!((m.ip_version, m.dst_addr), (6, INNER_DST6));
    assert_eq!((m.tunnel.dst_addr, m.tunnel.proto), (OUTER_DST6, 41));
    // Raw IP captures decapsulate too.
    let packet = ipv4(OUTER_SRC, OUTER_DST, 4, &inner_v4());
    assert_inner_v4(&parse_ip_at(&packet[..], ETH_P_IPV4, 0), tunnel::IPIP, 4);
}

#[test]
fn inner_header_checks_are_the_inner_packets() {
    // The inner packet is a land packet; the outer is not.
    let land = ipv4(
        INNER_SRC,
        INNER_SRC,
        PROTO_TCP,
        &tcp_segment(1, 2, tcp::SYN),
    );
    let frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &land));
    let m = parse_ethernet(&frame[..]);
    assert!(m.has_event(event::LAND));
    assert!(m.has_event(event::SYN_NO_ACK));
    assert_eq!(m.tunnel.kind, tunnel::GRE);
}

#[test]
fn one_level_only_the_first_inner_packet_is_judged() {
    // VXLAN inside GRE: judged on the GRE's inner packet (the VXLAN's
    // outer UDP packet).
    let vxlan_packet = ipv4(
        INNER_SRC,
        INNER_DST,
        PROTO_UDP,
        &udp(1234, 4789, &vxlan(3, &eth(ETH_P_IPV4, &inner_v4()))),
    );
    let frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &vxlan_packet));
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m.tunnel.kind, tunnel::GRE);
    assert_eq!((m.proto, m.dst_port), (PROTO_UDP, 4789));
    assert_eq!(m.src_addr, addr4(INNER_SRC));
}

// ---- what stays on the outer packet ---------------------------------------------

#[test]
fn decap_off_outer_fragments_and_outer_anomalies_stay_outer() {
    let frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &inner_v4()));
    assert_eq!(
        parse_ethernet_with(&frame[..], &DecapConfig::OFF)
            .tunnel
            .kind,
        0
    );
    // A first fragment of the outer packet.
    let frame = eth(
        ETH_P_IPV4,
        &ipv4_frag(
            OUTER_SRC,
            OUTER_DST,
            47,
            0x2000,
            &gre(0, ETH_P_IPV4, 0, &inner_v4()),
        ),
    );
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m, outer_only(&frame));
    assert!(m.has(flag::FRAGMENT));
    // UDP source port 0 on the outer packet: its zero_port check fires, on
    // the outer packet, which is then not decapsulated.
    let frame = eth(
        ETH_P_IPV4,
        &ipv4(
            OUTER_SRC,
            OUTER_DST,
            PROTO_UDP,
            &udp(0, 4789, &vxlan(1, &eth(ETH_P_IPV4, &inner_v4()))),
        ),
    );
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m, outer_only(&frame));
    assert!(m.has_event(event::ZERO_PORT));
    // An outer total length beyond the frame: bad_total_length, no decap.
    let mut frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &inner_v4()));
    frame[16] = 0x7f;
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m, outer_only(&frame));
    assert!(m.has_event(event::BAD_TOTAL_LENGTH));
}

#[test]
fn wrong_inner_version_or_unknown_inner_protocol_stays_outer() {
    // Protocol 4 announces IPv4; an IPv6 header follows.
    let frame = eth(ETH_P_IPV4, &ipv4(OUTER_SRC, OUTER_DST, 4, &inner_v6()));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    let frame = over_gre4(&gre(0, ETH_P_IPV6, 0, &inner_v4()));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    // ARP inside VXLAN.
    let frame = over_udp4(4789, &vxlan(1, &eth(0x0806, &[0; 28])));
    assert_eq!(parse_ethernet(&frame[..]), outer_only(&frame));
    // An inner IPv4 header with IHL 3 is parsed as far as it goes: its
    // bad_ihl check fires on the inner packet.
    let mut inner = inner_v4();
    inner[0] = 0x43;
    let frame = over_gre4(&gre(0, ETH_P_IPV4, 0, &inner));
    let m = parse_ethernet(&frame[..]);
    assert_eq!(m.tunnel.kind, tunnel::GRE);
    assert!(m.has_event(event::BAD_IHL));
    assert_eq!(m.src_addr, addr4(INNER_SRC));
}

// ---- cut short at every byte ------------------------------------------------------

/// Builds a frame whose tunnel payload is cut to `n` bytes.
type CutBuilder = Box<dyn Fn(usize) -> Vec<u8>>;

/// Every valid encapsulation: its name and its frame builder.
fn encapsulations() -> Vec<(&'static str, CutBuilder)> {
    let inner_eth = eth(ETH_P_IPV4, &inner_v4());
    let cut = |v: &Vec<u8>, n: usize| v[..n.min(v.len())].to_vec();
    let vx = vxlan(42, &inner_eth);
    let ge = geneve(&[1, 2, 3, 4], TEB, 42, &inner_eth);
    let gr = gre(GRE_C | GRE_K | GRE_S, ETH_P_IPV4, 1, &inner_v4());
    let e2 = gre(GRE_S, 0x88be, 0, &erspan2(3, &inner_eth));
    let e3 = gre(0, 0x22eb, 0, &erspan3(3, true, &inner_eth));
    let v6 = inner_v6();
    vec![
        ("vxlan", Box::new(move |n| over_udp4(4789, &cut(&vx, n)))),
        ("geneve", Box::new(move |n| over_udp4(6081, &cut(&ge, n)))),
        ("gre", Box::new(move |n| over_gre4(&cut(&gr, n)))),
        ("erspan2", Box::new(move |n| over_gre4(&cut(&e2, n)))),
        ("erspan3", Box::new(move |n| over_gre4(&cut(&e3, n)))),
        (
            "6in6",
            Box::new(move |n| eth(ETH_P_IPV6, &ipv6(OUTER_SRC6, OUTER_DST6, 41, &cut(&v6, n)))),
        ),
    ]
}

#[test]
fn every_encapsulation_cut_at_every_byte() {
    for (name, build) in encapsulations() {
        let whole = build(usize::MAX);
        assert!(parse_ethernet(&whole[..]).in_tunnel(), "{name}: whole");
        let full = parse_ethernet(&whole[..]);
        let tunnel_bytes = whole.len() - outer_header_len(name);
        let mut decapsulated = 0;
        for n in 0..tunnel_bytes {
            // The outer lengths say where the cut is: the inner packet is
            // cut short, the outer packet is whole.
            let frame = build(n);
            let m = parse_ethernet(&frame[..]);
            if m.in_tunnel() {
                decapsulated += 1;
                assert!(m.ip_version == 4 || m.ip_version == 6, "{name} cut at {n}");
                assert_eq!(m.tunnel, full.tunnel, "{name} cut at {n}");
                assert_eq!(m.src_addr, full.src_addr, "{name} cut at {n}");
                // Transport fields only once their bytes are in.
                if m.has(flag::HAS_TCP_FLAGS) {
                    assert_eq!(m.tcp_flags, tcp::SYN | tcp::FIN, "{name} cut at {n}");
                }
            } else {
                assert_eq!(m, outer_only(&frame), "{name} cut at {n}");
            }
        }
        // Decapsulated exactly when the inner IP header is whole.
        assert_eq!(
            decapsulated,
            tunnel_bytes - first_decapsulated(name),
            "{name}: cuts that leave a whole inner IP header"
        );
        // Cutting the frame itself (the outer lengths then run past it)
        // never decapsulates: the outer packet is broken.
        for cut in 0..whole.len() {
            let m = parse_ethernet(&whole[..cut]);
            assert_eq!(m, outer_only(&whole[..cut]), "{name}: frame cut at {cut}");
            assert!(!m.in_tunnel(), "{name}: frame cut at {cut}");
        }
    }
}

/// Bytes of Ethernet, outer IP (and UDP) before the tunnel's payload.
fn outer_header_len(name: &str) -> usize {
    match name {
        "vxlan" | "geneve" => 14 + 20 + 8,
        "6in6" => 14 + 40,
        _ => 14 + 20,
    }
}

/// The shortest tunnel payload that holds the inner IP header whole.
fn first_decapsulated(name: &str) -> usize {
    match name {
        "vxlan" => 8 + 14 + 20,
        "geneve" => 8 + 4 + 14 + 20,
        "gre" => 16 + 20,
        "erspan2" => 8 + 8 + 14 + 20,
        "erspan3" => 4 + 20 + 14 + 20,
        _ => 40,
    }
}

// ---- one record reused, as the kernel does --------------------------------------

/// The kernel parses every frame into the same per-CPU record, and
/// `PacketMeta::clear` clears the tunnel only when it is set: a frame
/// parsed after a tunnelled one (or after one whose decapsulation failed
/// half way) must come out exactly as parsed into a fresh record.
#[test]
fn a_reused_record_forgets_the_previous_frames_tunnel() {
    use sensor_common::parse::parse_ethernet_into;
    let plain = eth(ETH_P_IPV4, &inner_v4());
    let tunnelled = [
        over_udp4(4789, &vxlan(42, &eth(ETH_P_IPV4, &inner_v4()))),
        over_gre4(&gre(GRE_K | GRE_S, ETH_P_IPV4, 7, &inner_v4())),
        over_gre4(&gre(
            GRE_S,
            0x88be,
            0,
            &erspan2(5, &eth(ETH_P_IPV4, &inner_v4())),
        )),
    ];
    let mut reused = PacketMeta::default();
    for frame in &tunnelled {
        // Every cut of the tunnelled frame too: some fail after the
        // tunnel's id was noted.
        for len in (14..=frame.len()).rev() {
            let decap = DecapConfig::DEFAULT;
            parse_ethernet_into(&frame[..len], &mut reused, &decap);
            assert_eq!(reused, parse_ethernet(&frame[..len]), "cut at {len}");
            parse_ethernet_into(&plain[..], &mut reused, &decap);
            assert_eq!(reused, parse_ethernet(&plain[..]), "after a cut at {len}");
            assert_eq!(reused.tunnel.kind, tunnel::NONE);
        }
    }
}
