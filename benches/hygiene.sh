#!/usr/bin/env bash
# Compared, not a test: what virt-sysprep (libguestfs) would still remove from an image after
# `kiln configure --clean`. On a copy of the test fixture's installed disk with an
# installation's and a build's leftovers planted (as tests/hygiene.rs plants them), it runs
#   1. `virt-sysprep --dry-run -x` on the planted disk: what virt-sysprep finds (before);
#   2. `kiln configure --clean` (the defaults);
#   3. `virt-sysprep --dry-run -x` on kiln's result: what it would still remove (after).
# From virt-sysprep's trace, per operation: the paths its globs matched and the files its
# `rm` really removed (an `rm` of a missing file fails; `rm_f`/`rm_rf` of fixed names are not
# counted, so this lists what existed). The "after" list, for the operations kiln claims,
# should be empty.
#
# Usage: benches/hygiene.sh                      KILN=/path/to/kiln (else target/debug/kiln)
#        BENCH_KEEP=1 benches/hygiene.sh         keep the work dir (traces, the images)
# Needs root (losetup, mount; tests/fixtures/build.sh), libguestfs-tools, sshpass. virt-sysprep
# needs a kernel for its appliance: on a host without one in /boot, set SUPERMIN_KERNEL and
# SUPERMIN_MODULES (a Debian linux-image .deb unpacked, `depmod -b DIR VERSION` run on it);
# supermin also wants /lib/modules to exist on the host (an empty directory will do).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=benches/lib.sh
source "$here/lib.sh"
repo=$(dirname "$here")
KILN=${KILN:-$repo/target/debug/kiln}
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg

eval "$(bash "$repo/tests/fixtures/build.sh" disk | grep '^KILN_FIXTURE_')"
# shellcheck disable=SC1090
source "$KILN_FIXTURE_ENV"
work=$(mktemp -d /var/tmp/kiln-hygiene-bench.XXXXXX)
mnt=$work/mnt
loop=""
cleanup() {
    if [[ -n $loop ]]; then
        umount "$mnt" 2>/dev/null || true
        losetup -d "$loop" 2>/dev/null || true
    fi
    kill_leftover_qemu "$work" || true
    keep_or_remove_work "$work"
}
trap cleanup EXIT

# plant: the leftovers, written into the disk's root filesystem through a raw copy.
plant() {
    qemu-img convert -O raw "$1" "$work/disk.raw"
    mkdir -p "$mnt"
    loop=$(losetup --find --show --offset 1048576 "$work/disk.raw")
    mount -t ext4 "$loop" "$mnt"
    local f
    for f in var/log/installer/syslog var/log/kiln-build.log var/log/apt/history.log \
        root/.bash_history "home/$KILN_GUEST_USER/.bash_history" \
        var/cache/apt/archives/leftover_1.0_all.deb var/cache/apt/pkgcache.bin \
        var/lib/dhcp/dhclient.enp0s3.leases var/tmp/build-cache \
        etc/udev/rules.d/70-persistent-net.rules var/lib/cloud/instances/i-0123/user-data.txt \
        var/log/cloud-init.log; do
        mkdir -p "$mnt/$(dirname "$f")"
        echo "left by the build" >"$mnt/$f"
    done
    mkdir -p "$mnt/var/log/installer/cdebconf"
    printf 'Name: passwd/root-password\nTemplate: passwd/root-password\nValue: %s\nOwners: d-i\n' \
        "$KILN_GUEST_ROOT_PASSWORD" >"$mnt/var/log/installer/cdebconf/questions.dat"
    cp -p "$mnt/etc/shadow" "$mnt/etc/shadow-"
    echo 0123456789abcdef0123456789abcdef >"$mnt/etc/machine-id"
    umount "$mnt"
    losetup -d "$loop"
    loop=""
    qemu-img convert -f raw -O qcow2 -o compat=1.1 "$work/disk.raw" "$1"
    rm -f "$work/disk.raw"
}

# found TRACE: "operation<TAB>path" for every path virt-sysprep's operations found.
found() {
    awk '
        /Performing "/ { split($0, q, "\""); op = q[2] }
        /trace: glob_expand = \[/ {
            line = $0; sub(/.*= \[/, "", line); sub(/\]$/, "", line)
            n = split(line, paths, ", ")
            for (i = 1; i <= n; i++) { p = paths[i]; gsub(/"/, "", p); if (p != "") print op "\t" p }
        }
        /trace: rm "/ { split($0, q, "\""); pending = q[2] }
        /trace: rm = 0$/ { if (pending != "") print op "\t" pending; pending = "" }
        /trace: rm = -1/ { pending = "" }
    ' "$1" | sort -u
}

disk=$work/image.qcow2
cp "$KILN_FIXTURE_DISK" "$disk"
plant "$disk"
echo "virt-sysprep --dry-run on the planted disk…" >&2
virt-sysprep --dry-run -x -a "$disk" >"$work/before.trace" 2>&1
found "$work/before.trace" >"$work/before.found"

echo "kiln configure --clean…" >&2
printf '%s\n' "$KILN_GUEST_PASSWORD" >"$work/password"
mkdir -p "$work/home"
(cd "$work" && HOME=$work/home XDG_CONFIG_HOME=$work/home/.config XDG_DATA_HOME=$work/home/.local/share \
    "$KILN" --memory 1024 --cpus 1 configure "$disk" --user "$KILN_GUEST_USER" \
    --password-file "$work/password" --clean) >"$work/configure.log" 2>&1 || {
    cat "$work/configure.log" >&2
    exit 1
}
grep 'cleanup ' "$work/configure.log" | sed 's/^kiln configure: /  /' >&2

echo "virt-sysprep --dry-run on kiln's result…" >&2
virt-sysprep --dry-run -x -a "$disk" >"$work/after.trace" 2>&1
found "$work/after.trace" >"$work/after.found"

kiln_ops="logfiles bash-history package-manager-cache dhcp-client-state tmp-files udev-persistent-net net-hwaddr passwd-backups machine-id ssh-hostkeys"
printf '\n%-24s %8s %8s\n' "operation" "before" "after"
for op in $(cut -f1 "$work/before.found" "$work/after.found" | sort -u); do
    claimed=" "
    [[ " $kiln_ops " == *" $op "* ]] && claimed="*"
    printf '%s %-22s %8d %8d\n' "$claimed" "$op" \
        "$(grep -c "^$op	" "$work/before.found" || true)" "$(grep -c "^$op	" "$work/after.found" || true)"
done
echo "(* an operation kiln --clean claims; paths virt-sysprep would remove, found in its trace)"
echo
echo "left after kiln, for the operations kiln claims:"
left=0
while IFS=$'\t' read -r op path; do
    if [[ " $kiln_ops " == *" $op "* ]]; then
        echo "  $op: $path"
        left=$((left + 1))
    fi
done <"$work/after.found"
[[ $left == 0 ]] && echo "  nothing"
