#!/usr/bin/env bash
# Idempotent toolchain bootstrap for the sensor: everything a fresh Debian
# machine needs to build the kernel program and run every test.
#
#   scripts/bootstrap.sh          # install what is missing; a second run takes seconds
#
# What it installs and why:
#   - Debian packages: iproute2 (netns/veth tests), tcpreplay (frame injection),
#     rsyslog and rsyslog-gnutls (real syslog peer for the SIEM tests, plain
#     and over TLS), openssl (the TLS tests make their own CA and certificates),
#     tcpdump (what arrives behind a drop-mode sensor), python3-scapy (the demo's traffic; the
#     tests build their frames in Rust), ethtool (debugging), redis-server
#     (a real Redis, with redis-cli, for the Redis sink's tests).
#   - rust-src and clippy for the nightly toolchain (aya-build compiles core
#     for bpfel; the kernel program is linted for its own target).
#   - bpf-linker 0.13 built against the nightly's own libLLVM, so the bitcode
#     rustc emits and the linker that reads it agree on the LLVM version.
#   - Optional, only with FUZZ_BOOTSTRAP=1 (scripts/fuzz.sh sets it; CI does
#     not): cargo-fuzz, which runs the libFuzzer targets in fuzz/.
set -euo pipefail

log() { printf '[bootstrap] %s\n' "$*" >&2; }

NIGHTLY=${SENSOR_NIGHTLY:-nightly}
BPF_LINKER_VERSION=0.13
DEB_PACKAGES=(iproute2 tcpreplay rsyslog rsyslog-gnutls openssl python3-scapy tcpdump ethtool redis-server)

# ---- Debian packages ---------------------------------------------------
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing Debian packages (${missing[*]}); run this script as root to install them"
    exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- nightly toolchain + rust-src ---------------------------------------
if ! rustup toolchain list | grep -q "^${NIGHTLY}"; then
  log "installing the ${NIGHTLY} toolchain"
  rustup toolchain install "$NIGHTLY" --profile minimal
fi
installed=$(rustup component list --toolchain "$NIGHTLY" --installed)
for component in rust-src clippy; do
  if ! grep -q "^${component}" <<<"$installed"; then
    log "adding ${component} to ${NIGHTLY}"
    rustup component add "$component" --toolchain "$NIGHTLY"
  fi
done
for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^${component}"; then
    log "adding ${component} to the default toolchain"
    rustup component add "$component"
  fi
done

# ---- bpf-linker against the nightly's libLLVM ---------------------------
if bpf-linker --version 2>/dev/null | grep -q "bpf-linker ${BPF_LINKER_VERSION}"; then
  :
else
  sysroot=$(rustc +"$NIGHTLY" --print sysroot)
  llvm_so=$(ls "$sysroot"/lib/libLLVM.so.*-nightly 2>/dev/null | head -n1 || true)
  if [[ -z "$llvm_so" ]]; then
    log "no libLLVM.so.*-nightly under $sysroot/lib: cannot build bpf-linker"
    exit 1
  fi
  llvm_major=$(basename "$llvm_so" | sed -E 's/^libLLVM\.so\.([0-9]+).*/\1/')
  prefix="${CARGO_HOME:-$HOME/.cargo}/sensor-llvm-prefix"
  mkdir -p "$prefix/lib"
  ln -sf "$llvm_so" "$prefix/lib/libLLVM.so"
  log "building bpf-linker ${BPF_LINKER_VERSION} against $(basename "$llvm_so") (takes a few minutes)"
  # rpath: bpf-linker loads the nightly's libLLVM at run time too.
  LLVM_PREFIX="$prefix" RUSTFLAGS="-C link-arg=-Wl,-rpath,$sysroot/lib" \
    cargo +stable install --force --locked bpf-linker --version "~${BPF_LINKER_VERSION}" \
    --no-default-features --features "llvm-${llvm_major}"
fi

# ---- cargo-fuzz (optional: scripts/fuzz.sh only) ------------------------
if [[ ${FUZZ_BOOTSTRAP:-0} == 1 ]] && ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo +stable install --locked cargo-fuzz
fi

bpf-linker --version >/dev/null || { log "bpf-linker does not run"; exit 1; }
log "toolchain ready: $(bpf-linker --version 2>&1 | head -n1), $(rustc +"$NIGHTLY" --version)"
