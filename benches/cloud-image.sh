#!/usr/bin/env bash
# Measured, not a test. Two comparisons on the cloud-image fixture
# (tests/fixtures/debian-cloud-image.sh):
#
# 1. `kiln run OUT --base FIXTURE --size 4G --until configure --clean=none` beside the same
#    work done by hand the way people do it today: `qemu-img convert` + `qemu-img resize`, `ssh-keygen`, a
#    user-data with the same build user, `cloud-localds` (Debian's cloud-image-utils),
#    `qemu-system-x86_64` with the seed as CD-ROM, `ssh … sudo cloud-init status --wait`, one
#    `ssh … sudo sh -s` that installs the reference sshd_config and runs `passwd -d root`, the
#    proof login as root with an empty password (sshpass), the same clean-up as kiln's
#    (cloud-init clean, empty machine-id, userdel, cloud-init.disabled) and poweroff. Wall time
#    of each, side by side. The by-hand one has none of kiln's checks or safety. And, for
#    scale, kiln with its default clean-ups (logs, caches, host keys…), which the by-hand one
#    does not do.
# 2. Boot to sshd (QEMU start → "SSH-2.0" on the forwarded port) of kiln's result under the
#    Djinn driver's command line (snapshot=on, -net nic,model=virtio, -net user,hostfwd=…),
#    against the same image with cloud-init switched off entirely (its generator and units
#    masked), and, for scale, the same image without kiln's cloud-init.disabled (what a
#    seedless boot costs when cloud-init runs). Issue 24 asks kiln's to be within 2 s of the
#    masked one.
#
# Usage: benches/cloud-image.sh          RUNS=2 rounds of each (alternating)
#        KILN=/path/to/kiln              that binary (else target/debug/kiln, built if missing)
#        CPUS=1 MEM=1024                 machine size for every boot (kiln's --cpus/--memory too)
#        BENCH_KEEP=1                    keep the work dir
# Needs root (the fixture, loop mounts), cloud-image-utils, sshpass, openssh-client, python3.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
RUNS=${RUNS:-2}
CPUS=${CPUS:-1}
MEM=${MEM:-1024}
WORK=$(realpath "$(mktemp -d /var/tmp/kiln-cloud-bench.XXXXXX)")
chmod 700 "$WORK"
QEMU_PID=
KILN_PID=
LOOP=

say() { printf '%s\n' "$*" >&2; }
die() {
    say "cloud-image.sh: $*"
    exit 1
}
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [[ -n $KILN_PID ]] && stop_pid "$KILN_PID" INT 45
    [[ -n $QEMU_PID ]] && stop_pid "$QEMU_PID" TERM 5
    if [[ -n $LOOP ]]; then
        umount "$WORK/mnt" 2>/dev/null || true
        losetup -d "$LOOP" 2>/dev/null || true
    fi
    kill_leftover_qemu "$WORK" || status=1
    keep_or_remove_work "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in cloud-localds sshpass ssh ssh-keygen qemu-system-x86_64 qemu-img python3 losetup; do
    command -v "$tool" >/dev/null || die "$tool is missing (cloud-localds: apt-get install cloud-image-utils)"
done
BASE=$(bash tests/fixtures/debian-cloud-image.sh | sed -n 's/^KILN_FIXTURE_CLOUD_IMAGE=//p')
[[ -s $BASE ]] || die "no cloud image fixture"
# The debug build does: kiln waits on QEMU and SSH here, it computes nothing heavy.
KILN=${KILN:-target/debug/kiln}
if [[ ! -x $KILN ]]; then
    nice -n 19 cargo build --locked >&2
fi
KILN=$(realpath "$KILN")
ACCEL=tcg
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5)

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.1f}')"; }

# wait_banner PORT LIMIT: until the port answers "SSH-2.0" (a fresh connection every 0.2 s).
wait_banner() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            if s.recv(8).startswith(b"SSH-2.0"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}

# ---- 1. kiln run --base vs by hand ------------------------------------------------------
REFERENCE_SSHD=$(base64 -w0 assets/sshd_config.reference)
by_hand() { # OUT
    local out=$1 dir port
    dir=$(dirname "$out")
    qemu-img convert -O qcow2 -o compat=1.1 "$BASE" "$out"
    qemu-img resize -q "$out" 4G
    ssh-keygen -q -t ed25519 -N '' -f "$dir/key"
    cat >"$dir/user-data" <<EOF
#cloud-config
users:
  - name: kiln-build
    shell: /bin/sh
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - $(cat "$dir/key.pub")
EOF
    echo "instance-id: by-hand-$RANDOM" >"$dir/meta-data"
    cloud-localds "$dir/seed.iso" "$dir/user-data" "$dir/meta-data"
    port=$(free_port)
    qemu-system-x86_64 -accel "$ACCEL" -smp "$CPUS" -m "$MEM" -display none \
        -net nic,model=virtio -net "user,hostfwd=tcp:127.0.0.1:$port-:22" \
        -drive "file=$out,if=virtio,format=qcow2" -cdrom "$dir/seed.iso" \
        -serial "file:$dir/serial.log" &
    QEMU_PID=$!
    wait_banner "$port" 900 || die "by hand: no SSH banner"
    local user=(ssh "${SSH_OPTS[@]}" -i "$dir/key" -p "$port" kiln-build@127.0.0.1)
    until "${user[@]}" true 2>/dev/null; do sleep 1; done
    "${user[@]}" 'sudo cloud-init status --wait' >/dev/null
    "${user[@]}" 'sudo sh -s' <<EOF
set -e
cp -p /etc/ssh/sshd_config /etc/ssh/sshd_config.backup
echo $REFERENCE_SSHD | base64 -d > /etc/ssh/sshd_config.new
sshd -t -f /etc/ssh/sshd_config.new
mv /etc/ssh/sshd_config.new /etc/ssh/sshd_config
passwd -d root >/dev/null
systemctl restart ssh
EOF
    local root=(sshpass -p '' ssh "${SSH_OPTS[@]}" -p "$port" root@127.0.0.1)
    [[ $("${root[@]}" 'id -u') == 0 ]] || die "by hand: the proof login failed"
    "${root[@]}" 'pkill -KILL -u kiln-build || true; userdel -r -f kiln-build; cloud-init clean --logs --seed;
        truncate -s 0 /etc/machine-id; rm -f /var/lib/dbus/machine-id; touch /etc/cloud/cloud-init.disabled; sync;
        poweroff </dev/null >/dev/null 2>&1 &' || true
    wait "$QEMU_PID" || true
    QEMU_PID=
}

with_kiln() { # OUT [FLAG…]
    local dir out=$1
    shift
    dir=$(dirname "$out")
    (cd "$dir" && HOME=$dir XDG_CONFIG_HOME=$dir/config XDG_DATA_HOME=$dir/data \
        "$KILN" --cpus "$CPUS" --memory "$MEM" run "$out" --base "$BASE" --size 4G \
        --until configure "$@" >"$dir/kiln.out" 2>"$dir/kiln.err") &
    KILN_PID=$!
    wait "$KILN_PID" || { tail -n 30 "$dir/kiln.err" >&2; die "kiln run failed"; }
    KILN_PID=
}

# kiln-same does the by-hand work and no more (--clean=none: only the cloud-init clean-up);
# kiln is what a person gets, with the default clean-ups of issue 27 (logs, caches, host keys…).
declare -a SAME_TIMES KILN_TIMES HAND_TIMES
for ((run = 1; run <= RUNS; run++)); do
    for who in kiln-same hand kiln; do
        dir=$WORK/$who-$run
        mkdir -p "$dir"
        say "round $run: $who"
        start=$(now)
        case $who in
            kiln-same) with_kiln "$dir/ci.qcow2" --clean=none ;;
            kiln) with_kiln "$dir/ci.qcow2" ;;
            hand) by_hand "$dir/ci.qcow2" ;;
        esac
        t=$(elapsed "$start" "$(now)")
        say "round $run: $who took $t s"
        case $who in
            kiln-same) SAME_TIMES+=("$t") ;;
            kiln) KILN_TIMES+=("$t") ;;
            hand) HAND_TIMES+=("$t") ;;
        esac
    done
done

# ---- 2. boot to sshd: kiln's result, cloud-init masked, cloud-init left on ---------------
PUBLISHED=$WORK/kiln-1/ci.qcow2
# edit_copy NAME SCRIPT: a copy of kiln's result with SCRIPT run in its root (loop mount).
edit_copy() {
    local name=$1 script=$2 raw=$WORK/$1.raw
    qemu-img convert -O raw "$PUBLISHED" "$raw"
    LOOP=$(losetup --find --show --offset 1048576 "$raw")
    mkdir -p "$WORK/mnt"
    mount "$LOOP" "$WORK/mnt"
    (cd "$WORK/mnt" && eval "$script")
    umount "$WORK/mnt"
    losetup -d "$LOOP"
    LOOP=
    qemu-img convert -O qcow2 -o compat=1.1 "$raw" "$WORK/$name.qcow2"
    rm -f "$raw"
}
edit_copy masked 'for u in cloud-init-local cloud-init cloud-config cloud-final; do ln -sf /dev/null etc/systemd/system/$u.service; done;
    mkdir -p etc/systemd/system-generators; ln -sf /dev/null etc/systemd/system-generators/cloud-init-generator'
edit_copy enabled 'rm -f etc/cloud/cloud-init.disabled'

boot_to_sshd() { # IMAGE → seconds
    local port start
    port=$(free_port)
    start=$(now)
    # The Djinn driver's command line (driver-contract.md §1), TCG here, no -daemonize.
    qemu-system-x86_64 -accel "$ACCEL" -display none -smp "$CPUS" -m "$MEM" \
        -net nic,model=virtio -net "user,hostfwd=tcp:127.0.0.1:$port-:22" \
        -drive "file=$1,media=disk,snapshot=on,if=virtio" &
    QEMU_PID=$!
    wait_banner "$port" 600 || die "$1: no SSH banner"
    elapsed "$start" "$(now)"
    stop_pid "$QEMU_PID" KILL 5
    QEMU_PID=
}

declare -a B_KILN B_MASKED B_ENABLED
for ((run = 1; run <= RUNS; run++)); do
    B_KILN+=("$(boot_to_sshd "$PUBLISHED")")
    B_MASKED+=("$(boot_to_sshd "$WORK/masked.qcow2")")
    B_ENABLED+=("$(boot_to_sshd "$WORK/enabled.qcow2")")
    say "boot round $run: kiln ${B_KILN[-1]} s, masked ${B_MASKED[-1]} s, cloud-init on ${B_ENABLED[-1]} s"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
printf '\n%-52s %s\n' "what ($RUNS runs, $CPUS vCPU, $MEM MiB, TCG)" "median (all runs), s"
printf '%-52s %s (%s)\n' "kiln run --base … --until configure --clean=none" "$(median "${SAME_TIMES[@]}")" "${SAME_TIMES[*]}"
printf '%-52s %s (%s)\n' "by hand: cloud-localds + qemu + OpenSSH" "$(median "${HAND_TIMES[@]}")" "${HAND_TIMES[*]}"
printf '%-52s %s\n' "ratio kiln / by hand (the same work)" "$(python3 -c "print(f'{$(median "${SAME_TIMES[@]}") / $(median "${HAND_TIMES[@]}"):.2f}')")"
printf '%-52s %s (%s)\n' "kiln run --base … (default clean-ups, for scale)" "$(median "${KILN_TIMES[@]}")" "${KILN_TIMES[*]}"
printf '%-52s %s (%s)\n' "boot to sshd: kiln's result (driver command line)" "$(median "${B_KILN[@]}")" "${B_KILN[*]}"
printf '%-52s %s (%s)\n' "boot to sshd: same, cloud-init masked" "$(median "${B_MASKED[@]}")" "${B_MASKED[*]}"
printf '%-52s %s (%s)\n' "boot to sshd: same, cloud-init left on" "$(median "${B_ENABLED[@]}")" "${B_ENABLED[*]}"
printf '%-52s %s\n' "kiln's result minus masked (issue 24: within 2 s)" "$(python3 -c "print(f'{$(median "${B_KILN[@]}") - $(median "${B_MASKED[@]}"):+.1f}')")"
