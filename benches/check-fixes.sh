#!/usr/bin/env bash
# Does the fix `kiln check` gives repair the image? For every broken image of
# tests/fixtures/variants.sh: run `kiln check`, take the fix of the check that failed (or
# warned), insist it says what this script is about to do, do exactly that to a copy (offline:
# the root filesystem mounted from a raw copy, commands run in a chroot; qemu-img for the file
# defects), and run `kiln check` again: it must pass. Two variants at a time; prints each
# variant's verdicts before and after, its time, and the total.
#
# Usage: benches/check-fixes.sh                      (as root: loop mounts)
#        benches/check-fixes.sh shell-false use-dns  (those variants only)
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

# variant  check  what its fix must say (case-sensitive)
ROWS="
root-password       root-login      passwd -d root
no-empty-passwords  root-login      PermitEmptyPasswords yes
prohibit-password   root-login      PermitRootLogin yes
pam-no-nullok       root-login      nullok on pam_unix
shell-missing       root-login      a login shell that exists
sshd-disabled       ssh-banner      systemctl enable ssh
host-keys-missing   ssh-banner      ssh-keygen -A
listen-ipv6         ssh-banner      remove ListenAddress
no-sftp             sftp            Subsystem sftp internal-sftp
sftp-server-missing sftp            Subsystem sftp internal-sftp
force-command       sftp            remove ForceCommand
disk-full           script-upload   free space in the image
read-only-root      script-upload   read-write
no-acceptenv        env             AcceptEnv *
shell-false         script-run      usermod -s /bin/bash root
shell-nologin       script-run      usermod -s /bin/bash root
noexec-home         script-run      remove noexec
max-sessions        script-run      remove MaxSessions
use-dns             root-login      UseDNS no
compat010           qcow2-v3        qemu-img amend -f qcow2 -o compat=1.1
backing             standalone      qemu-img convert -O qcow2 -o compat=1.1
raw                 format          qemu-img convert
"
PART_OFFSET=1048576 # the fixture's root partition starts at sector 2048

SSHD=etc/ssh/sshd_config
sshd_set() { # key value: the line that sets key becomes `key value` (appended if none)
    if grep -qE "^$1[[:space:]]" "$MNT/$SSHD"; then
        sed -i "s|^$1[[:space:]].*|$1 $2|" "$MNT/$SSHD"
    else
        echo "$1 $2" >>"$MNT/$SSHD"
    fi
}
sshd_remove() { sed -i "/^$1[[:space:]]/d" "$MNT/$SSHD"; }
in_guest() { chroot "$MNT" "$@"; }

# Each fix, as kiln's fix words it, on the mounted root filesystem $MNT.
fix_root_password() { in_guest passwd -d root >/dev/null; }
fix_no_empty_passwords() { sshd_set PermitEmptyPasswords yes; }
fix_prohibit_password() { sshd_set PermitRootLogin yes; }
fix_pam_no_nullok() { sed -i 's/^\(auth.*pam_unix\.so\)\(.*\)$/\1 nullok\2/' "$MNT/etc/pam.d/common-auth"; }
fix_shell_missing() { in_guest usermod -s /bin/bash root; }
fix_sshd_disabled() { in_guest systemctl enable ssh 2>/dev/null; }
fix_host_keys_missing() { in_guest ssh-keygen -A >/dev/null; }
fix_listen_ipv6() { sshd_remove ListenAddress; }
fix_no_sftp() { sshd_set Subsystem "sftp internal-sftp"; }
fix_sftp_server_missing() { sshd_set Subsystem "sftp internal-sftp"; }
fix_force_command() { sshd_remove ForceCommand; }
fix_disk_full() { # the one big file the defect wrote, as `du` would point a person to it
    local biggest
    biggest=$(find "$MNT" -xdev -type f -size +100M -printf '%s %p\n' | sort -rn | head -1 | cut -d' ' -f2-)
    [[ -n $biggest ]] || return 1
    rm -f "$biggest"
}
fix_read_only_root() { sed -i 's/^\(UUID=[^ ]* \/ ext4 \)ro,/\1/; s/^\(UUID=[^ ]* \/ ext4 [^ ]*\),ro /\1 /' "$MNT/etc/fstab"; }
fix_no_acceptenv() { sshd_set AcceptEnv '*'; }
fix_shell_false() { in_guest usermod -s /bin/bash root; }
fix_shell_nologin() { in_guest usermod -s /bin/bash root; }
fix_noexec_home() { sed -i '/noexec/d' "$MNT/etc/fstab"; }
fix_max_sessions() { sshd_remove MaxSessions; }
fix_use_dns() { sshd_set UseDNS no; }
# The file defects: on the image itself ($1 in, $2 out).
fix_file_compat010() { cp "$1" "$2" && qemu-img amend -f qcow2 -o compat=1.1 "$2"; }
fix_file_backing() { qemu-img convert -O qcow2 -o compat=1.1 "$1" "$2"; }
fix_file_raw() { qemu-img convert -f raw -O qcow2 -o compat=1.1 "$1" "$2"; }

# `kiln check --format json` output → the verdict, detail and fix of check $2, and every
# check that failed or warned as "id:verdict"; separated by US (0x1f): a tab, being
# whitespace to `read`, would merge empty fields.
check_json() {
    python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
checks = report.get("checks", [])
want = [c for c in checks if c["id"] == sys.argv[2]]
bad = " ".join(c["id"] + ":" + c["verdict"] for c in checks if c["verdict"] in ("fail", "warn"))
c = want[0] if want else {"verdict": "none", "detail": "", "fix": ""}
print("\x1f".join([c["verdict"], c["detail"], c.get("fix") or "", bad or "none"]))
' "$@"
}

one() { # variant check phrase
    local name=$1 check=$2 phrase=$3 t=$SECONDS image="$DIR/$1.qcow2" w fixed before after
    w=$(mktemp -d "$WORK/$name.XXXX")
    "$KILN" check "$image" --format json >"$w/before.json" 2>"$w/before.err" || true
    IFS=$'\x1f' read -r verdict _detail fix bad < <(check_json "$w/before.json" "$check")
    before="$check:$verdict"
    if [[ $verdict != fail && $verdict != warn ]]; then
        echo "WRONG $name: $check is $verdict before the fix (failing: $bad)"
        return 1
    fi
    if [[ $fix != *"$phrase"* ]]; then
        echo "WRONG $name: the fix of $check does not say \`$phrase\`: $fix"
        return 1
    fi
    fixed="$w/fixed.qcow2"
    if declare -F "fix_file_${name//-/_}" >/dev/null; then
        "fix_file_${name//-/_}" "$image" "$fixed"
    else
        qemu-img convert -f qcow2 -O raw "$image" "$w/disk.raw"
        local loop
        loop=$(losetup --find --show --offset "$PART_OFFSET" "$w/disk.raw")
        MNT="$w/mnt"
        mkdir -p "$MNT"
        mount "$loop" "$MNT"
        mount --bind /dev "$MNT/dev" # ssh-keygen, passwd: /dev/null, /dev/urandom
        local ok=0
        "fix_${name//-/_}" || ok=$?
        umount "$MNT/dev"
        umount "$MNT"
        losetup -d "$loop"
        ((ok == 0)) || { echo "WRONG $name: applying the fix failed"; return 1; }
        qemu-img convert -f raw -O qcow2 -o compat=1.1 "$w/disk.raw" "$fixed"
        rm -f "$w/disk.raw"
    fi
    local code=0
    "$KILN" check "$fixed" --format json >"$w/after.json" 2>"$w/after.err" || code=$?
    IFS=$'\x1f' read -r verdict _detail _fix bad < <(check_json "$w/after.json" "$check")
    after="$check:$verdict"
    rm -rf "$w"
    if [[ $code -ne 0 || $bad != none ]]; then
        echo "WRONG $name: after the fix kiln check exits $code, failing/warning: $bad"
        return 1
    fi
    printf '%-20s %-24s -> %-20s %4d s\n' "$name" "$before" "$after" $((SECONDS - t))
}

[[ $EUID -eq 0 ]] || { echo "run as root (loop mounts)" >&2; exit 1; }
echo "== building kiln and the variants" >&2
cargo build --quiet
DIR=$(bash tests/fixtures/variants.sh 2>/dev/null | sed -n 's/^KILN_VARIANTS_DIR=//p')
KILN=$PWD/target/debug/kiln
WORK=$(mktemp -d /var/tmp/kiln-check-fixes.XXXXXX)
trap 'umount -q "$WORK"/*/mnt/dev "$WORK"/*/mnt 2>/dev/null || true; rm -rf --one-file-system "$WORK"' EXIT
export DIR KILN WORK
export -f one check_json sshd_set sshd_remove in_guest $(compgen -A function fix_)
export SSHD PART_OFFSET

rows=$(grep -v '^$' <<<"$ROWS")
if (($# > 0)); then
    rows=$(grep -E "^($(IFS='|'; echo "$*"))[[:space:]]" <<<"$rows")
fi
echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
status=0
# variant, check, phrase (the rest of the line) → one job each, two at a time.
while read -r name check phrase; do
    printf '%s\0%s\0%s\0' "$name" "$check" "$phrase"
done <<<"$rows" | xargs -0 -n3 -P2 bash -c 'one "$@"' _ | sort >"$WORK/results" || status=$?
cat "$WORK/results"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(grep -vc '^WRONG' "$WORK/results") of $(wc -l <<<"$rows") fixes repaired their image; total $((SECONDS - start)) s"
exit "$status"
