#!/usr/bin/python3
"""Writes the demo's traffic to a pcap: benign sessions around a few attacks.

Only documentation addresses (RFC 5737) are used. Run with Debian's python3
(python3-scapy, installed by scripts/bootstrap.sh).
"""
import sys

from scapy.all import IP, TCP, UDP, ICMP, DNS, DNSQR, Ether, Dot1Q, Raw, fragment, wrpcap

CLIENT, SERVER, ATTACKER = "203.0.113.5", "192.0.2.10", "198.51.100.7"
eth = lambda: Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")

benign = [
    # A handshake, a request and a teardown.
    eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=80, flags="S", seq=1),
    eth() / IP(src=SERVER, dst=CLIENT) / TCP(sport=80, dport=50000, flags="SA", seq=9, ack=2),
    eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=80, flags="A", seq=2, ack=10),
    eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=80, flags="PA", seq=2, ack=10) / Raw(b"GET / HTTP/1.1\r\n\r\n"),
    eth() / IP(src=CLIENT, dst=SERVER) / TCP(sport=50000, dport=80, flags="FA", seq=20, ack=10),
    eth() / IP(src=SERVER, dst=CLIENT) / TCP(sport=80, dport=50000, flags="FA", seq=10, ack=21),
    # DNS, ping, and a normally fragmented UDP datagram.
    eth() / IP(src=CLIENT, dst=SERVER) / UDP(sport=53000, dport=53) / DNS(qd=DNSQR(qname="example.org")),
    eth() / IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=1, seq=1),
    *[eth() / f for f in fragment(IP(src=CLIENT, dst=SERVER) / UDP(sport=5000, dport=5001) / Raw(b"x" * 3000), fragsize=1400)],
    # VLAN-tagged web traffic.
    eth() / Dot1Q(vlan=100) / IP(src=CLIENT, dst=SERVER) / TCP(sport=50001, dport=443, flags="S"),
]

attacks = [
    eth() / IP(src=ATTACKER, dst=SERVER) / TCP(sport=41000, dport=80, flags="SF"),      # SYN+FIN
    eth() / IP(src=ATTACKER, dst=SERVER) / TCP(sport=41001, dport=443, flags=""),       # NULL scan
    eth() / IP(src=ATTACKER, dst=SERVER) / TCP(sport=41002, dport=22, flags="FPU"),     # XMAS scan
    eth() / Dot1Q(vlan=100) / IP(src=ATTACKER, dst=SERVER) / TCP(sport=41003, dport=23, flags="SR"),  # SYN+RST, tagged
    eth() / IP(src=SERVER, dst=SERVER) / TCP(sport=139, dport=139, flags="S"),          # land
    eth() / IP(src=ATTACKER, dst=SERVER, proto=17, flags="MF", frag=0) / Raw(b"\x00" * 8),  # tiny first fragment
    eth() / IP(src=ATTACKER, dst=SERVER, proto=6, frag=1) / Raw(b"\x00" * 16),          # overlap at offset 1
]

wrpcap(sys.argv[1], benign[:6] + attacks + benign[6:])
