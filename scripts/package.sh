#!/usr/bin/env bash
# Builds the Debian package: target/debian/sensor_<version>_amd64.deb with
# the binary (XDP program inside), the default rules in /etc/sensor/rules/,
# the example configuration as /etc/sensor/sensor.yaml (conffiles), the
# systemd unit and the docs. Installs cargo-deb if it is missing.
#
#   scripts/package.sh          # prints the path of the .deb on its last line
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
scripts/bootstrap.sh >&2
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "[package] installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --locked cargo-deb --version "=$CARGO_DEB_VERSION" >&2
fi
# aya-build echoes the kernel build as cargo warnings: keep the log readable.
cargo deb -p sensor --output target/debian/ 2>&1 | { grep -v '^warning: sensor@' || true; } >&2
deb=$(ls -t target/debian/sensor_*_amd64.deb | head -n1)
echo "$deb"
