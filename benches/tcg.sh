#!/usr/bin/env bash
# Measured, not a test: which QEMU options make a TCG boot of the test fixture guest (Debian 12,
# systemd on ttyS0) fastest, for the machines kiln owns (install, configure). Each variant boots
# the fixture disk (always snapshot=on) RUNS times, variants interleaved and rotated (A B C,
# B C A, C A B, …) so the machine's other load falls on all of them alike; the table's ratios
# pair each boot with the reference's boot of the same round. Per boot, seconds since QEMU
# started:
#
#   byte     the first serial byte (GRUB's menu; SeaBIOS prints nothing on ttyS0)
#   kernel   the kernel's "Linux version" line
#   init     the kernel's "Run /init as init process" (the fixture boots an initramfs; on an
#            image without one this is "Run /sbin/init")
#   systemd  systemd's first line ("systemd[1]: …", after the switch from the initramfs)
#   sshd     systemd's "[  OK  ] Started ssh.service" on the serial port
#   ssh      the forwarded port gives an SSH banner: a fresh TCP connection every 100 ms, 2 s recv
#            timeout, and only "SSH-2.0" counts (QEMU's user network accepts the connection even
#            while nothing in the guest listens)
#   login    SSH password login as the fixture's user + `sudo -S` (seconds after `ssh`), when
#            sshpass is installed; then `systemctl poweroff` runs
#   off      from the moment that poweroff command ran in the guest to QEMU's exit
#   cpu      QEMU's CPU seconds (user + system, all threads) when the banner came: the boot's
#            work, which the machine's other load stretches less than the wall times
# Per boot only (not in the table): refused = the first probe the guest's TCP stack refused
# (its network is up), slow_probes = probes after that which got no banner within 2 s (sshd
# slow to answer), the vCPU threads (2thr = one thread per vCPU, i.e. MTTCG; single =
# round-robin), `info jit` (code buffer used/size, flushes) and banner_rtt (after the banner:
# the median of 3 connections' connect-to-banner seconds, 30 s timeout, i.e. one sshd start).
#
# Usage (root, for tests/fixtures/build.sh):
#   benches/tcg.sh                                     RUNS=3, the default variants
#   RUNS=5 benches/tcg.sh
#   VARIANTS="default smp1 tb256" benches/tcg.sh       any of the names in variant_args below
#                                                      (the first is the reference for ratios)
#   POWEROFF=0 benches/tcg.sh                          stop at the SSH banner, QEMU killed
#   BENCH_KEEP=1 benches/tcg.sh                        keep the work dir (serial logs, results)
#   BENCH_DISK=/path/disk.qcow2 BENCH_ENV=/path/guest.env benches/tcg.sh
#   benches/tcg.sh --summary A/results.tsv B/results.tsv   the table again, over kept runs
#   REF=smp1 benches/tcg.sh --summary A/results.tsv        … with ratios against smp1
# Needs python3 and qemu-system-x86_64; sshpass for the login/poweroff columns.
set -euo pipefail
export LC_ALL=C
# summarize RESULTS.tsv...: the table of medians (several files: runs of several invocations;
# the reference is $REF, else the first variant of the first file).
summarize() {
    python3 - "$@" <<'PY'
import csv, os, statistics, sys

rows = []
for n, path in enumerate(sys.argv[1:]):
    for r in csv.DictReader(open(path), delimiter="\t"):
        r["round"] = (n, r["run"])  # a round: one boot of each variant, back to back
        rows.append(r)
cols = ["byte", "kernel", "init", "systemd", "sshd", "ssh", "cpu", "login", "off"]
order = list(dict.fromkeys(r["variant"] for r in rows))
base = os.environ.get("REF") or order[0]

def num(r, col):
    v = r.get(col, "-")
    return float(v) if v not in ("-", "", None) else None

def values(name, col):
    return [x for r in rows if r["variant"] == name for x in [num(r, col)] if x is not None]

def med(name, col):
    vals = values(name, col)
    return statistics.median(vals) if vals else None

def paired(name, col):
    """Median over rounds of variant / reference in the same round: load drift cancels."""
    ref = {r["round"]: num(r, col) for r in rows if r["variant"] == base}
    ratios = [num(r, col) / ref[r["round"]] for r in rows
              if r["variant"] == name and num(r, col) and ref.get(r["round"])]
    return f"{statistics.median(ratios):.2f}" if ratios else "-"

def fmt(x, width=7):
    return f"{x:{width}.2f}" if x is not None else f"{'-':>{width}}"

def whole(r):  # boot to the banner, log in, power off: the least a configure boot costs
    parts = [num(r, c) for c in ("ssh", "login", "off")]
    return sum(parts) if None not in parts else None

for r in rows:
    w = whole(r)
    r["all"] = f"{w}" if w is not None else "-"

print(f"\nmedians (s) over n boots; x/ = median over rounds of variant / {base} in that round")
print(f"{'variant':<10} {'n':>2} " + " ".join(f"{c:>7}" for c in cols + ["all"])
      + f" {'ssh min-max':>11} {'ssh/':>5} {'cpu/':>5} {'all/':>5}")
for name in order:
    ssh = values(name, "ssh")
    span = f"{min(ssh):.1f}-{max(ssh):.1f}" if ssh else "-"
    print(f"{name:<10} {len(ssh):>2} " + " ".join(fmt(med(name, c)) for c in cols + ["all"])
          + f" {span:>11} {paired(name, 'ssh'):>5} {paired(name, 'cpu'):>5} {paired(name, 'all'):>5}")
print("ssh: to the SSH banner; cpu: QEMU CPU seconds until then; all: ssh + login + off")
PY
}

# All in main, which bash reads whole before it runs: editing this file during a (long) run
# cannot derail that run.
main() {

if [[ ${1:-} == --summary ]]; then # benches/tcg.sh --summary KEPT/results.tsv...
    shift
    summarize "$@"
    exit
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
RUNS=${RUNS:-3}
POWEROFF=${POWEROFF:-1}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
QEMU=${QEMU:-qemu-system-x86_64}
# Shown in this order; "default" comes first and is the reference for the ratios.
VARIANTS=${VARIANTS:-default smp1 smp1-max smp2-max single2 m1024 m2048}

say() { printf '%s\n' "$*" >&2; }
die() {
    say "tcg.sh: $*"
    exit 1
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"
command -v "$QEMU" >/dev/null || die "$QEMU is not installed"
command -v python3 >/dev/null || die "python3 is not installed"

# ---- kiln's machine size on this host (src/engine/host/config.rs: HostResources) -----------
# memory: half the host's, clamped to 256..4096 MiB; CPUs: the host's, clamped to 1..2.
host_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
KILN_MEM=$((host_mib / 2))
((KILN_MEM > 4096)) && KILN_MEM=4096
((KILN_MEM < 256)) && KILN_MEM=256
KILN_CPUS=$(nproc)
((KILN_CPUS > 2)) && KILN_CPUS=2

# The accelerator/CPU/size part of each variant's command line; everything else (disk, network,
# serial) is the same for all, as src/engine/guest/machine/ builds it.
variant_args() {
    case $1 in
    default) echo "-accel tcg -smp $KILN_CPUS -m $KILN_MEM" ;; # what kiln runs today (no -cpu: qemu64)
    smp1) echo "-accel tcg -smp 1 -m $KILN_MEM" ;;
    smp1-max) echo "-accel tcg -cpu max -smp 1 -m $KILN_MEM" ;;
    smp2-max) echo "-accel tcg -cpu max -smp 2 -m $KILN_MEM" ;;
    max-noavx1) echo "-accel tcg -cpu max,-avx,-avx2 -smp 1 -m $KILN_MEM" ;;
    v2-smp1) echo "-accel tcg -cpu Nehalem -smp 1 -m $KILN_MEM" ;; # x86-64-v2, no AVX
    v2-smp2) echo "-accel tcg -cpu Nehalem -smp 2 -m $KILN_MEM" ;;
    multi2) echo "-accel tcg,thread=multi -smp 2 -m $KILN_MEM" ;; # x86 on x86: QEMU's default already
    single2) echo "-accel tcg,thread=single -smp 2 -m $KILN_MEM" ;;
    m1024) echo "-accel tcg -smp $KILN_CPUS -m 1024" ;;
    m2048) echo "-accel tcg -smp $KILN_CPUS -m 2048" ;;
    tb256) echo "-accel tcg,tb-size=256 -smp $KILN_CPUS -m $KILN_MEM" ;;
    tb2048) echo "-accel tcg,tb-size=2048 -smp $KILN_CPUS -m $KILN_MEM" ;;
    rng) echo "-accel tcg -smp $KILN_CPUS -m $KILN_MEM -device virtio-rng-pci" ;;
    *) return 1 ;;
    esac
}
read -r -a variants <<<"$VARIANTS"
for name in "${variants[@]}"; do
    variant_args "$name" >/dev/null || die "unknown variant: $name"
done

# ---- the fixture ----------------------------------------------------------------------------
DISK=${BENCH_DISK:-}
GUEST_ENV=${BENCH_ENV:-}
if [[ -z $DISK ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        while IFS='=' read -r key value; do
            case $key in
            KILN_FIXTURE_DISK) DISK=$value ;;
            KILN_FIXTURE_ENV) GUEST_ENV=$value ;;
            esac
        done < <(bash tests/fixtures/build.sh all 2>/dev/null)
    else
        DISK=$(find /var/cache/kiln-fixtures -maxdepth 2 -name disk.qcow2 -printf '%T@ %p\n' 2>/dev/null |
            sort -rn | head -n 1 | cut -d' ' -f2-)
    fi
fi
[[ -n $DISK && -f $DISK ]] || die "no fixture disk (run as root, or set BENCH_DISK)"
GUEST_ENV=${GUEST_ENV:-$(dirname "$DISK")/guest.env}

WORK=$(realpath "$(mktemp -d /var/tmp/kiln-tcg-bench.XXXXXX)")
chmod 700 "$WORK"
QEMU_PID=
PROBE_PID=

# ---- cleanup: never leave a QEMU of ours behind ---------------------------------------------

# shellcheck disable=SC2317 # run by the trap below; shellcheck misses that before main's exit
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # Only the QEMU and prober running now: earlier ones were reaped and their pids forgotten.
    [[ -n $PROBE_PID ]] && stop_pid "$PROBE_PID" TERM 5
    [[ -n $QEMU_PID ]] && stop_pid "$QEMU_PID" TERM 5
    keep_or_remove_work "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The guest's user and password (guest.env), in a 0600 file: never on a command line.
GUEST_USER=
PASSWORD_FILE=
if [[ $POWEROFF == 1 && -r $GUEST_ENV ]] && command -v sshpass >/dev/null; then
    GUEST_USER=$(sed -n 's/^KILN_GUEST_USER=//p' "$GUEST_ENV")
    PASSWORD_FILE=$WORK/password
    (umask 077 && sed -n 's/^KILN_GUEST_PASSWORD=//p' "$GUEST_ENV" >"$PASSWORD_FILE")
    [[ -n $GUEST_USER && -s $PASSWORD_FILE ]] || PASSWORD_FILE=
fi
if [[ $POWEROFF == 1 && -z $PASSWORD_FILE ]]; then
    say "no sshpass or no guest.env user/password: measuring up to the SSH banner only"
fi

# ---- the per-boot prober (python3) ----------------------------------------------------------
cat >"$WORK/probe.py" <<'PY'
"""Watch one boot: serial markers, the SSH banner, then (optionally) log in and power off.

Prints key=value lines: seconds since QEMU started (t0), or "-" for what was not seen.
"""
import json, os, re, socket, subprocess, sys, threading, time

t0, pid, port, serial, qmp_path, timeout, user, pwfile = sys.argv[1:9]
t0, pid, port, timeout = float(t0), int(pid), int(port), float(timeout)
found = {}
MARKERS = [
    ("kernel", re.compile(rb"Linux version")),
    ("init", re.compile(rb"Run /\S*init as init process")),
    ("systemd", re.compile(rb"systemd\[1\]:")),
    ("sshd", re.compile(rb"Started (ssh\.service|OpenBSD Secure Shell)")),
    ("power_down", re.compile(rb"reboot: Power down")),
]
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
stop = threading.Event()

def rel():
    return time.time() - t0

def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def watch_serial():
    data, offset = b"", 0
    while not stop.is_set():
        try:
            with open(serial, "rb") as f:
                f.seek(offset)
                new = f.read()
        except OSError:
            new = b""
        if new:
            now = rel()
            offset += len(new)
            data += new
            found.setdefault("byte", now)
            # systemd colours its status lines: "Started \e[0;1;39mssh.service\e[0m".
            text = ANSI.sub(b"", data)
            for key, pattern in MARKERS:
                if key not in found and pattern.search(text):
                    found[key] = now
        time.sleep(0.02)

def banner():
    """One probe: "ssh" (the banner), "closed" (QEMU accepted, the guest refused or hung up),
    "silent" (accepted, nothing within 2 s: the guest's network is not up yet, or it is and
    sshd is slow to answer), or "error"."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            data = s.recv(64)
    except socket.timeout:
        return "silent"
    except OSError:
        return "error"
    return "ssh" if data.startswith(b"SSH-2.0") else "closed"

def qmp(command):
    """One HMP command over QMP; its text, or "" when QMP does not answer."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(qmp_path)
            f = s.makefile("rwb")
            f.readline()
            for request in ({"execute": "qmp_capabilities"},
                            {"execute": "human-monitor-command",
                             "arguments": {"command-line": command}}):
                f.write(json.dumps(request).encode() + b"\n")
                f.flush()
                while True:
                    reply = json.loads(f.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply.get("return", "")
    except (OSError, ValueError):
        return ""

def cpu_seconds():
    """QEMU's CPU time so far (user + system, all threads): the boot's work, which the
    machine's other load does not stretch the way it stretches wall time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None

def vcpu_threads():
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    tcg = [n for n in names if n.endswith("/TCG")]
    return "single" if tcg == ["ALL CPUs/TCG"] else f"{len(tcg)}thr"

threading.Thread(target=watch_serial, daemon=True).start()
deadline = time.time() + timeout
slow = 0
while time.time() < deadline and alive():
    outcome = banner()
    if outcome == "ssh":
        found["ssh"] = rel()
        found["cpu"] = cpu_seconds()
        break
    if outcome == "closed":
        found.setdefault("refused", rel())  # the guest's TCP stack answers: its network is up
    elif outcome == "silent" and "refused" in found:
        slow += 1  # the network was up: sshd accepted but sent no banner within 2 s
    time.sleep(0.1)

def banner_latency():
    """Seconds from connect to the banner on a settled sshd (30 s timeout): the guest's cost
    of one sshd start (sshd re-executes itself for each connection)."""
    start = time.time()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.settimeout(30)
            if s.recv(64).startswith(b"SSH-2.0"):
                return time.time() - start
    except OSError:
        pass
    return None

out = {"threads": "-", "jit_code": "-", "jit_flushes": "-", "slow_probes": slow, "banner_rtt": "-"}
if "ssh" in found:
    rtts = sorted(x for x in (banner_latency() for _ in range(3)) if x is not None)
    if rtts:
        out["banner_rtt"] = f"{rtts[len(rtts) // 2]:.2f}"
    out["threads"] = vcpu_threads()
    jit = qmp("info jit")
    m = re.search(r"gen code size\s+(\d+)/(\d+)", jit)
    if m:
        out["jit_code"] = f"{int(m.group(1)) // 2**20}/{int(m.group(2)) // 2**20}MiB"
    m = re.search(r"TB flush count\s+(\d+)", jit)
    if m:
        out["jit_flushes"] = m.group(1)

if "ssh" in found and user and pwfile:
    ssh = ["sshpass", "-f", pwfile, "ssh", "-p", str(port),
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no",
           "-o", "PreferredAuthentications=password,keyboard-interactive",
           "-o", "ConnectTimeout=30", f"{user}@127.0.0.1",
           "sudo -S -p '' sh -c 'echo go; systemctl poweroff'"]
    with open(pwfile, "rb") as f:
        password = f.read()
    started = rel()
    proc = subprocess.Popen(ssh, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    proc.stdin.write(password)
    proc.stdin.close()
    line = proc.stdout.readline()
    if line.strip() == b"go":
        command_ran = rel()
        found["login"] = command_ran - started
        until = time.time() + 180
        while time.time() < until and alive():
            time.sleep(0.02)
        if not alive():
            found["off"] = rel() - command_ran
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

stop.set()
time.sleep(0.05)
for key in ("byte", "kernel", "init", "systemd", "refused", "sshd", "ssh", "cpu", "login", "off"):
    out[key] = f"{found[key]:.2f}" if found.get(key) is not None else "-"
print(" ".join(f"{k}={v}" for k, v in out.items()))
sys.exit(0 if "ssh" in found else 1)
PY

# Dies with this script even if the script is killed outright (when setpriv can do it).
PDEATH=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
    PDEATH=(setpriv --pdeathsig KILL --)
fi

RESULTS=$WORK/results.tsv
COLUMNS_=(byte kernel init systemd sshd ssh cpu login off)
printf 'variant\trun\tload1\t%s\n' "${COLUMNS_[*]}" | tr ' ' '\t' >"$RESULTS"

# boot NAME RUN: one boot of one variant; appends a line to $RESULTS and prints it.
boot() {
    local name=$1 run=$2 dir port qpid t0 line load1 others status
    local -a args
    read -r -a args <<<"$(variant_args "$name")"
    dir=$WORK/$name.$run
    mkdir -p "$dir"
    load1=$(cut -d' ' -f1 /proc/loadavg)
    others=$(pgrep -c qemu-system || true)
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        : >"$dir/serial.log"
        t0=$EPOCHREALTIME
        "${PDEATH[@]}" "$QEMU" -name "kiln-bench-$name,debug-threads=on" "${args[@]}" \
            -drive "file=${DISK//,/,,},format=qcow2,media=disk,if=virtio,snapshot=on" \
            -net nic,model=virtio -net "user,hostfwd=tcp:127.0.0.1:$port-:22" \
            -display none -chardev "file,id=serial0,path=$dir/serial.log" -serial chardev:serial0 \
            -qmp "unix:$dir/qmp.sock,server=on,wait=off" 2>"$dir/stderr" &
        qpid=$!
        QEMU_PID=$qpid
        sleep 0.3
        if kill -0 "$qpid" 2>/dev/null || ! grep -q 'host forwarding rule' "$dir/stderr"; then
            break
        fi
        stop_pid "$qpid" TERM 5 # the port was taken between the check and QEMU's bind: another one
        QEMU_PID=
    done
    python3 "$WORK/probe.py" "$t0" "$qpid" "$port" "$dir/serial.log" "$dir/qmp.sock" \
        "$BOOT_TIMEOUT" "$GUEST_USER" "$PASSWORD_FILE" >"$dir/probe.out" &
    PROBE_PID=$!
    status=0
    wait "$PROBE_PID" || status=$?
    PROBE_PID=
    stop_pid "$qpid" TERM 5
    QEMU_PID=
    line=$(cat "$dir/probe.out")
    if ((status != 0)); then
        say "  $name run $run: no SSH banner within ${BOOT_TIMEOUT}s ($line); QEMU said: $(head -c 300 "$dir/stderr")"
    fi
    printf '  %-10s run %d  load1 %-5s other-qemus %s  %s\n' "$name" "$run" "$load1" "$others" "$line" >&2
    local -A v=()
    local kv
    for kv in $line; do
        v[${kv%%=*}]=${kv#*=}
    done
    {
        printf '%s\t%s\t%s' "$name" "$run" "$load1"
        for kv in "${COLUMNS_[@]}"; do
            printf '\t%s' "${v[$kv]:--}"
        done
        printf '\n'
    } >>"$RESULTS"
}

say "tcg.sh: $QEMU $("$QEMU" --version | head -n 1 | sed 's/.*version //')," \
    "$(nproc) host CPUs, ${host_mib} MiB; kiln's default machine here: -smp $KILN_CPUS -m $KILN_MEM"
say "disk: $DISK (snapshot=on); $RUNS run(s) of: ${variants[*]}"
for name in "${variants[@]}"; do
    say "  $(printf '%-10s' "$name") $(variant_args "$name")"
done
others=$(pgrep -c qemu-system || true)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before: $LOAD_BEFORE; other qemu-system processes running: $others"
say "columns: seconds since QEMU started; login and off are durations (see the header)"

# Interleaved, and each round starts one variant later (A B C, B C A, C A B, …): no variant
# always boots first in a round or right after the same neighbour.
local count=${#variants[@]} i
for ((run = 1; run <= RUNS; run++)); do
    for ((i = 0; i < count; i++)); do
        boot "${variants[(i + run - 1) % count]}" "$run"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

summarize "$RESULTS"
say "load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
exit # here, not after main: bash would read on in this file, which may have changed meanwhile
}

main "$@"
