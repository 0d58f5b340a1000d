#!/usr/bin/env bash
# Measured comparison, not a test: `kiln publish --to rsync` against plain `rsync -e ssh` of the
# same qcow2 to a private sshd on 127.0.0.1 (its own host key, root let in with a key made for
# the bench; nothing under ~/.ssh is read or written). Both go through the same ssh config, both
# start every run from an empty destination. Prints every run, the medians, kiln/rsync and the
# load average.
#
# Usage: benches/rsync.sh              (RUNS=5, a 1 GiB image; BENCH_DIR to keep the files)
#        BENCH_SIZE=2G benches/rsync.sh
#        KILN=path/to/kiln benches/rsync.sh   (that binary; else cargo build --release)
# Needs: rsync, openssh-server (/usr/sbin/sshd), GNU time; run as root (sshd must switch users).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
RUNS=${RUNS:-5}
SIZE_ARG=${BENCH_SIZE:-1G}
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/kiln-rsync-bench.XXXXXX)}
mkdir -p "$WORK/home/config" "$WORK/home/data" "$WORK/home/.ssh" "$WORK/bin" "$WORK/dest"
SSHD_PID=

cleanup() {
    if [[ -n $SSHD_PID ]]; then stop_pid "$SSHD_PID" TERM 5; fi
    if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

for tool in rsync /usr/sbin/sshd /usr/bin/time; do
    command -v "$tool" >/dev/null || { say "missing $tool: apt-get install rsync openssh-server time"; exit 2; }
done

if [[ -z ${KILN:-} ]]; then
    say "== building kiln (release)"
    cargo build --release --quiet
    KILN=${CARGO_TARGET_DIR:-$ROOT/target}/release/kiln
fi

# The server: a host key, the bench's key authorized for root, a free port.
rm -f "$WORK/host_key" "$WORK/host_key.pub" "$WORK/home/.ssh/id_ed25519" "$WORK/home/.ssh/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C 'kiln bench host' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -C 'kiln bench user' -f "$WORK/home/.ssh/id_ed25519"
cp "$WORK/home/.ssh/id_ed25519.pub" "$WORK/authorized_keys"
PORT=$(free_port)
cat >"$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile none
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -f "$WORK/sshd_config" -D -e 2>"$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    grep -q "Server listening" "$WORK/sshd.log" && break
    sleep 0.1
done
grep -q "Server listening" "$WORK/sshd.log" || { cat "$WORK/sshd.log" >&2; exit 1; }

# The client: one ssh config for both, read through -F (OpenSSH takes ~ from the password
# database, not HOME), its known_hosts holding the server's key.
KNOWN=$WORK/home/.ssh/known_hosts
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d ' ' -f 1-2 "$WORK/host_key.pub")" >"$KNOWN"
cat >"$WORK/home/.ssh/config" <<EOF
Host bench
  HostName 127.0.0.1
  Port $PORT
  User root
  IdentityFile $WORK/home/.ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $KNOWN
EOF
printf '#!/bin/sh\nexec /usr/bin/ssh -F %q "$@"\n' "$WORK/home/.ssh/config" >"$WORK/bin/ssh"
chmod +x "$WORK/bin/ssh"
export PATH="$WORK/bin:$PATH"
unset SSH_AUTH_SOCK
KILN_RUN=(env "HOME=$WORK/home" "XDG_CONFIG_HOME=$WORK/home/config" "XDG_DATA_HOME=$WORK/home/data" "$KILN")

IMG=$WORK/bench.qcow2
if [[ ! -f $IMG ]]; then
    say "== making a $SIZE_ARG qcow2 (preallocation=full)"
    qemu-img create -q -f qcow2 -o compat=1.1,preallocation=full "$IMG" "$SIZE_ARG"
fi
SIZE=$(stat -c %s "$IMG")
say "image: $IMG, $SIZE bytes; sshd on 127.0.0.1:$PORT; $(rsync --version | head -n 1); $(ssh -V 2>&1)"
cat "$IMG" >/dev/null # start every run from the page cache

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$SIZE" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }
timed() {
    local status=0
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/time.raw" "$@" || status=$?
    tail -n 1 "$WORK/time.raw" >"$WORK/time"
    return $status
}
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
same() { cmp -s "$IMG" "$1" || { say "$1 differs from the image"; exit 1; }; }

say "== $RUNS runs each, alternating"
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)
: >"$WORK/kiln.t"; : >"$WORK/kiln.s"; : >"$WORK/rsync.s"
for run in $(seq "$RUNS"); do
    rm -f "$WORK/dest/"* "$WORK/dest/".*.kiln-partial
    timed "${KILN_RUN[@]}" publish "$IMG" --to rsync --dest "bench:$WORK/dest/" --name bench \
        --format json >"$WORK/kiln.out" 2>"$WORK/kiln.err" || { cat "$WORK/kiln.err" >&2; exit 1; }
    read -r secs _ _ _ <"$WORK/time"
    transfer=$(json_field "$WORK/kiln.out" transfer_seconds)
    same "$WORK/dest/bench.qcow2"
    echo "$secs" >>"$WORK/kiln.s"; echo "$transfer" >>"$WORK/kiln.t"
    printf 'run %d  kiln publish --to rsync  copy %6.2f s %7s MB/s | command %6.2f s %7s MB/s\n' \
        "$run" "$transfer" "$(mbps "$transfer")" "$secs" "$(mbps "$secs")"

    rm -f "$WORK/dest/"*
    timed rsync -e ssh "$IMG" "bench:$WORK/dest/bench.qcow2"
    read -r secs _ _ _ <"$WORK/time"
    same "$WORK/dest/bench.qcow2"
    echo "$secs" >>"$WORK/rsync.s"
    printf 'run %d  rsync -e ssh                                   | command %6.2f s %7s MB/s\n' \
        "$run" "$secs" "$(mbps "$secs")"
done
load_after=$(cut -d ' ' -f 1-3 /proc/loadavg)

kiln_t=$(median <"$WORK/kiln.t"); kiln_s=$(median <"$WORK/kiln.s"); rsync_s=$(median <"$WORK/rsync.s")
ratio() { awk -v k="$1" -v r="$2" 'BEGIN { printf "%.3f", r / k }'; }
echo
echo "copy median (kiln's transfer_seconds: its rsync run alone, against the whole rsync command):"
printf '  kiln %.2f s %s MB/s, rsync -e ssh %.2f s %s MB/s, kiln/rsync = %s\n' \
    "$kiln_t" "$(mbps "$kiln_t")" "$rsync_s" "$(mbps "$rsync_s")" "$(ratio "$kiln_t" "$rsync_s")"
echo "whole-command median (kiln also runs its preflight checks, the check over ssh, and the sync"
echo "and rename over ssh):"
printf '  kiln %.2f s %s MB/s, rsync -e ssh %.2f s %s MB/s, kiln/rsync = %s\n' \
    "$kiln_s" "$(mbps "$kiln_s")" "$rsync_s" "$(mbps "$rsync_s")" "$(ratio "$kiln_s" "$rsync_s")"
echo "(kiln/rsync is throughput: above 1, kiln was faster)"
echo "load average (1, 5, 15 min) before: $load_before; after: $load_after ($(nproc) CPUs)"
