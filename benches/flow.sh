#!/usr/bin/env bash
# Measured, not a test: the whole headless flow `kiln run IMAGE --iso ISO --until verify` on
# the test fixtures (create → install → configure → verify), each step's wall time printed
# beside the part of it kiln cannot make faster, so kiln's own overhead per step is a number:
#
#   create     beside plain `qemu-img create -f qcow2 -o compat=1.1 X 4G`, timed in the same run
#   install    the guest's own install: installer's first serial byte → "reboot: Power down"
#   configure  boot → sshd up (first serial byte → "Started ssh.service"), plus the guest's
#              shutdown (first serial line after kiln sends poweroff → "reboot: Power down")
#   verify     boot → sshd up, as for configure
#
# The serial logs QEMU writes next to the image have no timestamps, so a watcher polls them
# (and kiln's stderr) every 20 ms while kiln runs and stamps each line with the time its first
# byte appeared. overhead = the step's seconds from `--format json` − the irreducible part.
#
# Usage: benches/flow.sh                      one flow (~5–8 min under TCG)
#        RUNS=3 benches/flow.sh               three flows, then the medians
#        KILN=/path/to/kiln benches/flow.sh   use that binary (else cargo build --release)
#        BENCH_KEEP=1 benches/flow.sh         keep the work dir (timestamped serial logs)
# Needs root (tests/fixtures/build.sh), python3, qemu-img and qemu-system-x86_64.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=benches/lib.sh
source benches/lib.sh
RUNS=${RUNS:-1}
SIZE=4G
WORK=$(realpath "$(mktemp -d /var/tmp/kiln-flow-bench.XXXXXX)")
KILN_PID=
STAMPER_PID=

# Marker lines on the guest's serial console (ANSI colours and \r stripped first). They are
# what the fixture guest (Debian 12, systemd on ttyS0) prints; see benches/README.md.
SSHD_UP='Started ssh\.service|Started OpenBSD Secure Shell server'
POWER_DOWN='reboot: Power down'

say() { printf '%s\n' "$*" >&2; }
die() { say "flow.sh: $*"; exit 1; }

# ---- cleanup: never leave kiln or a QEMU behind ----------------------------------------

# kiln stops its QEMU cleanly on SIGINT (configure gives the guest up to 30 s to power off),
# so SIGINT first and wait; SIGKILL only if it hangs (kiln's QEMU has PR_SET_PDEATHSIG, so it
# dies with kiln even then).
stop_kiln() {
    [[ -n $KILN_PID ]] || return 0
    kill -0 "$KILN_PID" 2>/dev/null && say "stopping kiln (pid $KILN_PID) with SIGINT so it shuts its QEMU down…"
    stop_pid "$KILN_PID" INT 45
    KILN_PID=
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_kiln
    stop_stamper
    kill_leftover_qemu "$WORK" || true
    keep_or_remove_work "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- inputs -----------------------------------------------------------------------------

# The binary: $KILN, or a release build into the normal target/.
find_kiln() {
    if [[ -n ${KILN:-} ]]; then
        [[ -x $KILN ]] || die "KILN=$KILN is not an executable"
    else
        say "== building kiln (release)"
        cargo build --release --quiet
        KILN=$ROOT/target/release/kiln
    fi
    KILN=$(realpath "$KILN")
}

# The fixtures the way the tests find them: build.sh prints KILN_FIXTURE_* (cached: ~0.03 s);
# the flow installs from the ISO, so disk.qcow2 is not used.
# Without root (or if the build fails) fall back to the newest cache dir holding both files.
find_fixtures() {
    local out
    if out=$(bash "$ROOT/tests/fixtures/build.sh" all 2>"$WORK/fixtures.log"); then
        KILN_FIXTURE_ISO=$(sed -n 's/^KILN_FIXTURE_ISO=//p' <<<"$out")
        KILN_FIXTURE_ENV=$(sed -n 's/^KILN_FIXTURE_ENV=//p' <<<"$out")
    else
        say "tests/fixtures/build.sh failed ($(tail -n 1 "$WORK/fixtures.log")); looking in the cache"
        local dir="" candidate
        for candidate in $(find "${KILN_FIXTURE_CACHE:-/var/cache/kiln-fixtures}" -mindepth 2 \
            -maxdepth 2 -name installer.iso -printf '%T@ %h\n' 2>/dev/null | sort -rn | cut -d ' ' -f 2); do
            if [[ -f $candidate/disk.qcow2 && -f $candidate/guest.env ]]; then
                dir=$candidate
                break
            fi
        done
        [[ -n $dir ]] || die "no fixtures: run  sudo tests/fixtures/build.sh"
        KILN_FIXTURE_ISO=$dir/installer.iso
        KILN_FIXTURE_ENV=$dir/guest.env
    fi
    [[ -f $KILN_FIXTURE_ISO && -f $KILN_FIXTURE_ENV ]] || die "fixture files missing"
    # guest.env is written by build.sh: KILN_GUEST_USER, KILN_GUEST_PASSWORD, …
    # shellcheck disable=SC1090
    source "$KILN_FIXTURE_ENV"
}

# ---- the timestamping watcher -------------------------------------------------------------

# benches/stamp_lines.py (start_stamper, stop_stamper in benches/lib.sh) stamps each new line
# of the serial logs and kiln's stderr.

# ---- reading the stamped logs -------------------------------------------------------------

# ts_first FILE REGEX [AFTER]: time of the first line matching REGEX (stamped after AFTER).
ts_first() {
    [[ -f $1 ]] || return 0
    awk -F '\t' -v re="$2" -v after="${3:-0}" \
        '$1 + 0 > after + 0 && $2 ~ re { print $1; exit }' "$1"
}
# ts_last FILE: time of the last line.
ts_last() { if [[ -f $1 ]]; then awk -F '\t' 'END { print $1 }' "$1"; fi; }
# ts_line_after FILE AFTER: time of the first line stamped after AFTER.
ts_line_after() { ts_first "$1" '' "$2"; }

# sub A B / add A B: A − B, A + B in seconds; "" if either is missing (a marker not found),
# so a missing marker shows as n/a instead of a wrong number.
sub() { if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; fi; }
add() { if [[ -n $1 && -n $2 ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; fi; }
# num X [DECIMALS]: X rounded, or n/a
num() { if [[ -n $1 ]]; then printf "%.${2:-2}f" "$1"; else printf 'n/a'; fi; }

# steps_total JSON: the sum of every step's seconds.
steps_total() {
    "$PYTHON" -c 'import json, sys; print(sum(s["seconds"] for s in json.load(open(sys.argv[1]))["steps"]))' "$1"
}

# step_field JSON STEP FIELD: a field of one step of `kiln run --format json`.
step_field() {
    "$PYTHON" -c '
import json, sys
for s in json.load(open(sys.argv[1]))["steps"]:
    if s["step"] == sys.argv[2]:
        print(s[sys.argv[3]])' "$@"
}

# ---- one flow ------------------------------------------------------------------------------

# time_qemu_img_create DIR: seconds plain qemu-img takes for what kiln's create step does
# (median of 5 after one untimed warm-up: a single ~20 ms run is mostly page-cache luck).
time_qemu_img_create() {
    local i start end
    for ((i = 0; i <= 5; i++)); do
        start=$EPOCHREALTIME
        qemu-img create -q -f qcow2 -o compat=1.1 "$1/reference.qcow2" "$SIZE"
        end=$EPOCHREALTIME
        rm -f "$1/reference.qcow2"
        if ((i > 0)); then sub "$end" "$start" && echo; fi
    done | median
}

# run_flow DIR: `kiln run` on a new image in DIR with everything stamped; fails if a step did.
run_flow() {
    local dir=$1 image=$1/flow.qcow2 status=0
    mkdir -p "$dir/home/config" "$dir/home/data"
    (umask 077 && printf '%s\n' "$KILN_GUEST_PASSWORD" >"$dir/password")
    : >"$dir/kiln.err"
    start_stamper '^kiln [a-z]+: (creating|installing|configuring|checking|done|failed|interrupted)' \
        "$dir/kiln.err" "$dir/kiln.err.ts" \
        "$dir/flow.install.serial.log" "$dir/install.ts" \
        "$dir/flow.configure.serial.log" "$dir/configure.ts" \
        "$dir/flow.verify.serial.log" "$dir/verify.ts" ||
        die "the serial log stamper did not start"
    # kiln in its own HOME so the bench never reads or writes the user's config, log, records.
    # In the background (not foreground) so a SIGINT/SIGTERM to this script is acted on at
    # once; `trap - INT` undoes bash's SIG_IGN for background jobs, so kiln hears our SIGINT.
    local launched=$EPOCHREALTIME
    (
        trap - INT
        exec env "HOME=$dir/home" "XDG_CONFIG_HOME=$dir/home/config" "XDG_DATA_HOME=$dir/home/data" \
            "$KILN" run "$image" --size "$SIZE" --iso "$KILN_FIXTURE_ISO" \
            --user "$KILN_GUEST_USER" --password-file "$dir/password" \
            --until verify --format json >"$dir/result.json" 2>"$dir/kiln.err"
    ) &
    KILN_PID=$!
    wait "$KILN_PID" || status=$?
    KILN_PID=
    echo "$launched $EPOCHREALTIME" >"$dir/wall" # the whole command, for time outside the steps
    stop_stamper
    if ((status != 0)); then
        say "kiln run exited $status; its last lines:"
        tail -n 15 "$dir/kiln.err" >&2
        return 1
    fi
}

# ---- the numbers of one flow ------------------------------------------------------------

# record_row RUN STEP KILN_S IRREDUCIBLE_S: one line of $WORK/rows ("NA" for a missing value).
record_row() { echo "$1 $2 ${3:-NA} ${4:-NA}" >>"$WORK/rows"; }

# phases STEP NAME SECONDS [NAME SECONDS…]: one line of where a step's time went.
phases() {
    local line
    line=$(printf '  %-10s' "$1")
    shift
    while (($# >= 2)); do
        line+=$(printf ' %s %s |' "$1" "$(num "$2" 1)")
        shift 2
    done
    echo "${line% |}"
}

# measure_run RUN DIR REF_SECONDS: one row per step into $WORK/rows, and on stdout the phases
# of each boot step (from kiln's stamped stderr and the stamped serial logs).
measure_run() {
    local run=$1 dir=$2 ref=$3 json=$2/result.json err=$2/kiln.err.ts
    local kiln_s start first sshd login off_sent down_start down end irr boot shut

    record_row "$run" create "$(step_field "$json" create seconds)" "$ref"

    # install: the guest's own work, first serial byte → power down (last line if missing).
    kiln_s=$(step_field "$json" install seconds)
    start=$(ts_first "$err" '^kiln install: ')
    first=$(ts_first "$dir/install.ts" '')
    down=$(ts_first "$dir/install.ts" "$POWER_DOWN")
    if [[ -z $down ]]; then
        down=$(ts_last "$dir/install.ts")
        say "install: no '$POWER_DOWN' line; using the last serial line"
    fi
    end=$(ts_first "$err" '^kiln install: (done|failed)')
    irr=$(sub "$down" "$first")
    record_row "$run" install "$kiln_s" "$irr"
    phases install "start→first serial byte" "$(sub "$first" "$start")" "guest install" "$irr" \
        "power down→step done" "$(sub "$end" "$down")"

    # configure: boot → sshd, and the guest's shutdown once kiln has asked for it. Between the
    # two is kiln's work over SSH (sudo, sshd -t, restart, root login proof), counted as kiln's.
    kiln_s=$(step_field "$json" configure seconds)
    start=$(ts_first "$err" '^kiln configure: ')
    first=$(ts_first "$dir/configure.ts" '')
    sshd=$(ts_first "$dir/configure.ts" "$SSHD_UP")
    login=$(ts_first "$err" '^kiln configure: SSH: logged in')
    off_sent=$(ts_first "$err" '^kiln configure: shutting the guest down')
    down_start=""
    if [[ -n $off_sent ]]; then down_start=$(ts_line_after "$dir/configure.ts" "$off_sent"); fi
    down=$(ts_first "$dir/configure.ts" "$POWER_DOWN")
    if [[ -z $down ]]; then
        down=$(ts_last "$dir/configure.ts")
        say "configure: no '$POWER_DOWN' line; using the last serial line"
    fi
    end=$(ts_first "$err" '^kiln configure: (done|failed)')
    boot=$(sub "$sshd" "$first")
    shut=$(sub "$down" "$down_start")
    irr=$(add "$boot" "$shut")
    record_row "$run" configure "$kiln_s" "$irr"
    phases configure "start→first serial byte" "$(sub "$first" "$start")" "guest boot→sshd" "$boot" \
        "sshd→kiln logged in" "$(sub "$login" "$sshd")" "logged in→poweroff sent" "$(sub "$off_sent" "$login")" \
        "poweroff sent→first shutdown line" "$(sub "$down_start" "$off_sent")" "guest shutdown" "$shut" \
        "power down→step done" "$(sub "$end" "$down")"

    # verify: boot → sshd; the rest (static checks, the driver's SSH job, the kill) is kiln's.
    kiln_s=$(step_field "$json" verify seconds)
    start=$(ts_first "$err" '^kiln verify: ')
    first=$(ts_first "$dir/verify.ts" '')
    sshd=$(ts_first "$dir/verify.ts" "$SSHD_UP")
    login=$(ts_first "$err" '^kiln verify: SSH ready')
    end=$(ts_first "$err" '^kiln verify: (done|failed)')
    irr=$(sub "$sshd" "$first")
    record_row "$run" verify "$kiln_s" "$irr"
    phases verify "start→first serial byte" "$(sub "$first" "$start")" "guest boot→sshd" "$irr" \
        "sshd→kiln SSH ready" "$(sub "$login" "$sshd")" "SSH ready→step done" "$(sub "$end" "$login")"

    # kiln's startup, accelerator probe and session file writes are in no step's seconds.
    local launched ended
    read -r launched ended <"$dir/wall"
    phases "kiln run" "whole command" "$(sub "$ended" "$launched")" "sum of the steps" "$(steps_total "$json")" \
        "outside the steps" "$(sub "$(sub "$ended" "$launched")" "$(steps_total "$json")")"
}

# ---- the table ------------------------------------------------------------------------------

# median of the numbers on stdin ("" when there are none)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# column STEP N: the Nth field of every row of STEP (all runs), missing values left out
column() { awk -v s="$1" -v n="$2" '$2 == s && $n != "NA" { print $n }' "$WORK/rows"; }

# percent PART WHOLE
percent() { if [[ -n $1 && -n $2 ]]; then awk -v p="$1" -v w="$2" 'BEGIN { printf "%.1f%%", (w > 0 ? 100 * p / w : 0) }'; else printf 'n/a'; fi; }

table_row() {
    printf '%-10s %12s %14s  %-46s %11s %11s\n' "$@"
}

print_table() {
    local step kiln_s irr over digits total_k=0 total_i=0
    local -A what=(
        [create]="(qemu-img create -f qcow2 -o compat=1.1 $SIZE)"
        [install]="(installer: first serial byte → Power down)"
        [configure]="(boot→sshd + poweroff→Power down)"
        [verify]="(boot→sshd)"
    )
    echo
    table_row step "kiln wall s" "irreducible s" "(what it is)" "overhead s" "overhead %"
    for step in create install configure verify; do
        kiln_s=$(column "$step" 3 | median)
        irr=$(column "$step" 4 | median)
        over=$(sub "$kiln_s" "$irr")
        digits=2
        if [[ $step == create ]]; then digits=3; fi # tens of milliseconds
        table_row "$step" "$(num "$kiln_s" $digits)" "$(num "$irr" $digits)" "${what[$step]}" \
            "$(num "$over" $digits)" "$(percent "$over" "$kiln_s")"
        total_k=$(add "$total_k" "$kiln_s")
        total_i=$(add "$total_i" "$irr")
    done
    over=$(sub "$total_k" "$total_i")
    table_row total "$(num "$total_k")" "$(num "$total_i")" "" "$(num "$over")" "$(percent "$over" "$total_k")"

    kiln_s=$(column create 3 | median)
    irr=$(column create 4 | median)
    printf '\ncreate: kiln %s s vs qemu-img create %s s = %s× (kiln also reads the image back with qemu-img info)\n' \
        "$(num "$kiln_s" 3)" "$(num "$irr" 3)" \
        "$(if [[ -n $kiln_s && -n $irr ]]; then awk -v k="$kiln_s" -v q="$irr" 'BEGIN { printf "%.1f", (q > 0 ? k / q : 0) }'; else echo n/a; fi)"
    if ((RUNS > 1)); then
        echo "(medians of $RUNS runs, each column on its own; total = sum of the medians)"
    fi
}

# ---- main -----------------------------------------------------------------------------------

main() {
    local run dir ref load_before
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, not '$RUNS'"
    command -v python3 >/dev/null || die "needs python3 (the serial log watcher)"
    # The interpreter itself, not a wrapper such as a pyenv shim (which takes ~0.3–1 s to start).
    PYTHON=$(python3 -c 'import sys; print(sys.executable)')
    command -v qemu-img >/dev/null || die "needs qemu-img"
    find_kiln
    find_fixtures
    say "kiln: $KILN"
    say "fixtures: $KILN_FIXTURE_ISO (user $KILN_GUEST_USER)"
    say "work dir: $WORK"
    : >"$WORK/rows"
    load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)
    for ((run = 1; run <= RUNS; run++)); do
        dir=$WORK/run$run
        mkdir -p "$dir"
        ref=$(time_qemu_img_create "$dir")
        say "== run $run/$RUNS: kiln run --until verify (takes minutes under TCG)"
        run_flow "$dir" || die "run $run failed (BENCH_KEEP=1 keeps the logs of a rerun)"
        echo "run $run phases (s):"
        measure_run "$run" "$dir" "$ref"
    done
    print_table
    printf '\nNumbers move with the machine'\''s load (TCG boots vary ~2×): load average %s before, %s after.\n' \
        "$load_before" "$(cut -d ' ' -f 1-3 /proc/loadavg)"
}

main
