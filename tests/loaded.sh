#!/usr/bin/env bash
# Run a command with the machine loaded: one busy loop per CPU, stopped (by PID) when the
# command ends.  The way to check a new test is not timing-sensitive:
#   tests/loaded.sh meson test -C build-test --suite integration
set -uo pipefail
n=$(nproc)
pids=()
for _ in $(seq "$n"); do
	( while :; do :; done ) &
	pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
"$@"
