# shellcheck shell=bash
# Shared by the bench scripts (sourced): stopping what a bench started, and making sure no
# QEMU of it survives.

# stop_pid PID SIGNAL SECONDS: send SIGNAL to PID (a child of this shell), wait up to SECONDS
# for it to end, then SIGKILL; reaps it. A zombie still answers `kill -0`, so its state is read.
stop_pid() {
    local pid=$1 signal=$2 seconds=$3 tenths
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || true
        return 0
    fi
    kill "-$signal" "$pid" 2>/dev/null || true
    for ((tenths = 0; tenths < seconds * 10; tenths++)); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# kill_leftover_qemu DIR: every QEMU a bench starts has its disk under the bench's work DIR,
# so its command line names DIR (QEMUs of other users of the machine are not ours). Says
# whether any was left, kills those, and returns 1 if there were.
kill_leftover_qemu() {
    local left
    left=$(pgrep -f "qemu-system.*$1" || true)
    if [[ -z $left ]]; then
        printf '%s\n' "no qemu-system process of this bench is left (pgrep -f 'qemu-system.*$1': none)" >&2
        return 0
    fi
    printf '%s\n' "WARNING: QEMU left behind (pids: $(tr '\n' ' ' <<<"$left")); killing them" >&2
    # shellcheck disable=SC2086  # one pid per word
    kill -KILL $left 2>/dev/null || true
    return 1
}

# keep_or_remove_work DIR: BENCH_KEEP=1 (any value but 0) keeps the bench's work dir and says
# where it is; otherwise it is removed.
keep_or_remove_work() {
    if [[ -n ${BENCH_KEEP:-} && ${BENCH_KEEP} != 0 ]]; then
        printf '%s\n' "kept $1" >&2
    else
        rm -rf "$1"
    fi
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_stamper ECHO_RE SRC DST [SRC DST…]: benches/stamp_lines.py in the background, its pid
# in STAMPER_PID. Returns once it is up (it opens its outputs after installing its SIGTERM
# handler), so no line is missed and stopping it is clean; fails if it is not up in 10 s.
start_stamper() {
    local last_dst=${*: -1} tenths
    python3 "$(dirname "${BASH_SOURCE[0]}")/stamp_lines.py" "$@" &
    STAMPER_PID=$!
    for ((tenths = 0; tenths < 100; tenths++)); do
        [[ -e $last_dst ]] && return 0
        sleep 0.1
    done
    return 1
}

# stop_stamper: SIGTERM makes the stamper read its files one last time and write out
# unfinished lines before it exits.
stop_stamper() {
    [[ -n ${STAMPER_PID:-} ]] || return 0
    stop_pid "$STAMPER_PID" TERM 5
    STAMPER_PID=
}
