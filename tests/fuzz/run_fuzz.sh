#!/usr/bin/env bash
# Run one libFuzzer binary for a bounded time from the committed corpus, without writing to it.
# Usage: run_fuzz.sh BINARY CORPUS_DIR SECONDS
# Prints the executions per second; a target under MIN_EXEC_PER_SEC (default 1000) fails: a
# fuzzer that slow explores almost nothing in the time it is given.
set -euo pipefail
bin=$1 corpus=$2 secs=$3
min=${MIN_EXEC_PER_SEC:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/new"
rc=0
"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
	-artifact_prefix="$work/" -print_final_stats=1 "$work/new" "$corpus" 2>"$work/log" || rc=$?
tail -n 25 "$work/log"
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
	[ -e "$f" ] || continue
	echo "artifact $(basename "$f") (base64):"
	base64 -w0 "$f"; echo
done
runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/log" | tail -1)
eps=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$work/log" | tail -1)
echo "$(basename "$bin"): ${runs:-?} executions, ${eps:-?} per second (at least $min wanted)"
if [ "$rc" -eq 0 ] && { [ -z "$eps" ] || [ "$eps" -lt "$min" ]; }; then
	echo "$(basename "$bin"): too slow to explore anything: ${eps:-no} executions per second"
	rc=1
fi
# libFuzzer exits 77 when it finds a bug, and meson reads 77 as "skipped": a finding is a failure.
[ "$rc" -eq 0 ] || exit 1
exit 0
