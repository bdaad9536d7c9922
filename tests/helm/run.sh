#!/usr/bin/env bash
# Tests of the Helm chart and the Containerfile (see test_chart.py), runnable on their own:
#   tests/helm/run.sh [--portcullis BIN] [--only render,negative,selftest,monitoring,containerfile]
# Builds the renderer (Go, offline, against Debian's Go libraries) unless --renderer BIN is given.
# BIN defaults to build-release/proxy/portcullis. Last line: "N passed, N failed".
# Debian packages: golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev
#   golang-github-xeipuuv-gojsonschema-dev python3-kubernetes python3-jsonschema python3-yaml
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
renderer="" portcullis="" workdir="" only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--renderer) renderer="$2"; shift 2 ;;
	--portcullis) portcullis="$2"; shift 2 ;;
	--workdir) workdir="$2"; shift 2 ;;
	--only) only="$2"; shift 2 ;;
	*) sed -n '2,7p' "$0" >&2; exit 2 ;;
	esac
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
[ -n "$workdir" ] || workdir="$tmp/work"
if [ -z "$renderer" ]; then
	renderer="$tmp/helm-render"
	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="${GOCACHE:-$tmp/gocache}" \
		go build -o "$renderer" "$here/render/main.go"
fi
if [ -z "$portcullis" ] && [ -x "$src/build-release/proxy/portcullis" ]; then
	portcullis="$src/build-release/proxy/portcullis"
fi
args=(--renderer "$renderer" --srcdir "$src" --workdir "$workdir")
[ -z "$portcullis" ] || args+=(--portcullis "$portcullis")
[ -z "$only" ] || args+=(--only "$only")
# Debian's interpreter: python3-kubernetes and python3-jsonschema are Debian packages.
exec env PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$here/test_chart.py" "${args[@]}"
