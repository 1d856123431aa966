#!/usr/bin/env bash
# Differential test of the XDP program against replay's evaluation:
#
#   sudo scripts/difftest.sh N [SEED]     # N generated frames (SEED: decimal or 0x...)
#
# Runs tests/difftest.rs (the same test the suite runs with 100,000 frames)
# for N frames; the kernel side needs root. The last line is
#   difftest: N frames, D disagreements
# and the exit status is non-zero when D > 0. See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/difftest.sh N [SEED]" >&2
  exit 2
fi
frames=$1
seed=${2:-0x5e450011}

scripts/bootstrap.sh
log=$(mktemp -t difftest.XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0
DIFFTEST_FRAMES=$frames DIFFTEST_SEED=$seed CI=true \
  cargo test -p sensor --test difftest -- --nocapture >"$log" 2>&1 || status=$?
grep -v -e '^warning: sensor@' -e '^difftest: ' "$log" | grep -E '^(NOTE|DISAGREEMENT|  (frame|kernel|replay) |error|thread|SKIP)' || true
if ! grep -E '^difftest: ' "$log" | tail -n1 | grep .; then
  cat "$log" >&2
  echo "difftest: did not run (status $status)" >&2
  exit 1
fi
exit "$status"
