#!/usr/bin/env bash
# Run one libFuzzer binary for a bounded time from the committed corpus, without writing to it.
# Usage: run_fuzz.sh BINARY CORPUS_DIR SECONDS
set -euo pipefail
bin=$1 corpus=$2 secs=$3
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
exit $rc
