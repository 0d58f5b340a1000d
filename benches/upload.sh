#!/usr/bin/env bash
# Measured comparison, not a test: `kiln publish --to djinn` against curl uploading the same
# 2 GiB qcow2 into a local stand-in server (a sink that compares every byte with the file, see
# upload_server.py), and `kiln publish --compact` against plain `qemu-img convert`. Prints
# every run, the medians, the load average, and the goals:
#   upload throughput >= 0.95 x `curl -X POST -T file`, kiln peak RSS <= 64 MiB.
#
# Usage: benches/upload.sh            (RUNS=5 by default; BENCH_DIR to keep the files)
#        KILN=path/to/kiln benches/upload.sh   (that binary; else cargo build --release, which
#                                               honours CARGO_TARGET_DIR)
#        BENCH_COMPACT_IMAGE=disk.qcow2 benches/upload.sh   (else the test fixture disk)
#        COMPACT_RUNS=0 benches/upload.sh                    (uploads only)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
COMPACT_RUNS=${COMPACT_RUNS:-3}
TOKEN=bench-token-$$
WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/kiln-bench.XXXXXX)}
mkdir -p "$WORK/server" "$WORK/home/config" "$WORK/home/data" "$WORK/disks"
SERVER_PID=

cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

if [[ ! -x /usr/bin/time ]]; then
    say "installing GNU time (for peak RSS)"
    apt-get install -y -q time >/dev/null
fi

if [[ -z ${KILN:-} ]]; then
    say "== building kiln (release)"
    cargo build --release --quiet
    KILN=${CARGO_TARGET_DIR:-$ROOT/target}/release/kiln
fi

# kiln runs in its own HOME so the bench never reads or writes the user's config and log.
KILN_RUN=(env "HOME=$WORK/home" "XDG_CONFIG_HOME=$WORK/home/config"
    "XDG_DATA_HOME=$WORK/home/data" "KILN_DJINN_TOKEN=$TOKEN" "$KILN")

IMG=$WORK/bench.qcow2
if [[ ! -f $IMG ]]; then
    say "== making a 2 GiB qcow2 (preallocation=full)"
    qemu-img create -q -f qcow2 -o compat=1.1,preallocation=full "$IMG" 2G
fi
SIZE=$(stat -c %s "$IMG")
say "image: $IMG, $SIZE bytes ($(qemu-img info --output=json "$IMG" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["format"], "compat", d["format-specific"]["data"]["compat"])'))"
cat "$IMG" >/dev/null # start every run from the page cache

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$ROOT/benches/upload_server.py" "$PORT" "$WORK/server" "$TOKEN" "$IMG" &
SERVER_PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 50); do
    curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL/images" && break
    sleep 0.1
done

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mbps() { awk -v b="$SIZE" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }

# `time -f "%e %M %U %S"` (seconds, peak RSS KiB, user and system CPU seconds) of a command
# into $WORK/time; its exit status.
# (time writes "Command exited with non-zero status N" first when the command fails.)
timed() {
    local status=0
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/time.raw" "$@" || status=$?
    tail -n 1 "$WORK/time.raw" >"$WORK/time"
    return $status
}
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

# The server logs one line per POST (`RECEIVED EXPECTED ok`, or where the bytes differed from
# $IMG); every upload must add exactly one `ok` line.
UPLOADS=0
check_upload() {
    UPLOADS=$((UPLOADS + 1))
    local lines last
    lines=$(wc -l <"$WORK/server/uploads.log")
    last=$(tail -n 1 "$WORK/server/uploads.log")
    [[ $lines == "$UPLOADS" && $last == "$SIZE $SIZE ok" ]] \
        || { say "the server did not receive the file intact: $last"; exit 1; }
}

say "== upload: $RUNS runs each, alternating (stand-in server at $URL)"
: >"$WORK/server/uploads.log"
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)
: >"$WORK/kiln.s"; : >"$WORK/kiln.t"; : >"$WORK/curl.s"; : >"$WORK/curl.t"; : >"$WORK/kiln.rss"
: >"$WORK/kiln.cpu"; : >"$WORK/curl.cpu"
for run in $(seq "$RUNS"); do
    timed "${KILN_RUN[@]}" publish "$IMG" --to djinn --url "$URL" --namespace bench --name bench \
        --format json >"$WORK/kiln.out" 2>"$WORK/kiln.err" || { cat "$WORK/kiln.err" >&2; exit 1; }
    read -r secs rss user sys <"$WORK/time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
    transfer=$(json_field "$WORK/kiln.out" transfer_seconds)
    check_upload
    echo "$secs" >>"$WORK/kiln.s"; echo "$transfer" >>"$WORK/kiln.t"; echo "$rss" >>"$WORK/kiln.rss"
    echo "$cpu" >>"$WORK/kiln.cpu"
    printf 'run %d  kiln publish     upload %5.2f s %7s MB/s | command %5.2f s %7s MB/s | CPU %5.2f s | peak RSS %5.1f MiB\n' \
        "$run" "$transfer" "$(mbps "$transfer")" "$secs" "$(mbps "$secs")" "$cpu" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"

    timed curl -sS -X POST -T "$IMG" -H "Content-Type: application/x-qemu-disk" \
        -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code} %{time_total}' \
        "$URL/images?name=bench&namespace=bench" >"$WORK/curl.out"
    read -r secs rss user sys <"$WORK/time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
    read -r code transfer <"$WORK/curl.out" || true # no newline after -w
    [[ $code == 201 ]] || { say "curl -T got $code"; exit 1; }
    check_upload
    echo "$secs" >>"$WORK/curl.s"; echo "$transfer" >>"$WORK/curl.t"; echo "$cpu" >>"$WORK/curl.cpu"
    printf 'run %d  curl -X POST -T  upload %5.2f s %7s MB/s | command %5.2f s %7s MB/s | CPU %5.2f s | peak RSS %5.1f MiB\n' \
        "$run" "$transfer" "$(mbps "$transfer")" "$secs" "$(mbps "$secs")" "$cpu" \
        "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
done

load_after=$(cut -d ' ' -f 1-3 /proc/loadavg)

say "== curl --data-binary @file (reads the whole file into memory first)"
set +e
timed curl -sS -X POST --data-binary "@$IMG" -H "Content-Type: application/x-qemu-disk" \
    -H "Authorization: Bearer $TOKEN" -o /dev/null -w '%{http_code}' \
    "$URL/images?name=bench&namespace=bench" >"$WORK/curl.out" 2>"$WORK/curl.err"
status=$?
set -e
read -r secs rss _ _ <"$WORK/time" || true
printf 'curl --data-binary: exit %d, HTTP %s, %s s, peak RSS %.1f MiB: %s\n' "$status" \
    "$(cat "$WORK/curl.out")" "$secs" "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')" \
    "$(head -n 1 "$WORK/curl.err")"

kiln_t=$(median <"$WORK/kiln.t"); curl_t=$(median <"$WORK/curl.t")
kiln_s=$(median <"$WORK/kiln.s"); curl_s=$(median <"$WORK/curl.s")
kiln_rss=$(sort -n "$WORK/kiln.rss" | tail -1)
ratio=$(awk -v k="$kiln_t" -v c="$curl_t" 'BEGIN { printf "%.3f", c / k }')
whole=$(awk -v k="$kiln_s" -v c="$curl_s" 'BEGIN { printf "%.3f", c / k }')
echo
echo "upload median (the transfer: kiln's transfer_seconds, curl's time_total):"
echo "  kiln $(mbps "$kiln_t") MB/s, curl -T $(mbps "$curl_t") MB/s, kiln/curl = $ratio"
echo "whole-command median (kiln also runs its preflight checks and the name check):"
echo "  kiln $(mbps "$kiln_s") MB/s, curl -T $(mbps "$curl_s") MB/s, kiln/curl = $whole"
echo "CPU (user+sys) median per upload: kiln $(median <"$WORK/kiln.cpu") s, curl -T $(median <"$WORK/curl.cpu") s"
echo "kiln peak RSS (max of $RUNS runs): $(awk -v k="$kiln_rss" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
echo "load average (1, 5, 15 min) before the uploads: $load_before; after: $load_after ($(nproc) CPUs)"
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.95) }' && goal=met || goal=MISSED
echo "goal upload throughput >= 0.95 x curl -T: $goal"
awk -v k="$kiln_rss" 'BEGIN { exit !(k <= 64 * 1024) }' && goal=met || goal=MISSED
echo "goal peak RSS <= 64 MiB: $goal"

# ---------------------------------------------------------------------------------------------
if ((COMPACT_RUNS == 0)); then exit 0; fi
say "== compaction"
CIMG=${BENCH_COMPACT_IMAGE:-}
if [[ -z $CIMG ]]; then
    CIMG=$(bash "$ROOT/tests/fixtures/build.sh" all 2>/dev/null | sed -n 's/^KILN_FIXTURE_DISK=//p') || true
fi
if [[ -z $CIMG || ! -f $CIMG ]]; then
    say "no fixture disk (set BENCH_COMPACT_IMAGE); compacting the 2 GiB bench image instead"
    CIMG=$IMG
fi
CSIZE=$(stat -c %s "$CIMG")
echo
echo "compaction input: $CIMG, $CSIZE bytes"
printf 'driver qemu {\n\tdisks "%s"\n}\n' "$WORK/disks" >"$WORK/driver.conf"
for compress in "" "-c"; do
    label=${compress:+compressed}; label=${label:-plain}
    : >"$WORK/kc.s"; : >"$WORK/qc.s"
    for run in $(seq "$COMPACT_RUNS"); do
        rm -rf "$WORK/disks/qemu"
        timed "${KILN_RUN[@]}" publish "$CIMG" --to offline --driver-conf "$WORK/driver.conf" --name bench \
            --compact ${compress:+--compress} --format json >"$WORK/kiln.out" 2>"$WORK/kiln.err" \
            || { cat "$WORK/kiln.err" >&2; exit 1; }
        read -r ks krss _ _ <"$WORK/time"
        kout=$(stat -c %s "$WORK/disks/qemu/x86_64/bench")
        echo "$ks" >>"$WORK/kc.s"

        rm -f "$WORK/convert.qcow2"
        timed qemu-img convert -O qcow2 -o compat=1.1 $compress "$CIMG" "$WORK/convert.qcow2"
        read -r qs qrss _ _ <"$WORK/time"
        qout=$(stat -c %s "$WORK/convert.qcow2")
        echo "$qs" >>"$WORK/qc.s"
        printf 'run %d %-10s  kiln --compact %6.2f s -> %11d bytes (RSS %5.1f MiB)   qemu-img convert %6.2f s -> %11d bytes (RSS %5.1f MiB)\n' \
            "$run" "$label" "$ks" "$kout" "$(awk -v k="$krss" 'BEGIN { print k / 1024 }')" \
            "$qs" "$qout" "$(awk -v k="$qrss" 'BEGIN { print k / 1024 }')"
    done
    echo "compaction median ($label): kiln $(median <"$WORK/kc.s") s, qemu-img convert $(median <"$WORK/qc.s") s"
done
rm -rf "$WORK/disks/qemu" "$WORK/convert.qcow2"
echo "(kiln also runs the preflight checks, reads the result back and fsyncs it before the rename)"
