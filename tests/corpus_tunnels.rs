//! Replays the tunnel captures of `tests/corpus_tunnels/` (Zeek's and
//! suricata-verify's test traces: VXLAN, GENEVE, GRE, ERSPAN II and III,
//! IP-in-IP) with one rule that
//! matches every IP packet, and checks that each alert is attributed to the
//! right packet: the inner one (its addresses as `src_ip` / `dest_ip`, with
//! the `tunnel` object naming the type and the outer addresses) or, where
//! the inner frame is not IP (ARP in VXLAN), the outer one without
//! `tunnel`. The expectations come from scapy's own dissectors (an
//! independent decoder), per frame; per source, the lines' counts add up to
//! its packets.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Matches every IP packet with a TTL / hop limit above 0.
const EVERY_PACKET: &str = "rules:
  - id: 1
    name: every packet
    severity: low
    match: { ttl: { above: 0 } }
";

/// scapy's reading of each frame: the packet the sensor must judge (the
/// tunnel's inner IP packet, else the outer one) and the tunnel.
const DECODE: &str = r#"
import json, sys
from scapy.all import rdpcap, IP, IPv6, UDP, GRE, Ether, Dot1Q, load_contrib
from scapy.layers.vxlan import VXLAN
load_contrib("geneve")
from scapy.contrib.geneve import GENEVE

def l3_of(layer):
    while isinstance(layer, (Ether, Dot1Q)):
        layer = layer.payload
    return layer if isinstance(layer, (IP, IPv6)) else None

out = []
for p in rdpcap(sys.argv[1]):
    outer = l3_of(p)
    if outer is None:
        out.append(None)
        continue
    up = outer.payload
    kind, inner, ident = None, None, None
    if isinstance(up, UDP) and up.dport == 4789 and isinstance(up.payload, VXLAN):
        kind, inner = "vxlan", l3_of(up.payload.payload)
        ident = ("vni", up.payload.vni)
    elif isinstance(up, UDP) and up.dport == 6081:
        geneve = GENEVE(bytes(up.payload))
        kind, inner = "geneve", l3_of(geneve.payload)
        ident = ("vni", geneve.vni)
    elif isinstance(up, GRE) and up.proto == 0x22EB:
        raw = bytes(up.payload)
        start = 12 + (8 if raw[11] & 1 else 0)
        kind, inner = "erspan", l3_of(Ether(raw[start:]))
        ident = ("erspan_session_id", (raw[2] & 3) << 8 | raw[3])
    elif isinstance(up, GRE) and up.proto == 0x88BE:
        raw = bytes(up.payload)
        kind, inner = "erspan", l3_of(Ether(raw[8:]))
        ident = ("erspan_session_id", (raw[2] & 3) << 8 | raw[3])
    elif isinstance(up, GRE):
        kind, inner = "gre", l3_of(up.payload)
        if up.key_present:
            ident = ("gre_key", up.key)
    elif isinstance(up, (IP, IPv6)):
        kind, inner = "ipip", up
    judged = inner if inner is not None else outer
    ttl = judged.ttl if isinstance(judged, IP) else judged.hlim
    tunnel = None
    if inner is not None:
        tunnel = {"type": kind, "src_ip": outer.src, "dest_ip": outer.dst}
        if ident is not None:
            tunnel[ident[0]] = ident[1]
    out.append({"src_ip": judged.src, "dest_ip": judged.dst, "ttl": ttl, "tunnel": tunnel})
print(json.dumps(out))
"#;

fn decode(pcap: &Path) -> Vec<Value> {
    let output = Command::new("/usr/bin/python3")
        .args(["-c", DECODE])
        .arg(pcap)
        .output()
        .expect("python3 with scapy (scripts/bootstrap.sh installs it)");
    assert!(
        output.status.success(),
        "scapy could not decode {}: {}",
        pcap.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).expect("scapy's JSON")
}

/// The address as the alert writes it (IPv6 compressed the same way).
fn addr(value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    text.parse::<std::net::IpAddr>()
        .map_or_else(|_| text.to_owned(), |ip| ip.to_string())
}

#[test]
fn tunnel_captures_attribute_every_alert_to_its_inner_packet() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus_tunnels");
    let rules_dir = tempfile::tempdir().unwrap();
    let rules_path = rules_dir.path().join("rules.yaml");
    std::fs::write(&rules_path, EVERY_PACKET).unwrap();
    let rules = support::load_rules(&rules_path);
    let mut pcaps: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pcap"))
        .collect();
    pcaps.sort();
    assert_eq!(pcaps.len(), 13, "{pcaps:?}");
    let mut kinds = BTreeMap::<String, u64>::new();
    for pcap in &pcaps {
        let name = pcap.file_name().unwrap().to_string_lossy().to_string();
        let expected = decode(pcap);
        let (alerts, result) = support::replay_lines(pcap, &rules);
        result.unwrap_or_else(|err| panic!("{name}: {err}"));
        // Per source: packets expected, and the lines' counts.
        let mut want = BTreeMap::<String, u64>::new();
        for packet in expected.iter().filter(|packet| !packet.is_null()) {
            if packet["ttl"].as_u64().unwrap_or(0) > 0 {
                *want.entry(addr(&packet["src_ip"])).or_default() += 1;
            }
        }
        let mut got = BTreeMap::<String, u64>::new();
        for alert in &alerts {
            let line: Value = serde_json::from_str(&alert.to_json_line()).unwrap();
            let index = line["pcap_cnt"].as_u64().expect("pcap_cnt") as usize - 1;
            let packet = expected[index]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: a line for non-IP frame {index}: {line}"));
            assert_eq!(
                addr(&line["src_ip"]),
                addr(&packet["src_ip"]),
                "{name} #{index}: {line}"
            );
            assert_eq!(
                addr(&line["dest_ip"]),
                addr(&packet["dest_ip"]),
                "{name} #{index}: {line}"
            );
            match &packet["tunnel"] {
                Value::Null => assert!(line.get("tunnel").is_none(), "{name} #{index}: {line}"),
                tunnel => {
                    let outer = &line["tunnel"];
                    assert_eq!(outer["type"], tunnel["type"], "{name} #{index}: {line}");
                    assert_eq!(
                        addr(&outer["src_ip"]),
                        addr(&tunnel["src_ip"]),
                        "{name}: {line}"
                    );
                    assert_eq!(
                        addr(&outer["dest_ip"]),
                        addr(&tunnel["dest_ip"]),
                        "{name}: {line}"
                    );
                    assert_eq!(outer["depth"], 1, "{name}: {line}");
                    // The VNI, GRE key or ERSPAN session id, where scapy
                    // found one, and no other.
                    for id in ["vni", "gre_key", "erspan_session_id"] {
                        assert_eq!(outer.get(id), tunnel.get(id), "{name} {id}: {line}");
                    }
                    *kinds
                        .entry(tunnel["type"].as_str().unwrap().to_owned())
                        .or_default() += alert.count();
                }
            }
            *got.entry(addr(&line["src_ip"])).or_default() += alert.count();
        }
        assert_eq!(got, want, "{name}: packets per source");
    }
    // Every tunnel type was seen decapsulated.
    for kind in ["vxlan", "geneve", "gre", "erspan", "ipip"] {
        assert!(kinds.get(kind).is_some_and(|n| *n > 0), "{kind}: {kinds:?}");
    }
    sensor::testing::report(&format!(
        "corpus_tunnels: {} captures; packets judged inside each tunnel type: {kinds:?}",
        pcaps.len()
    ));
}
