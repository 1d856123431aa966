#!/usr/bin/env bash
# Soak test of `sensor run` (issue #11): for MINUTES minutes, a bounded
# mixed flood with attacks goes through a veth pair between two throwaway
# namespaces; the rules are reloaded (SIGHUP) every 5 s; the syslog peer (a
# real rsyslogd on the sensor namespace's loopback) is restarted every
# 60 s. At the end it checks that
#   - the sensor's resident memory stayed flat (last sample within 20 % of
#     the first sample after warm-up; every sample is printed),
#   - the counters add up: for every rule that is not a syn_flood rule, the
#     kernel's matched-packet counter equals the sum of the `sensor.count`
#     fields of its alert lines (syn_flood lines carry window counts),
#   - nothing panicked, and the sensor exits cleanly on SIGTERM.
#
#   sudo scripts/soak.sh MINUTES
#
# Traffic uses documentation addresses only; nothing leaves the namespaces.
# Every process started here is stopped by its PID in the exit trap.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:?usage: scripts/soak.sh MINUTES}
[[ $MINUTES =~ ^[0-9]+$ && $MINUTES -ge 1 ]] || { echo "soak: MINUTES must be a whole number >= 1" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "soak: run as root (XDP, namespaces)" >&2; exit 1; }

PPS=${SOAK_PPS:-5000}
RELOAD_EVERY=${SOAK_RELOAD_EVERY:-5}
SYSLOG_RESTART_EVERY=60
SAMPLE_EVERY=10

scripts/bootstrap.sh
cargo build --release --quiet 2>&1 | { grep -v '^warning: sensor@' || true; }
SENSOR=$PWD/target/release/sensor
RULES=$PWD/rules

WORK=$(mktemp -d)
TAG=$$
INJ=soak-inj-$TAG SEN=soak-sen-$TAG INJ_IF=soki$TAG SEN_IF=soks$TAG
SENSOR_PID="" RSYSLOG_PID="" REPLAY_PID=""
cleanup() {
  for pid in $REPLAY_PID $SENSOR_PID $RSYSLOG_PID; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  ip netns del "$INJ" 2>/dev/null || true
  ip netns del "$SEN" 2>/dev/null || true
  [[ -n ${SOAK_KEEP:-} ]] && echo "soak: files kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$INJ"
ip netns add "$SEN"
ip link add "$INJ_IF" netns "$INJ" type veth peer name "$SEN_IF" netns "$SEN"
for pair in "$INJ $INJ_IF" "$SEN $SEN_IF"; do
  set -- $pair
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec "$1" ip link set "$2" up
  ip netns exec "$1" ip link set lo up
done

# ---- the syslog peer --------------------------------------------------------
cat > "$WORK/rsyslog.conf" <<EOF
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="5514")
action(type="omfile" file="$WORK/syslog.log")
EOF
start_rsyslog() {
  ip netns exec "$SEN" rsyslogd -n -f "$WORK/rsyslog.conf" -i "$WORK/rsyslogd.pid" \
    >>"$WORK/rsyslogd.out" 2>&1 &
  RSYSLOG_PID=$!
}
start_rsyslog

# ---- the traffic: benign mix, attacks from 200 sources, SYN bursts ----------
/usr/bin/python3 - "$WORK/mix.pcap" <<'PY'
import random, sys
from scapy.all import Ether, IP, TCP, UDP, ICMP, Raw, wrpcap
random.seed(11)
eth = lambda: Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
frames = []
server = "192.0.2.10"
for i in range(20000):
    r = random.random()
    src = f"198.51.100.{random.randrange(1, 201)}"
    sport = random.randrange(1024, 65535)
    if r < 0.55:      # benign TCP data
        frames.append(eth()/IP(src=src, dst=server, ttl=64)/TCP(sport=sport, dport=443, flags="PA")/Raw(b"x"*64))
    elif r < 0.70:    # benign DNS
        frames.append(eth()/IP(src=src, dst="192.0.2.53", ttl=64)/UDP(sport=sport, dport=53)/Raw(b"q"*32))
    elif r < 0.75:    # benign ping
        frames.append(eth()/IP(src=src, dst=server, ttl=64)/ICMP())
    elif r < 0.82:    # SYN+FIN, NULL, XMAS scans
        flags = random.choice(["SF", "", "FPU"])
        frames.append(eth()/IP(src=src, dst=server, ttl=64)/TCP(sport=sport, dport=random.choice([22, 80, 443]), flags=flags))
    elif r < 0.85:    # TTL 0 / 1
        frames.append(eth()/IP(src=src, dst=server, ttl=random.choice([0, 1]))/TCP(sport=sport, dport=80, flags="A"))
    elif r < 0.87:    # tiny first fragment
        frames.append(eth()/IP(src=src, dst=server, ttl=64, flags="MF", proto=17)/Raw(b"\0"*8))
    else:             # SYNs to one victim from many sources (flood bursts)
        frames.append(eth()/IP(src=f"203.0.113.{random.randrange(1, 255)}", dst="192.0.2.80", ttl=64)/TCP(sport=sport, dport=80, flags="S"))
wrpcap(sys.argv[1], frames)
PY
FRAMES=20000
LOOPS=$(( (MINUTES * 60 * PPS + FRAMES - 1) / FRAMES ))

# ---- the sensor ------------------------------------------------------------------
ip netns exec "$SEN" "$SENSOR" run --iface "$SEN_IF" --rules "$RULES" \
  --json "$WORK/alerts.json" --syslog tcp://127.0.0.1:5514 --metrics 127.0.0.1:9466 \
  2>"$WORK/sensor.log" &
SENSOR_PID=$!
for _ in $(seq 100); do grep -q "sensor attached" "$WORK/sensor.log" && break; sleep 0.1; done
grep -q "sensor attached" "$WORK/sensor.log" || { cat "$WORK/sensor.log"; echo "soak: sensor did not start" >&2; exit 1; }

echo "soak: $MINUTES min at $PPS pps ($LOOPS loops of $FRAMES frames), reload every ${RELOAD_EVERY}s, syslog restart every ${SYSLOG_RESTART_EVERY}s"
ip netns exec "$INJ" tcpreplay -q --intf1="$INJ_IF" --pps="$PPS" --loop="$LOOPS" "$WORK/mix.pcap" \
  >"$WORK/tcpreplay.out" 2>&1 &
REPLAY_PID=$!

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$SENSOR_PID/status"; }
START=$(date +%s)
END=$((START + MINUTES * 60))
RSS_SAMPLES=()
next_reload=$((START + RELOAD_EVERY)) next_restart=$((START + SYSLOG_RESTART_EVERY)) next_sample=$START
reloads=0 restarts=0
while (( $(date +%s) < END )) && kill -0 "$REPLAY_PID" 2>/dev/null; do
  now=$(date +%s)
  kill -0 "$SENSOR_PID" 2>/dev/null || { cat "$WORK/sensor.log"; echo "soak: the sensor died" >&2; exit 1; }
  if (( now >= next_sample )); then
    RSS_SAMPLES+=("$(rss)"); next_sample=$((now + SAMPLE_EVERY))
    printf 'soak: t=%4ds rss=%s kB\n' $((now - START)) "${RSS_SAMPLES[-1]}"
  fi
  if (( now >= next_reload )); then
    kill -HUP "$SENSOR_PID"; reloads=$((reloads + 1)); next_reload=$((now + RELOAD_EVERY))
  fi
  if (( now >= next_restart )); then
    kill "$RSYSLOG_PID"; wait "$RSYSLOG_PID" 2>/dev/null || true; sleep 1; start_rsyslog
    restarts=$((restarts + 1)); next_restart=$((now + SYSLOG_RESTART_EVERY))
  fi
  sleep 1
done
kill "$REPLAY_PID" 2>/dev/null || true; wait "$REPLAY_PID" 2>/dev/null || true; REPLAY_PID=""

# Let the last rate-limit windows end and be swept, then read the metrics.
sleep 3
ip netns exec "$SEN" /usr/bin/python3 -c \
  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9466/metrics', timeout=5).read().decode())" \
  >"$WORK/metrics.txt"
kill -TERM "$SENSOR_PID"
status=0; wait "$SENSOR_PID" || status=$?
SENSOR_PID=""

/usr/bin/python3 - "$WORK" "$status" "$reloads" "$restarts" "$RULES" "${RSS_SAMPLES[@]}" <<'PY'
import json, re, sys, pathlib, collections
work, status, reloads, restarts, rules_dir = sys.argv[1:6]
rss = [int(x) for x in sys.argv[6:] if x]
work = pathlib.Path(work)
problems = []
metrics = (work / "metrics.txt").read_text()
hits = {int(m[1]): int(m[2]) for m in re.finditer(r'^sensor_rule_hits_total\{sig_id="(\d+)",[^}]*\} (\d+)$', metrics, re.M)}
syn_flood = set()
for path in pathlib.Path(rules_dir).glob("*.yaml"):
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"\s*- id: (\d+)", line)
        if m: current = int(m[1])
        if "syn_flood" in line and current is not None and not line.strip().startswith("#"): syn_flood.add(current)
counts = collections.Counter()
lines = 0
for line in (work / "alerts.json").read_text().splitlines():
    alert = json.loads(line); lines += 1
    counts[alert["alert"]["signature_id"]] += alert["sensor"]["count"]
for sig, kernel in sorted(hits.items()):
    if sig in syn_flood: continue
    if kernel != counts[sig]:
        problems.append(f"rule {sig}: kernel matched {kernel}, alert counts sum to {counts[sig]}")
log = (work / "sensor.log").read_text()
if "panicked" in log: problems.append("the sensor panicked")
if status != "0": problems.append(f"the sensor exited with {status}")
def metric(name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", metrics, re.M)
    return int(m[1]) if m else None
warm = rss[max(1, len(rss) // 10):] or rss
growth = (warm[-1] - warm[0]) / warm[0] if warm and warm[0] else 0.0
if growth > 0.20: problems.append(f"resident memory grew {growth:.0%} after warm-up ({warm[0]} -> {warm[-1]} kB)")
print(f"soak: packets {metric('sensor_packets_total')}, alert lines {lines}, matched (non-syn_flood rules) {sum(v for k, v in hits.items() if k not in syn_flood)}")
syslog_sent = metric('sensor_alert_lines_total{sink="syslog"}')
syslog_dropped = sum(int(m[1]) for m in re.finditer(r'^sensor_syslog_dropped_total\{[^}]*\} (\d+)$', metrics, re.M))
perf_lost = metric("sensor_perf_lost_samples_total")
print(f"soak: reloads {reloads}, syslog restarts {restarts}, syslog sent {syslog_sent}, "
      f"syslog dropped {syslog_dropped}, perf lost {perf_lost}")
print(f"soak: rss kB first {rss[0] if rss else '-'}, after warm-up {warm[0] if warm else '-'}, last {rss[-1] if rss else '-'}, max {max(rss) if rss else '-'} (growth after warm-up {growth:+.1%})")
for p in problems: print(f"soak: FAIL {p}")
print("soak: ok" if not problems else f"soak: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
