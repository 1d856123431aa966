#!/usr/bin/env bash
# Checks the Debian package (scripts/package.sh) the way an operator meets
# it: installs it with dpkg into a scratch root (its own dpkg database, so
# the machine's is untouched), runs the installed binary's
# `sensor rules check` on the installed /etc/sensor/rules, checks the
# conffiles, unit and docs, then removes it and checks nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:-$(scripts/package.sh | tail -n1)}
root=$(mktemp -d)
trap 'rm -rf "$root" "$root.dpkg.log"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: > "$root/var/lib/dpkg/status"
dpkg_root() { dpkg --root="$root" --force-not-root --force-depends --force-script-chrootless "$@"; }

echo "== dpkg -i $(basename "$deb") into a scratch root"
# The scratch root has no libc6 to satisfy the dependency: forced, and
# dpkg's complaint about it kept out of the log unless it fails.
dpkg_root -i "$deb" >"$root.dpkg.log" 2>&1 || { cat "$root.dpkg.log" >&2; exit 1; }
for path in usr/bin/sensor etc/sensor/sensor.yaml lib/systemd/system/sensor.service \
            etc/sensor/rules/flags.yaml usr/share/doc/sensor/CONTRACT.md; do
  [[ -e $root/$path ]] || { echo "package_check: /$path is missing" >&2; exit 1; }
done
grep -qx "/etc/sensor/sensor.yaml" "$root/var/lib/dpkg/info/sensor.conffiles" \
  || { echo "package_check: /etc/sensor/sensor.yaml is not a conffile" >&2; exit 1; }
echo "== sensor rules check /etc/sensor/rules (installed binary and rules)"
"$root/usr/bin/sensor" rules check "$root/etc/sensor/rules" | tail -n 3
echo "== dpkg --purge sensor"
dpkg_root --purge sensor >/dev/null
left=$(find "$root" -path "$root/var" -prune -o -type f -print)
if [[ -n $left ]]; then
  echo "package_check: left behind after purge:" >&2; echo "$left" >&2; exit 1
fi
echo "package_check: installed, rules checked, purged cleanly"
