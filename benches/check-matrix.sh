#!/usr/bin/env bash
# The whole `kiln check` matrix (tests/check_matrix.rs with KILN_FULL_MATRIX=1): every broken
# image of tests/fixtures/variants.sh, two kiln processes at a time, each row's verdict and
# named cause checked. Prints each variant's time (its whole `kiln check`), the total, the load
# average before and after, and which rows kiln got wrong. Run it before resolving an issue
# about check messages; CI runs only the test's CI set.
#
# Usage: benches/check-matrix.sh               (debug build, as `cargo test` uses; as root)
#        PROFILE=release benches/check-matrix.sh
#        KILN_MATRIX_ONLY=disk-full,shell-false benches/check-matrix.sh   (those rows only)
set -euo pipefail

cd "$(dirname "$0")/.."
say() { printf '%s\n' "$*" >&2; }

cargo_args=(--test check_matrix)
if [[ ${PROFILE:-debug} == release ]]; then cargo_args+=(--release); fi
say "== building the matrix test (${PROFILE:-debug}) and the variants"
cargo test "${cargo_args[@]}" --no-run --quiet
bash tests/fixtures/variants.sh >/dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
say "== load before: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
status=0
KILN_FULL_MATRIX=1 cargo test "${cargo_args[@]}" --quiet -- --exact \
    each_broken_image_fails_its_own_check_and_names_the_cause --nocapture >"$log" 2>&1 || status=$?
end=$(date +%s.%N)
say "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "per variant (seconds of its kiln check, slowest first):"
sed -n 's/^matrix: \([a-z0-9-]*\) *\([0-9.]*\) s  \([A-Za-z]*\)$/\2 \1 \3/p' "$log" | sort -rn |
    awk '{ printf "  %7.1f  %-22s %s\n", $1, $2, $3 }'
grep -E '^matrix: [0-9]+ (of|rows)' "$log" | sed 's/^matrix: /  /' || true
awk -v s="$start" -v e="$end" 'BEGIN { printf "total: %.1f s (the test command; build and variants done before)\n", e - s }'
if grep -q '^matrix:     - ' "$log"; then
    echo "rows kiln got wrong:"
    grep -E '^matrix: [a-z0-9-]+ +[0-9.]+ s  WRONG|^matrix:     - ' "$log" |
        sed -e 's/^matrix:     - /    - /' -e 's/^matrix: \([a-z0-9-][a-z0-9-]*\) .*/  \1:/'
elif ((status != 0)); then
    tail -n 40 "$log"
fi
exit "$status"
