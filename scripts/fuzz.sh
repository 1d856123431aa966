#!/usr/bin/env bash
# Fuzzes the sensor's input decoders with cargo-fuzz (libFuzzer), one target
# after the other (one core each), SECONDS per target:
#
#   scripts/fuzz.sh SECONDS [TARGET...]     # default: every target in fuzz/
#
# Targets: parse (header parser + detector), rules (YAML → compiled tables),
# config, pcap (pcap/pcapng reader + replay), filter (inspect filter
# language vs. its stack machine), control (control-socket decoders).
# Seeds: fuzz/corpus/<target>/ (committed). What libFuzzer finds beyond
# them goes to fuzz/work/<target>/, crashes to fuzz/artifacts/<target>/,
# logs to fuzz/logs/ (none of them committed). Ends with one line per target:
#   fuzz: TARGET SECONDS s, N execs, F findings
# and exits 1 when anything was found. CI does not run this.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh SECONDS [TARGET...]" >&2
  exit 2
fi
seconds=$1
shift

FUZZ_BOOTSTRAP=1 scripts/bootstrap.sh

NIGHTLY=${SENSOR_NIGHTLY:-nightly}
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cd fuzz && cargo +"$NIGHTLY" fuzz list)
fi

# The fuzz targets need the userspace only: skip building the XDP program.
export AYA_BUILD_SKIP=1
echo "== cargo fuzz build"
(cd fuzz && cargo +"$NIGHTLY" fuzz build 2>&1 | { grep -v '^warning: sensor@' || true; })
mkdir -p fuzz/logs
summary=()
found=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
  before=$(find "fuzz/artifacts/$target" -type f | wc -l)
  log="fuzz/logs/$target.log"
  echo "== fuzz $target for ${seconds}s (log: $log)"
  start=$(date +%s)
  status=0
  (cd fuzz && cargo +"$NIGHTLY" fuzz run "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) \
    >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1 || true)
  after=$(find "fuzz/artifacts/$target" -type f | wc -l)
  findings=$((after - before))
  if ((status != 0 && findings == 0)); then
    echo "fuzz $target exited with status $status without an artifact; see $log" >&2
    findings=1
  fi
  ((findings == 0)) || found=1
  summary+=("fuzz: $target ${elapsed} s, ${execs:-0} execs, $findings findings")
done
printf '%s\n' "${summary[@]}"
exit "$found"
