#!/usr/bin/env bash
# The fresh-machine check, run before every stop: what a new user (and CI) gets.
#   1. clones the committed HEAD of this repo into a new temp dir, with ../shared beside it;
#   2. runs `make test` there: a new .venv, installed only from uv.lock, with empty uv/pip/XDG
#      caches, so nothing installed or downloaded earlier can hide a missing step;
#   3. runs `make demo` there to the end;
#   4. prints the wall time of each and the size of .venv.
# Uncommitted changes are not part of the check (CI sees only commits): commit first.
# Usage: infra/fresh-check.sh [--keep]   (--keep leaves the temp dir for a look)
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
keep=0; [ "${1:-}" = "--keep" ] && keep=1
[ -z "$(git -C "$repo" status --porcelain)" ] || echo "fresh-check: uncommitted changes are NOT checked (commit them first)" >&2

work=$(mktemp -d /tmp/stt-fresh.XXXXXX)
cleanup() { if [ $keep -eq 0 ]; then rm -rf "$work"; else echo "fresh-check: left in $work"; fi; }
trap cleanup EXIT

git clone -q --no-local "$repo" "$work/stt-corpus"
[ -d "$repo/../shared" ] && ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
cd "$work/stt-corpus"
echo "fresh-check: $(git log -1 --format='%h %s') in $work/stt-corpus"

# No caches that would hide a missing install step or a drifted download.
export UV_CACHE_DIR="$work/cache/uv" PIP_NO_CACHE_DIR=1 XDG_CACHE_HOME="$work/cache/xdg"
export CI=true

timed() {  # timed NAME CMD...: runs CMD, logs to $work/NAME.log, prints its wall time
  local name=$1; shift; local start=$SECONDS rc=0
  "$@" >"$work/$name.log" 2>&1 || rc=$?
  echo "fresh-check: $name exit $rc in $((SECONDS - start)) s (log: $work/$name.log)"
  tail -n 3 "$work/$name.log" | sed 's/^/    /'
  return $rc
}
status=0
timed make-test make test || status=1
echo "fresh-check: .venv is $(du -sh .venv | cut -f1)"
timed make-demo make demo || status=1
[ $status -eq 0 ] && echo "fresh-check: PASSED" || { echo "fresh-check: FAILED"; keep=1; }
exit $status
