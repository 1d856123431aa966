#!/usr/bin/env bash
# benches/compare.sh — the comparative benchmark of issue #9 (item 1).
#
#   sudo benches/compare.sh [testrun|wire|replay|all] [--rounds N]
#
# Measures the sensor against a bare XDP_PASS program, xdp-tools'
# xdp-filter, FastNetMon and tcpdump, interleaved within each round, and
# writes a Markdown table of medians, min–max and ratios (benches/README.md
# has the method and the knobs; BENCHMARKS.md the results).
#
# This script owns: the network namespaces sbench-*, the veth pairs in them,
# a bpffs mounted at /run/sensor-bench-bpffs (for libxdp), its output
# directory (target/bench-compare/ unless OUT is set) and the processes it
# starts, which it stops by PID on exit. It installs the Debian packages it
# needs (xdp-tools, netsniff-ng, fastnetmon, tcpdump, python3-scapy, procps,
# iproute2, ethtool, curl) when they are missing; one that cannot be
# installed is named, and its columns are skipped with a note — never
# filled in. Timings are never asserted anywhere.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# ---- arguments and knobs ----------------------------------------------
WHAT=all
ROUNDS=${ROUNDS:-3}
while (($#)); do
  case $1 in
    testrun|wire|replay|all) WHAT=$1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --rounds=*) ROUNDS=${1#*=} ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (testrun|wire|replay|all, --rounds N)" >&2; exit 2 ;;
  esac
  shift
done
REPEAT=${REPEAT:-1000000}             # BPF_PROG_TEST_RUN repetitions per frame
PAIRS=${PAIRS:-200}                    # adjacent VXLAN / plain ACK pairs (compare.py pairs)
PAIR_REPEAT=${PAIR_REPEAT:-100000}     # repetitions per frame in each pair
SPOOFED=${SPOOFED:-20000}              # SYNs from random sources, one run each, per round (compare.py spoofed)
GEN_RULES=${GEN_RULES:-1024}          # rules in the generated set (or as many as the sensor accepts)
FLOOD_SECS=${FLOOD_SECS:-4}           # length of each end-to-end flood
SLOW_PPS=${SLOW_PPS:-100000}          # the "100 kpps" flood
REPLAY_FRAMES=${REPLAY_FRAMES:-2000000}
WIRE_SCENARIOS=${WIRE_SCENARIOS:-"syn_100kpps syn_max synfin_max"}
WIRE_VARIANTS=${WIRE_VARIANTS:-"nothing xdp_pass xdp_filter sensor_ids sensor_drop_blocked fastnetmon inspect_filter tcpdump_filter inspect_all tcpdump_all"}
INSPECT_FILTER=${INSPECT_FILTER:-"src net 198.18.0.0/22"}
RX_CPU=1 TX_CPU=0                      # receive core (napi thread, the tool's userspace) / trafgen
PY=/usr/bin/python3
[[ -d ${HOME:-/root}/.cargo/bin ]] && PATH=${HOME:-/root}/.cargo/bin:$PATH
HELPER=$ROOT/benches/compare.py
SENSOR=${SENSOR:-$ROOT/target/release/sensor}
# PROFILE=1: sample the receive core with `perf record` during each sensor
# flood, and the test run's CPU while the default-rules program runs each
# frame, and add where the time went, by function, to the report.
PROFILE=${PROFILE:-0}
PROFILE_SECS=${PROFILE_SECS:-3}       # test-run profile: seconds per frame
# A second build for an A/B: when set, testrun measures it too (sensor_b,
# default rules) and the wire variant sensor_ids_b runs it as sensor_ids
# runs SENSOR (add it to WIRE_VARIANTS).
SENSOR_B=${SENSOR_B:-}
OUT=${OUT:-$ROOT/target/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}
RESULTS=$OUT/results.jsonl
METRICS_PORT=9464
export LIBXDP_BPFFS=/run/sensor-bench-bpffs

log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
meta() { $PY -c 'import json,sys; print(json.dumps({"section": sys.argv[1], "text": sys.argv[2]}))' "$1" "$2" >>"$RESULTS"; }
note() { log "NOTE: $*"; meta note "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "compare.sh: run as root (XDP, BPF_PROG_TEST_RUN, network namespaces)" >&2
  exit 1
fi
if [[ $(nproc) -lt 2 ]]; then
  echo "compare.sh: needs at least 2 CPUs (receive core and sender core)" >&2
  exit 1
fi
mkdir -p "$OUT"
: >"$RESULTS"

# ---- cleanup: only what this script started ----------------------------
PIDS=()
NETNS=()
JIT_KALLSYMS="" # the setting PROFILE changed, restored on exit
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  local ns
  for ns in "${NETNS[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  [[ -n $JIT_KALLSYMS ]] && echo "$JIT_KALLSYMS" >/proc/sys/net/core/bpf_jit_kallsyms
  if mountpoint -q "$LIBXDP_BPFFS" 2>/dev/null; then
    rm -rf "$LIBXDP_BPFFS"/xdp-filter "$LIBXDP_BPFFS"/xdp 2>/dev/null || true
    umount "$LIBXDP_BPFFS" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# PROFILE=1: BPF functions are named in /proc/kallsyms (for perf) only if
# the setting is on when the program is loaded; set before any sensor starts.
jit_names_on() {
  if [[ $PROFILE == 1 && -z $JIT_KALLSYMS ]]; then
    JIT_KALLSYMS=$(cat /proc/sys/net/core/bpf_jit_kallsyms)
    echo 1 >/proc/sys/net/core/bpf_jit_kallsyms
  fi
}
trap 'exit 130' INT TERM
forget_pid() { local keep=() p; for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
stop_pid() { # PID [signal]: stop one process this script started, wait for it
  [[ -n ${1:-} ]] || return 0
  kill -"${2:-TERM}" "$1" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}
new_netns() { ip netns del "$1" 2>/dev/null || true; ip netns add "$1"; NETNS+=("$1"); }

# ---- packages ----------------------------------------------------------
declare -A HAVE=()
ensure_packages() {
  local pkg missing=() updated=0
  local wanted=(iproute2 procps ethtool tcpdump python3-scapy curl xdp-tools netsniff-ng fastnetmon)
  [[ $PROFILE == 1 ]] && wanted+=(linux-perf)
  for pkg in "${wanted[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      HAVE[$pkg]=1
    else
      missing+=("$pkg")
    fi
  done
  for pkg in "${missing[@]}"; do
    if ((updated == 0)); then
      log "installing missing Debian packages: ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
      updated=1
    fi
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1; then
      HAVE[$pkg]=1
      # The package starts its daemon (default configuration) under
      # systemd: this script only wants the binary.
      if [[ $pkg == fastnetmon && -d /run/systemd/system ]]; then
        systemctl disable --now fastnetmon >/dev/null 2>&1 || true
        note "fastnetmon was installed for this benchmark; its systemd service was stopped and disabled"
      fi
    else
      HAVE[$pkg]=0
      note "Debian package $pkg could not be installed here: its columns are skipped"
    fi
  done
  for pkg in iproute2 procps python3-scapy; do
    [[ ${HAVE[$pkg]:-0} == 1 ]] || { echo "compare.sh: $pkg is required" >&2; exit 1; }
  done
}
have() { [[ ${HAVE[$1]:-0} == 1 ]]; }

build_sensor() {
  if [[ -n ${SENSOR_PREBUILT:-} ]]; then
    log "using SENSOR=$SENSOR as it is (SENSOR_PREBUILT set)"
  else
    # Under sudo, build as the invoking user with their toolchain (rustup
    # installs per user), so target/ stays theirs; as root, root's.
    local as=()
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
      local home; home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
      [[ -x $home/.cargo/bin/cargo ]] && as=(sudo -u "$SUDO_USER" -H env "PATH=$home/.cargo/bin:$PATH")
    fi
    "${as[@]}" bash -c 'command -v bpf-linker >/dev/null' || "${as[@]}" scripts/bootstrap.sh
    log "building the sensor (release)"
    "${as[@]}" cargo build --release -p sensor --quiet 2>&1 | { grep -v '^warning: sensor@' || true; }
  fi
  [[ -x $SENSOR ]] || { echo "compare.sh: no sensor binary at $SENSOR" >&2; exit 1; }
}

machine() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  meta meta "machine: $(nproc) CPUs \"$cpu\", $(free -g | awk '/^Mem:/{print $2}') GiB, Linux $(uname -r)"
  meta meta "sensor $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (uncommitted changes)'); Debian packages: $(dpkg-query -W -f '${Package} ${Version}, ' xdp-tools netsniff-ng fastnetmon tcpdump 2>/dev/null | sed 's/, $//')"
}
loadavg() { # LABEL
  local l; l=$(cut -d' ' -f1-3 /proc/loadavg)
  log "load average ($1): $l"
  meta meta "load average at $1: $l"
}

if_prog_id() { # NETNS IFACE -> the XDP program id attached to IFACE
  ip -n "$1" -j -d link show dev "$2" | $PY -c 'import json,sys; d=json.load(sys.stdin)[0]; print(d["xdp"]["prog"]["id"])'
}
wait_for() { # FILE PATTERN PID SECONDS
  local i
  for i in $(seq 1 $(($4 * 20))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { log "process $3 exited early:"; sed 's/^/    /' "$1" >&2; return 1; }
    sleep 0.05
  done
  log "timed out waiting for '$2' in $1"; sed 's/^/    /' "$1" >&2; return 1
}
xdp_filter_load() { # NETNS IFACE: native mode and a few port/address rules, none matching the traffic
  ip netns exec "$1" xdp-filter load -m native "$2" >/dev/null
  local r
  for r in "port 23" "port 445" "port 3389" "ip 203.0.113.66" "ip 2001:db8:bad::1"; do
    # shellcheck disable=SC2086
    ip netns exec "$1" xdp-filter $r >/dev/null
  done
}
xdp_filter_unload() { ip netns exec "$1" xdp-filter unload "$2" >/dev/null 2>&1 || true; }
mount_bpffs() {
  mkdir -p "$LIBXDP_BPFFS"
  mountpoint -q "$LIBXDP_BPFFS" || mount -t bpf bpf "$LIBXDP_BPFFS"
}

# ========================================================================
# 1. BPF_PROG_TEST_RUN
# ========================================================================
section_testrun() {
  loadavg "start of testrun"
  jit_names_on
  local ns=sbench-tr frames=$OUT/frames gen=$OUT/generated-rules
  $PY "$HELPER" frames "$frames"

  # The generated rule set: GEN_RULES rules, or as many as the sensor
  # accepts (found by `sensor rules check` failing), whichever is less.
  local n=$GEN_RULES lo=0 hi=$GEN_RULES mid
  $PY "$HELPER" rules "$n" "$gen"
  if ! "$SENSOR" rules check "$gen" >/dev/null 2>"$OUT/rules-check.err"; then
    while ((hi - lo > 1)); do
      mid=$(((lo + hi) / 2))
      $PY "$HELPER" rules "$mid" "$gen"
      if "$SENSOR" rules check "$gen" >/dev/null 2>&1; then lo=$mid; else hi=$mid; fi
    done
    n=$lo
    $PY "$HELPER" rules "$n" "$gen"
    note "the sensor rejects $GEN_RULES enabled rules (\`sensor rules check\`: $(grep -m1 -i 'error\|rule' "$OUT/rules-check.err" | cut -c1-160)); the generated set has the most it accepts, $n"
  fi
  meta meta "generated rule set: $n enabled rules (benches/compare.py rules $n), none matching the frames"

  new_netns "$ns"
  ip -n "$ns" link set lo up
  local pair
  for pair in trxf trsd trsg trsb; do
    ip -n "$ns" link add "${pair}0" type veth peer name "${pair}1"
    ip -n "$ns" link set "${pair}0" up
    ip -n "$ns" link set "${pair}1" up
  done
  local specs=("xdp_pass=pass")
  if have xdp-tools; then
    mount_bpffs
    xdp_filter_load "$ns" trxf0
    specs+=("xdp_filter=$(if_prog_id "$ns" trxf0)")
    meta meta "xdp-filter: $(ip -n "$ns" -d link show dev trxf0 | grep -o 'prog/xdp id [0-9]* name [a-z_]*') — libxdp $(ip netns exec "$ns" xdp-loader status trxf0 2>&1 | grep -q 'xdp_dispatcher' && echo 'dispatcher with the filter as its component (as on the wire)' || echo 'loaded the filter program directly, without its dispatcher (the dispatcher compatibility check failed on this kernel), so the program test-run is the one that runs on the wire')"
  else
    note "xdp-tools missing: no xdp-filter column"
  fi
  local pid_d pid_g
  taskset -c $TX_CPU ip netns exec "$ns" "$SENSOR" run --iface trsd0 --rules "$ROOT/rules" --xdp-mode native \
    --json "$OUT/testrun-default.json" 2>"$OUT/testrun-default.log" &
  pid_d=$!; PIDS+=("$pid_d")
  taskset -c $TX_CPU ip netns exec "$ns" "$SENSOR" run --iface trsg0 --rules "$gen" --xdp-mode native \
    --json "$OUT/testrun-generated.json" 2>"$OUT/testrun-generated.log" &
  pid_g=$!; PIDS+=("$pid_g")
  wait_for "$OUT/testrun-default.log" "sensor attached" "$pid_d" 60
  wait_for "$OUT/testrun-generated.log" "sensor attached" "$pid_g" 60
  specs+=("sensor_default=$(if_prog_id "$ns" trsd0)" "sensor_generated=$(if_prog_id "$ns" trsg0)")
  local pid_b=""
  if [[ -n $SENSOR_B ]]; then
    # The second build of an A/B, with the default rules.
    taskset -c $TX_CPU ip netns exec "$ns" "$SENSOR_B" run --iface trsb0 --rules "$ROOT/rules" --xdp-mode native \
      --json "$OUT/testrun-b.json" 2>"$OUT/testrun-b.log" &
    pid_b=$!; PIDS+=("$pid_b")
    wait_for "$OUT/testrun-b.log" "sensor attached" "$pid_b" 60
    specs+=("sensor_b=$(if_prog_id "$ns" trsb0)")
  fi
  log "BPF_PROG_TEST_RUN: ${specs[*]}; $REPEAT repetitions per frame, $ROUNDS rounds"
  local r
  for r in $(seq 1 "$ROUNDS"); do
    taskset -c $RX_CPU $PY "$HELPER" testrun "$RESULTS" "$r" "$REPEAT" "$frames" "${specs[@]}"
    # The SYN of a spoofed flood: a new source every run, its state cold.
    taskset -c $RX_CPU $PY "$HELPER" spoofed "$RESULTS" "$r" "$SPOOFED" "${specs[@]}"
  done
  # Issue #14's tunnel bound, a ratio of two frames through one program:
  # measured in adjacent pairs, which the machine's changes of speed
  # between the rounds' measurements do not split (compare.py pairs).
  log "BPF_PROG_TEST_RUN pairs: VXLAN ACK against plain ACK, $PAIRS pairs of $PAIR_REPEAT repetitions"
  taskset -c $RX_CPU $PY "$HELPER" pairs "$RESULTS" "$PAIRS" "$PAIR_REPEAT" "$frames" \
    "sensor_default=$(if_prog_id "$ns" trsd0)" ipv4_tcp_ack vxlan_ipv4_tcp_ack
  if [[ $PROFILE == 1 ]] && have linux-perf; then
    profile_testrun "$(if_prog_id "$ns" trsd0)" "$frames"
  fi
  stop_pid "$pid_d"; stop_pid "$pid_g"; stop_pid "$pid_b"
  have xdp-tools && xdp_filter_unload "$ns" trxf0
  ip netns del "$ns"
  loadavg "end of testrun"
}

# Where the default-rules program's test-run time goes, frame by frame: the
# test-run CPU sampled while compare.py runs the program on one frame over
# and over (software clock; a VM has no hardware counters). After the
# rounds, so the sampling's cost touches none of their figures.
profile_testrun() {
  local id=$1 frames=$2 case data
  log "BPF_PROG_TEST_RUN profile: program $id, ${PROFILE_SECS}s per frame"
  for case in $($PY -c 'import sys; sys.path.insert(0, sys.argv[1]); import compare; print(*compare.FRAME_ORDER, compare.SPOOFED_CASE)' "$ROOT/benches"); do
    data=$OUT/perf-testrun-$case.data
    perf record -q -C $RX_CPU -o "$data" -- \
      taskset -c $RX_CPU $PY "$HELPER" profrun "$id" "$frames" "$case" "$PROFILE_SECS" "$REPEAT" >>"$OUT/profrun.log" 2>&1 || true
    perf script -G -F ip,sym -i "$data" 2>/dev/null | $PY "$HELPER" profile "$RESULTS" 0 "$case" testrun:sensor_default || true
    rm -f "$data"
  done
}

# ========================================================================
# 2. End to end on a veth pair
# ========================================================================
NS_I=sbench-inj NS_S=sbench-sen IF_I=sbinj IF_S=sbsen
SLEEP_I="" SLEEP_S="" VPID="" HPID=""

wire_setup() {
  new_netns "$NS_I"; new_netns "$NS_S"
  ip link add "$IF_I" netns "$NS_I" type veth peer name "$IF_S" netns "$NS_S"
  local ns ifname
  for ns in "$NS_I:$IF_I" "$NS_S:$IF_S"; do
    ifname=${ns#*:}; ns=${ns%%:*}
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$ifname" up
  done
  # veth only runs a NAPI instance (and so can have its receive path on a
  # thread of its own) with GRO on or an XDP program attached: GRO on keeps
  # the receive path the same for every variant, nothing attached included.
  ip netns exec "$NS_S" ethtool -K "$IF_S" gro on >/dev/null
  # ... and only for frames GRO could aggregate: a sender with TSO on
  # would have its frames bypass NAPI (netif_rx on the sending core).
  ip netns exec "$NS_I" ethtool -K "$IF_I" tso off gso off >/dev/null
  ip netns exec "$NS_S" sh -c "echo 1 > /sys/class/net/$IF_S/threaded"
  ip netns exec "$NS_I" sleep infinity & SLEEP_I=$!; PIDS+=("$SLEEP_I")
  ip netns exec "$NS_S" sleep infinity & SLEEP_S=$!; PIDS+=("$SLEEP_S")
  local mac
  mac=$(ip -n "$NS_S" -j link show dev "$IF_S" | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
  # 65,536 random sources (198.18.0.0/16, RFC 2544's benchmarking range)
  # to one victim; checksums computed by trafgen.
  cat >"$OUT/syn.trafgen" <<EOF
{ eth(da=$mac, type=0x0800), ipv4(sa=198.18.0.0, sa[2:2]=drnd(), da=198.51.100.10, ttl=64, id=drnd()), tcp(sp=drnd(), dp=80, seq=drnd(), syn, win=64240) }
EOF
  cat >"$OUT/synfin.trafgen" <<EOF
{ eth(da=$mac, type=0x0800), ipv4(sa=198.18.0.0, sa[2:2]=drnd(), da=198.51.100.10, ttl=64, id=drnd()), tcp(sp=drnd(), dp=80, seq=drnd(), syn, fin, win=64240) }
EOF
  cat >"$OUT/drop.yaml" <<EOF
# compare.sh: drop mode with the flood's sources in the static blocklist.
iface: $IF_S
rules: $ROOT/rules
mode: drop
xdp_mode: native
json: $OUT/wire-sensor.json
metrics: 127.0.0.1:$METRICS_PORT
drop:
  allowlist: []
  blocklist: [198.18.0.0/15]
  dry_run: false
EOF
  if have fastnetmon; then
    echo "198.51.100.0/24" >"$OUT/fastnetmon-networks"
    : >"$OUT/fastnetmon-whitelist"
    # Its Debian default, changed to: mirror capture (AF_PACKET) on the
    # sensor-side veth, no bans, no scripts, no API, no usage report,
    # files in OUT.
    sed -e "s|^interfaces = .*|interfaces = $IF_S|" \
        -e "s|^mirror_afpacket = .*|mirror_afpacket = on|" \
        -e "s|^enable_ban = .*|enable_ban = off|" \
        -e "s|^enable_ban_ipv6 = .*|enable_ban_ipv6 = off|" \
        -e "s|^enable_api = .*|enable_api = off|" \
        -e "s|^disable_usage_report = .*|disable_usage_report = on|" \
        -e "s|^notify_script_path = .*|notify_script_path = /bin/true|" \
        -e "s|^networks_list_path = .*|networks_list_path = $OUT/fastnetmon-networks|" \
        -e "s|^white_list_path = .*|white_list_path = $OUT/fastnetmon-whitelist|" \
        -e "s|^pid_path = .*|pid_path = $OUT/fastnetmon.pid|" \
        -e "s|^cli_stats_file_path = .*|cli_stats_file_path = $OUT/fastnetmon.dat|" \
        -e "s|^cli_stats_ipv6_file_path = .*|cli_stats_ipv6_file_path = $OUT/fastnetmon_ipv6.dat|" \
        -e "s|^mirror_af_packet_fanout_mode = .*|mirror_af_packet_fanout_mode = cpu|" \
        /etc/fastnetmon.conf >"$OUT/fastnetmon.conf"
  fi
}

napi_tid() { pgrep "^napi/$IF_S-" | head -n1; }

variant_available() {
  case $1 in
    xdp_filter) have xdp-tools ;;
    fastnetmon) have fastnetmon ;;
    tcpdump_*) have tcpdump ;;
    sensor_ids_b) [[ -n $SENSOR_B && -x $SENSOR_B ]] ;;
    *) return 0 ;;
  esac
}

variant_start() { # VARIANT: attach / start it; sets VPID (process whose CPU is counted)
  VPID=""
  local v=$1 logf=$OUT/wire-variant.log
  rm -f "$OUT/wire-sensor.json" "$logf"
  case $v in
    nothing) ;;
    xdp_pass)
      taskset -c $TX_CPU ip netns exec "$NS_S" $PY "$HELPER" attach-pass "$IF_S" >"$logf" 2>&1 &
      HPID=$!; PIDS+=("$HPID"); wait_for "$logf" attached "$HPID" 10 ;;
      # (VPID stays empty: the helper only holds the link and sleeps)
    xdp_filter) xdp_filter_load "$NS_S" "$IF_S" ;;
    sensor_ids|sensor_ids_b)
      local bin=$SENSOR; [[ $v == sensor_ids_b ]] && bin=$SENSOR_B
      nice -n -10 taskset -c $RX_CPU ip netns exec "$NS_S" "$bin" run --iface "$IF_S" --rules "$ROOT/rules" --xdp-mode native \
        --json "$OUT/wire-sensor.json" --metrics "127.0.0.1:$METRICS_PORT" 2>"$logf" &
      VPID=$!; PIDS+=("$VPID"); wait_for "$logf" "sensor attached" "$VPID" 60 ;;
    sensor_drop_blocked)
      nice -n -10 taskset -c $RX_CPU ip netns exec "$NS_S" "$SENSOR" run --config "$OUT/drop.yaml" 2>"$logf" &
      VPID=$!; PIDS+=("$VPID"); wait_for "$logf" "sensor attached" "$VPID" 60 ;;
    fastnetmon)
      nice -n -10 taskset -c $RX_CPU ip netns exec "$NS_S" fastnetmon --configuration_file "$OUT/fastnetmon.conf" \
        --log_file "$OUT/fastnetmon.log" --disable_pid_logic >"$logf" 2>&1 &
      VPID=$!; PIDS+=("$VPID"); sleep 3
      kill -0 "$VPID" 2>/dev/null || { log "fastnetmon exited:"; tail -n 20 "$OUT/fastnetmon.log" "$logf" >&2; return 1; } ;;
    inspect_filter|inspect_all)
      local f=(); [[ $v == inspect_filter ]] && f=(--filter "$INSPECT_FILTER")
      nice -n -10 taskset -c $RX_CPU ip netns exec "$NS_S" "$SENSOR" inspect --iface "$IF_S" "${f[@]}" \
        >"$OUT/wire-inspect.out" 2>"$logf" &
      VPID=$!; PIDS+=("$VPID"); wait_for "$logf" "listening on" "$VPID" 60 ;;
    tcpdump_filter|tcpdump_all)
      local f=(); [[ $v == tcpdump_filter ]] && f=("$INSPECT_FILTER")
      nice -n -10 taskset -c $RX_CPU ip netns exec "$NS_S" tcpdump -nn -i "$IF_S" "${f[@]}" >"$OUT/wire-tcpdump.out" 2>"$logf" &
      VPID=$!; PIDS+=("$VPID"); wait_for "$logf" "listening on" "$VPID" 30 ;;
  esac
}

variant_stop() { # VARIANT
  case $1 in
    xdp_pass) stop_pid "$HPID"; HPID="" ;;
    xdp_filter) xdp_filter_unload "$NS_S" "$IF_S" ;;
    sensor_*|inspect_*|tcpdump_*) stop_pid "$VPID" TERM ;;
    fastnetmon) stop_pid "$VPID" TERM ;;
  esac
  VPID=""
}

wire_run() { # ROUND SCENARIO VARIANT
  local r=$1 scen=$2 v=$3 cfg rate=()
  case $scen in
    syn_100kpps) cfg=$OUT/syn.trafgen; rate=(-b "${SLOW_PPS}pps" -n $((SLOW_PPS * FLOOD_SECS))) ;;
    # As fast as trafgen sends with sendto(2) (-t 0): its TX_RING mode
    # gives up ("Flushing TX_RING failed") as soon as the veth's ring is
    # full, since trafgen cannot raise the socket buffer limits from
    # inside a network namespace.
    syn_max) cfg=$OUT/syn.trafgen; rate=(-n 0 -t 0) ;;
    synfin_max) cfg=$OUT/synfin.trafgen; rate=(-n 0 -t 0) ;;
  esac
  variant_start "$v" || { note "$scen/$v round $r: could not start, skipped"; variant_stop "$v"; return 0; }
  local tid
  tid=$(napi_tid)
  [[ -n $tid ]] || { echo "compare.sh: no napi thread for $IF_S" >&2; exit 1; }
  taskset -pc $RX_CPU "$tid" >/dev/null
  renice -n -10 -p "$tid" >/dev/null
  local snapspec=(t=time napi=sched:"$tid" soft=core:"$RX_CPU" user=procsched:"$VPID" rx=snmp:"$SLEEP_S"
                  tx=dev:"$SLEEP_I:$IF_I:tx" txdrop=dev:"$SLEEP_I:$IF_I:txdrop")
  local before after watch_pid="" watch_out=$OUT/wire-watch.json
  rm -f "$watch_out" "$OUT/wire-watch.ready"
  if [[ $v == sensor_ids* && $scen == syn_* ]]; then
    nice -n -15 taskset -c $TX_CPU $PY "$HELPER" watch "$OUT/wire-sensor.json" 100301 $((FLOOD_SECS + 3)) "$SLEEP_I" "$IF_I" \
      "$OUT/wire-watch.ready" >"$watch_out" &
    watch_pid=$!; PIDS+=("$watch_pid")
    local i
    for i in $(seq 1 200); do [[ -e $OUT/wire-watch.ready ]] && break; sleep 0.01; done
  fi
  local perf_pid="" perf_data=$OUT/perf-$scen-$v-$r.data
  if [[ $PROFILE == 1 && $v == sensor_ids* ]] && have linux-perf; then
    # The receive core only, for the flood's length (software clock: a
    # VM has no hardware counters); BPF functions named via kallsyms.
    perf record -q -C $RX_CPU -o "$perf_data" -- sleep "$FLOOD_SECS" >/dev/null 2>&1 &
    perf_pid=$!; PIDS+=("$perf_pid")
  fi
  before=$($PY "$HELPER" snap "${snapspec[@]}")
  if [[ ${rate[0]} == -b ]]; then
    ip netns exec "$NS_I" nice -n -10 taskset -c $TX_CPU trafgen -i "$cfg" -o "$IF_I" -P 1 "${rate[@]}" -Q -C \
      >>"$OUT/trafgen.log" 2>&1 || true
  else
    timeout -s INT "$FLOOD_SECS" ip netns exec "$NS_I" nice -n -10 taskset -c $TX_CPU trafgen -i "$cfg" -o "$IF_I" -P 1 "${rate[@]}" -Q -C \
      >>"$OUT/trafgen.log" 2>&1 || true
  fi
  local t_end; t_end=$(date +%s.%N)
  if [[ -n $perf_pid ]]; then
    wait "$perf_pid" 2>/dev/null || true
    forget_pid "$perf_pid"
  fi
  sleep 0.3
  after=$($PY "$HELPER" snap "${snapspec[@]}")
  if [[ -n $perf_pid ]]; then
    perf script -G -F ip,sym -i "$perf_data" 2>/dev/null | $PY "$HELPER" profile "$RESULTS" "$r" "$scen" "$v" || true
    rm -f "$perf_data"
  fi
  local extra="{}"
  if [[ $v == sensor_* ]]; then
    sleep 1.5 # the metrics snapshot is refreshed once a second
    local mfile=$OUT/metrics-$scen-$v-$r.txt
    ip netns exec "$NS_S" curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" >"$mfile" || true
    extra=$($PY "$HELPER" metrics "$mfile")
  fi
  if [[ $v == fastnetmon && $scen == syn_* ]]; then
    sleep 1.5 # it checks its thresholds once a second
    extra=$($PY "$HELPER" fnmlog "$OUT/fastnetmon.log" "$before" 198.51.100.10)
  fi
  [[ -n $watch_pid ]] && { wait "$watch_pid" 2>/dev/null || true; forget_pid "$watch_pid"; }
  variant_stop "$v"
  local alerts="{}"
  if [[ $v == sensor_ids* && -s $OUT/wire-sensor.json ]]; then
    alerts=$($PY "$HELPER" alerts "$OUT/wire-sensor.json" 100001)
  fi
  printf '%s %s %s %s\n%s\n%s\n' "$r" "$scen" "$v" "$t_end" "$before" "$after" >>"$OUT/wire-snaps.log"
  $PY "$HELPER" record "$RESULTS" "$r" "$scen" "$v" "$before" "$after" "$t_end" "$extra" "$alerts" \
    "$(cat "$watch_out" 2>/dev/null || echo '{}')"
}

section_wire() {
  if ! have netsniff-ng; then
    note "netsniff-ng (trafgen) missing: no end-to-end section"
    return 0
  fi
  loadavg "start of wire"
  have xdp-tools && mount_bpffs
  jit_names_on
  wire_setup
  local variants=() v
  for v in $WIRE_VARIANTS; do
    if variant_available "$v"; then variants+=("$v"); else note "variant $v skipped: its package (for sensor_ids_b: SENSOR_B) is missing"; fi
  done
  local r scen i n=${#variants[@]}
  for r in $(seq 1 "$ROUNDS"); do
    for scen in $WIRE_SCENARIOS; do
      for i in $(seq 0 $((n - 1))); do
        v=${variants[$(((i + r - 1) % n))]}
        log "wire round $r/$ROUNDS: $scen, $v"
        wire_run "$r" "$scen" "$v"
      done
    done
    loadavg "end of wire round $r"
  done
  ip netns del "$NS_I"; ip netns del "$NS_S"
}

# ========================================================================
# 3. Offline: sensor replay against tcpdump -r FILE -w /dev/null
# ========================================================================
section_replay() {
  loadavg "start of replay"
  mkdir -p "$ROOT/target/bench-compare"
  local pcap=$ROOT/target/bench-compare/mixed-$REPLAY_FRAMES.pcap
  if [[ ! -s $pcap ]]; then
    log "writing $pcap ($REPLAY_FRAMES frames)"
    $PY "$HELPER" pcap "$pcap.tmp" "$REPLAY_FRAMES"
    mv "$pcap.tmp" "$pcap"
  fi
  local r t0 t1 v
  for r in $(seq 1 "$ROUNDS"); do
    for v in $( ((r % 2)) && echo "sensor_replay tcpdump_copy" || echo "tcpdump_copy sensor_replay"); do
      t0=$(date +%s.%N)
      case $v in
        sensor_replay) taskset -c $RX_CPU "$SENSOR" replay --pcap "$pcap" --rules "$ROOT/rules" --json /dev/null >/dev/null 2>"$OUT/replay.log" ;;
        tcpdump_copy)
          if have tcpdump; then taskset -c $RX_CPU tcpdump -r "$pcap" -w /dev/null 2>/dev/null; else continue; fi ;;
      esac
      t1=$(date +%s.%N)
      $PY -c 'import json,sys; n=int(sys.argv[5]); print(json.dumps({"section":"replay","round":int(sys.argv[1]),"variant":sys.argv[2],"metric":"pps","frames":n,"value":n/(float(sys.argv[4])-float(sys.argv[3]))}))' \
        "$r" "$v" "$t0" "$t1" "$REPLAY_FRAMES" >>"$RESULTS"
    done
  done
  loadavg "end of replay"
}

# ========================================================================
ensure_packages
build_sensor
machine
loadavg "start"
case $WHAT in
  testrun) section_testrun ;;
  wire) section_wire ;;
  replay) section_replay ;;
  all) section_testrun; section_wire; section_replay ;;
esac
loadavg "end"
$PY "$HELPER" report "$RESULTS" >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
log "results: $RESULTS; table: $OUT/table.md"
