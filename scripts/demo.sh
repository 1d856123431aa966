#!/usr/bin/env bash
# The sensor's demo: builds it, attaches it to a throwaway veth pair (two
# network namespaces, the sensor side without an address, like a span
# port), sends attack and benign traffic from the other side, and shows the
# alerts, then replays the same frames offline for comparison.
#
# Needs root (XDP, namespaces). Leaves nothing behind: namespaces and the
# sensor are removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (it attaches XDP and creates network namespaces)" >&2
  exit 1
fi

scripts/bootstrap.sh
echo "== building the sensor (release)"
cargo build --release --quiet 2>&1 | { grep -v '^warning: sensor@' || true; }
SENSOR=$PWD/target/release/sensor
RULES=${DEMO_RULES:-$PWD/rules}

WORK=$(mktemp -d)
INJ=sensor-demo-inj SEN=sensor-demo-span
SENSOR_PID=""
cleanup() {
  [[ -n $SENSOR_PID ]] && kill "$SENSOR_PID" 2>/dev/null && wait "$SENSOR_PID" 2>/dev/null || true
  ip netns del "$INJ" 2>/dev/null || true
  ip netns del "$SEN" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup_ns_only() { ip netns del "$INJ" 2>/dev/null || true; ip netns del "$SEN" 2>/dev/null || true; }
cleanup_ns_only

echo "== namespaces: $INJ (traffic source) --veth-- $SEN (span port, no address)"
ip netns add "$INJ"
ip netns add "$SEN"
ip link add demo-inj netns "$INJ" type veth peer name demo-span netns "$SEN"
for pair in "$INJ demo-inj" "$SEN demo-span"; do
  set -- $pair
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$1" ip link set "$2" up
done

echo "== writing demo traffic (documentation addresses only)"
/usr/bin/python3 scripts/demo_traffic.py "$WORK/demo.pcap"

echo "== sensor run --iface demo-span --rules $RULES"
ip netns exec "$SEN" "$SENSOR" run --iface demo-span --rules "$RULES" --json "$WORK/alerts.json" \
  2> "$WORK/sensor.log" &
SENSOR_PID=$!
for _ in $(seq 1 100); do
  grep -q "sensor attached" "$WORK/sensor.log" 2>/dev/null && break
  kill -0 "$SENSOR_PID" 2>/dev/null || { cat "$WORK/sensor.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "sensor attached" "$WORK/sensor.log" || { echo "sensor did not attach" >&2; cat "$WORK/sensor.log" >&2; exit 1; }
sed 's/^/   sensor: /' "$WORK/sensor.log"

echo "== sending $(/usr/bin/python3 -c "from scapy.all import rdpcap; print(len(rdpcap('$WORK/demo.pcap')))") frames from $INJ"
ip netns exec "$INJ" tcpreplay -q --intf1=demo-inj --pps=500 "$WORK/demo.pcap" >/dev/null
sleep 1.5
kill -TERM "$SENSOR_PID"; wait "$SENSOR_PID" || true; SENSOR_PID=""

echo "== alerts raised live ($(wc -l < "$WORK/alerts.json") lines)"
/usr/bin/python3 - "$WORK/alerts.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    a = json.loads(line)
    port = lambda p: f":{a[p]}" if p in a else ""
    print(f"  [{a['alert']['severity']}] {a['alert']['signature_id']} {a['alert']['signature']:<40} "
          f"{a['src_ip']}{port('src_port')} -> {a['dest_ip']}{port('dest_port')} {a['proto']} "
          f"flags={a['sensor'].get('tcp_flags','-')} count={a['sensor']['count']}")
PY
echo "== the first alert line as the SIEM receives it"
head -n1 "$WORK/alerts.json"
# DEMO_ALERTS=FILE keeps the live alert lines (e.g. to check them against a schema).
if [[ -n ${DEMO_ALERTS:-} ]]; then cp "$WORK/alerts.json" "$DEMO_ALERTS"; fi

echo "== sensor replay of the same frames"
"$SENSOR" replay --pcap "$WORK/demo.pcap" --rules "$RULES" --json - | wc -l | sed 's/^/   alert lines: /'
