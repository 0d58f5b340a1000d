#!/usr/bin/env bash
# Measured, not a test: `kiln configure` beside a reference that does the same work in the
# guest with plain OpenSSH (ssh + sshpass), on fresh copies of the test fixture's installed
# disk, booted the same way. Each one's overhead is its wall time minus the guest's own part
# (first serial byte → "Started ssh.service", and first shutdown line → "reboot: Power down"),
# so the difference between the two overheads is what kiln itself adds to the procedure.
#
# The reference, per boot:
#   1. QEMU as kiln starts it (-accel tcg/kvm, -smp, -m, virtio disk, user network with the
#      SSH forward on 127.0.0.1, serial to a file);
#   2. waits for the SSH banner: a fresh connection every 100 ms (QEMU's user network accepts
#      TCP before sshd listens, so only "SSH-2.0" counts);
#   3. one `ssh builder "sudo -S sh -s"` (password login, one sudo) that runs what kiln's root
#      shell runs: read sshd_config, write the preview, `sshd -T` of both files, back up, write
#      the new file, `sshd -t`, read root's hash, rename + sync, `passwd -d root`,
#      `systemctl restart ssh`;
#   4. one `ssh root` with the empty password (retried every 50 ms until it works) that runs
#      `id -u` (the proof) and `sync; poweroff`;
#   5. waits for QEMU to exit.
# It has none of kiln's safety around it (no rollback, no question, no checks of the image):
# the least this procedure can cost.
#
# Usage: benches/configure.sh                 RUNS=3 rounds, kiln and the reference alternating
#        RUNS=5 CPUS=1 benches/configure.sh   machine size for both (default: CPUS=2 when the
#                                             host has 2 cores, MEM as kiln's default)
#        KILN=/path/to/kiln benches/configure.sh   that binary (else cargo build --release)
#        BENCH_KEEP=1 benches/configure.sh    keep the work dir (stamped logs)
# Needs root (tests/fixtures/build.sh), python3, sshpass, qemu-system-x86_64.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=benches/lib.sh
source benches/lib.sh
RUNS=${RUNS:-3}
WORK=$(realpath "$(mktemp -d /var/tmp/kiln-configure-bench.XXXXXX)")
chmod 700 "$WORK"
QEMU_PID=
KILN_PID=
STAMPER_PID=

say() { printf '%s\n' "$*" >&2; }
die() {
    say "configure.sh: $*"
    exit 1
}

# ---- cleanup: never leave kiln or a QEMU behind (benches/lib.sh) --------------------------

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # kiln powers its guest off on SIGINT; the reference's QEMU is ours to stop.
    [[ -n $KILN_PID ]] && stop_pid "$KILN_PID" INT 45
    [[ -n $QEMU_PID ]] && stop_pid "$QEMU_PID" TERM 5
    stop_stamper
    kill_leftover_qemu "$WORK" || status=1
    keep_or_remove_work "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- what to run --------------------------------------------------------------------------

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
for tool in python3 sshpass ssh qemu-system-x86_64 setpriv; do
    command -v "$tool" >/dev/null || die "needs $tool"
done
[[ $(id -u) -eq 0 ]] || die "needs root (tests/fixtures/build.sh)"
while IFS='=' read -r key value; do
    case $key in
    KILN_FIXTURE_DISK) DISK=$value ;;
    KILN_FIXTURE_ENV) GUEST_ENV=$value ;;
    esac
done < <(bash tests/fixtures/build.sh all 2>"$WORK/fixtures.log")
[[ -f ${DISK:-} && -f ${GUEST_ENV:-} ]] || die "no fixtures (see $WORK/fixtures.log)"
GUEST_USER=$(sed -n 's/^KILN_GUEST_USER=//p' "$GUEST_ENV")
PASSWORD_FILE=$WORK/password
(umask 077 && sed -n 's/^KILN_GUEST_PASSWORD=//p' "$GUEST_ENV" >"$PASSWORD_FILE")

if [[ -z ${KILN:-} ]]; then
    say "building kiln (cargo build --release)…"
    cargo build --release --quiet
    KILN=${CARGO_TARGET_DIR:-$ROOT/target}/release/kiln
fi
[[ -x $KILN ]] || die "no kiln binary at $KILN"

# Both machines get the same size: kiln's default memory, and two vCPUs on a 2-core host
# (what kiln picks there when the host is otherwise idle).
host_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
MEM=${MEM:-$((host_mib / 2 > 4096 ? 4096 : host_mib / 2))}
CPUS=${CPUS:-$(($(nproc) >= 2 ? 2 : 1))}
ACCEL=$(HOME=$WORK "$KILN" doctor 2>/dev/null | grep -q '^accelerator: KVM' && echo kvm || echo tcg)

SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o PubkeyAuthentication=no -o PreferredAuthentications=password -o ConnectTimeout=5)

# What kiln's root shell runs (src/engine/steps/configure/mod.rs: inspect, then apply_script),
# without the markers and step names.
NEW_CONFIG=$(base64 -w0 <assets/sshd_config.reference)
GUEST_SCRIPT="cat /etc/ssh/sshd_config >/dev/null
echo $NEW_CONFIG | base64 -d >/run/kiln-sshd_config.preview
/usr/sbin/sshd -T -f /etc/ssh/sshd_config >/dev/null 2>&1
/usr/sbin/sshd -T -f /run/kiln-sshd_config.preview >/dev/null
rm -f /run/kiln-sshd_config.preview
[ -e /etc/ssh/sshd_config.kiln-backup ] || cp -p /etc/ssh/sshd_config /etc/ssh/sshd_config.kiln-backup
echo $NEW_CONFIG | base64 -d >/etc/ssh/sshd_config.kiln-new && chmod 644 /etc/ssh/sshd_config.kiln-new
/usr/sbin/sshd -t -f /etc/ssh/sshd_config.kiln-new
getent shadow root >/dev/null
mv /etc/ssh/sshd_config.kiln-new /etc/ssh/sshd_config && sync
passwd -d root >/dev/null
systemctl restart ssh"

# run_kiln DIR: `kiln configure` of a fresh copy, its stderr and the serial log stamped.
run_kiln() {
    local dir=$1 status=0
    mkdir -p "$dir/home"
    cp "$DISK" "$dir/disk.qcow2"
    : >"$dir/kiln.err"
    start_stamper '(?!)' "$dir/kiln.err" "$dir/steps.ts" "$dir/disk.configure.serial.log" "$dir/serial.ts" ||
        die "the line stamper did not start"
    local launched=$EPOCHREALTIME
    (
        trap - INT
        exec env "HOME=$dir/home" "XDG_CONFIG_HOME=$dir/home/config" "XDG_DATA_HOME=$dir/home/data" \
            "$KILN" --cpus "$CPUS" --memory "$MEM" configure "$dir/disk.qcow2" \
            --user "$GUEST_USER" --password-file "$PASSWORD_FILE" 2>"$dir/kiln.err"
    ) &
    KILN_PID=$!
    wait "$KILN_PID" || status=$?
    KILN_PID=
    echo "$launched $EPOCHREALTIME" >"$dir/wall"
    stop_stamper
    ((status == 0)) || die "kiln configure failed (exit $status): $(tail -n 5 "$dir/kiln.err")"
}

# run_reference DIR: the same work with OpenSSH, stamped the same way.
run_reference() {
    local dir=$1 port status=0
    mkdir -p "$dir"
    cp "$DISK" "$dir/disk.qcow2"
    port=$(free_port)
    : >"$dir/steps.log"
    start_stamper '(?!)' "$dir/steps.log" "$dir/steps.ts" "$dir/serial.log" "$dir/serial.ts" ||
        die "the line stamper did not start"
    local launched=$EPOCHREALTIME
    setpriv --pdeathsig KILL qemu-system-x86_64 -name kiln-bench-reference -accel "$ACCEL" \
        -smp "$CPUS" -m "$MEM" \
        -drive "file=$dir/disk.qcow2,format=qcow2,media=disk,if=virtio" \
        -net nic,model=virtio -net "user,hostfwd=tcp:127.0.0.1:$port-:22" \
        -display none -serial "file:$dir/serial.log" &
    QEMU_PID=$!
    python3 - "$port" "$QEMU_PID" <<'PY' || die "the reference guest's sshd never answered"
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 300
while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
    started = time.time()
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as s:
            s.settimeout(2)
            if s.recv(8).startswith(b"SSH-2.0"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(max(0, 0.1 - (time.time() - started)))
sys.exit(1)
PY
    echo "SSH banner" >>"$dir/steps.log"
    { cat "$PASSWORD_FILE"; printf '%s\n' "$GUEST_SCRIPT"; } |
        sshpass -f "$PASSWORD_FILE" ssh "${SSH_OPTS[@]}" -p "$port" "$GUEST_USER@127.0.0.1" \
            "sudo -S -p '' sh -s" >/dev/null || die "the reference's change failed"
    echo "changed" >>"$dir/steps.log"
    echo "shutting the guest down" >>"$dir/steps.log"
    local tries
    for ((tries = 0; tries < 1200; tries++)); do
        if sshpass -p '' ssh "${SSH_OPTS[@]}" -p "$port" root@127.0.0.1 \
            'id -u; sync; poweroff </dev/null >/dev/null 2>&1 &' 2>/dev/null | grep -qx 0; then
            break
        fi
        sleep 0.05
    done
    ((tries < 1200)) || die "root never logged in on the reference guest"
    wait "$QEMU_PID" || status=$?
    QEMU_PID=
    echo "$launched $EPOCHREALTIME" >"$dir/wall"
    stop_stamper
    ((status == 0)) || die "the reference's QEMU exited with $status"
}

# phases DIR WHO: one line of this run's figures, also appended to $WORK/results.tsv.
phases() {
    python3 - "$1" "$2" "$WORK/results.tsv" <<'PY'
import sys
run, who, results = sys.argv[1:4]
def stamped(name):
    rows = []
    for line in open(f"{run}/{name}"):
        t, _, text = line.rstrip("\n").partition("\t")
        rows.append((float(t), text))
    return rows
serial, steps = stamped("serial.ts"), stamped("steps.ts")
launched, ended = map(float, open(f"{run}/wall").read().split())
def first(rows, needle, after=0.0):
    return next((t for t, text in rows if t > after and needle in text), None)
byte = serial[0][0]
sshd = first(serial, "Started ssh.service") or first(serial, "Started OpenBSD Secure Shell")
off = first(steps, "shutting the guest down")
down_from = first(serial, "", off)
down = first(serial, "reboot: Power down")
if None in (sshd, off, down_from, down):
    sys.exit(f"{run}: a marker is missing (sshd {sshd}, poweroff {off}, shutdown {down_from}-{down})")
wall = ended - launched
own = (sshd - byte) + (down - down_from)
login = first(steps, "SSH: logged in") or first(steps, "SSH banner")
changed = first(steps, "proving it") or first(steps, "changed")
print(f"  {who:<9} wall {wall:6.2f}  guest's own {own:6.2f}  overhead {wall - own:5.2f}   |"
      f" start→first byte {byte - launched:4.2f} | sshd→{'logged in' if who == 'kiln' else 'banner'}"
      f" {login - sshd:4.2f} | →changed {changed - login:4.2f} | →poweroff sent {off - changed:4.2f}"
      f" | →first shutdown line {down_from - off:4.2f} | Power down→exit {ended - down:4.2f}",
      file=sys.stderr)
with open(results, "a") as f:
    f.write(f"{who}\t{wall:.3f}\t{own:.3f}\t{wall - own:.3f}\n")
PY
}

say "configure.sh: $RUNS round(s), -accel $ACCEL -smp $CPUS -m $MEM, fixture $DISK"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
    say "round $run"
    # Alternate who goes first, so neither always meets the machine in the same state.
    if ((run % 2)); then order="kiln reference"; else order="reference kiln"; fi
    for who in $order; do
        "run_$who" "$WORK/$run-$who"
        phases "$WORK/$run-$who" "$who"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK/results.tsv" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
def column(who, index):
    return [float(r[index]) for r in rows if r[0] == who]
kiln, ref = column("kiln", 3), column("reference", 3)
pairs = [k - r for k, r in zip(kiln, ref)]
med = statistics.median
print(f"\n{'':<10} {'wall s':>8} {'own s':>8} {'overhead s':>11}   (medians of {len(kiln)} rounds)")
for who in ("kiln", "reference"):
    print(f"{who:<10} {med(column(who, 1)):8.2f} {med(column(who, 2)):8.2f} {med(column(who, 3)):11.2f}")
print(f"\nkiln's overhead beyond the reference's: median {med(pairs):+.2f} s per round"
      f" (rounds: {', '.join(f'{p:+.2f}' for p in pairs)});"
      f" overhead ratio kiln/reference {med(kiln) / med(ref):.2f}")
PY
say "load average before: $load_before; after: $load_after"
