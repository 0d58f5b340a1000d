#!/usr/bin/env bash
# The complete unattended installation through kiln, timed: the real Debian 12 installer
# (tests/fixtures/debian-installer.sh) with the debian-12 preset, from a local mirror
# (tests/fixtures/debian-mirror.sh) served on 127.0.0.1, then `kiln check` on the result —
# which must pass without `kiln configure`, since the preset makes the image CI-ready.
#
# Too slow for CI under TCG (tens of minutes); run it before claiming the preset works.
# Usage (root): benches/debian-install.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=${1:-$(mktemp -d /tmp/kiln-debian-install.XXXXXX)}
mkdir -p "$work"
started=$(date +%s)
phase() { printf '[debian-install %4ds] %s\n' "$(($(date +%s) - started))" "$*" >&2; }

phase "building the mirror (the installer's udebs and the base system)"
if ! mirror_line=$(tests/fixtures/debian-mirror.sh | tail -n 1); then
    phase "BLOCKED: the host's Debian mirror lacks files the installer needs (see above);"
    phase "a complete installation cannot run from it"
    exit 2
fi
mirror=${mirror_line#KILN_FIXTURE_DEBIAN_MIRROR=}
iso_line=$(tests/fixtures/debian-installer.sh | tail -n 1)
iso=${iso_line#KILN_FIXTURE_DI_ISO=}
cargo build --release --quiet
kiln=$PWD/target/release/kiln

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$mirror" "$port" >"$work/mirror.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

cd "$work"
printf 'builder-pass\n' >password
"$kiln" create debian.qcow2 --size 8G --force
phase "installing (TCG)"
install_started=$(date +%s)
"$kiln" --memory 2048 install debian.qcow2 --iso "$iso" --preset debian-12 --user builder \
    --password-file password --mirror "http://10.0.2.2:$port/debian" --insecure-mirror --timeout 5400 \
    >install.serial.txt
install_seconds=$(($(date +%s) - install_started))
phase "installed in ${install_seconds}s; checking the image as the CI driver boots it"
check_started=$(date +%s)
"$kiln" check debian.qcow2
check_seconds=$(($(date +%s) - check_started))
phase "kiln check passed in ${check_seconds}s"
echo "debian-12 preset: install ${install_seconds}s, check ${check_seconds}s, total $(($(date +%s) - started))s"
