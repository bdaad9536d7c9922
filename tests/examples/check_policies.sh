#!/bin/sh
# Every policy under policy/examples/ passes `portcullis --check FILE --strict`,
# except broken.yaml, which exists to show validation errors and must fail
# with exit 1 and FILE:LINE:COL messages. New files are picked up by the glob.
#   check_policies.sh PORTCULLIS SRCDIR
set -u
bin=$1
dir=$2/policy/examples
pass=0
fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for f in "$dir"/*.yaml; do
	[ -e "$f" ] || continue
	name=$(basename "$f")
	"$bin" --check "$f" --strict >"$out" 2>&1
	rc=$?
	if [ "$name" = broken.yaml ]; then
		if [ $rc -eq 1 ] && grep -q "^$f:[0-9]*:[0-9]*: " "$out"; then
			pass=$((pass + 1)); echo "ok - $name is refused with FILE:LINE:COL errors"
		else
			fail=$((fail + 1)); echo "not ok - $name: expected exit 1 with located errors, got $rc:"; sed 's/^/#   /' "$out"
		fi
	elif [ $rc -eq 0 ] && grep -q ": OK: " "$out"; then
		pass=$((pass + 1)); echo "ok - $name passes --check --strict"
	else
		fail=$((fail + 1)); echo "not ok - $name: --check --strict exited $rc:"; sed 's/^/#   /' "$out"
	fi
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] && [ $pass -ge 2 ]
