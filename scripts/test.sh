#!/usr/bin/env bash
# Runs every test of the sensor on a fresh machine: installs the toolchain
# and packages it needs (scripts/bootstrap.sh), checks formatting and lints,
# then runs the unit, kernel (BPF_PROG_TEST_RUN), corpus and end-to-end
# (network namespace) tests.
#
# Tests that need root and BPF print "SKIP ..." when run unprivileged; with
# CI=true they must run (CI runs this as root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
# The kernel program is linted for its own target (bpf, nightly, core only);
# on the host it would meet the userspace's std through shared features.
cargo clippy --workspace --exclude sensor-xdp --all-targets --quiet -- -D warnings
cargo +nightly clippy -p sensor-xdp --target bpfel-unknown-none -Z build-std=core --release --quiet -- -D warnings

echo "== cargo test"
# aya-build echoes the kernel build as cargo warnings: keep the log readable.
cargo test --workspace --exclude sensor-xdp --no-fail-fast 2>&1 | { grep -v '^warning: sensor@' || true; }

echo "== Debian package"
# Builds target/debian/sensor_<version>_amd64.deb, installs it into a
# scratch root, checks its rules with the installed binary, purges it.
scripts/package_check.sh
