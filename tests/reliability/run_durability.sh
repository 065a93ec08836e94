#!/usr/bin/env bash
# The durability tests of RELIABILITY.md §4 that run in CI, in order, against the real binary
# (target/debug/mailbrake, or $MAILBRAKE_BIN): T1 (kill -9 under load; also prints T20's
# duplicates), T2 (fsync chain under strace; also prints T20's commit->250 latency), T17
# (upstream failures), T18 (graceful shutdown), T19 (restart consistency), T16 in its no-root
# form (free-space floor), and T22 (real Prometheus) when `prometheus` is installed.
# Prints every FIGURE line, stops at the first failure (exit 1). Loopback only.
#
# Usage: tests/reliability/run_durability.sh        (from anywhere)
#   T1_SEED=N      replay T1's kill point
#   T16_LOOP=1     also run T16's loop-mounted ext4 form (needs root and loop devices)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

BIN=${MAILBRAKE_BIN:-$REPO/target/debug/mailbrake}
if [ ! -x "$BIN" ]; then
  echo "=== building $BIN (cargo build)"
  cargo build --locked
fi
for tool in strace smtp-sink python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "FAIL: $tool not installed" >&2; exit 1; }
done

FIGURES=$(mktemp)
trap 'rm -f "$FIGURES"' EXIT

run() {
  local name=$1 script=$2; shift 2
  echo
  echo "=== $name: python3 tests/reliability/$script $*"
  local start=$SECONDS out rc=0
  out=$(timeout 300 python3 "tests/reliability/$script" "$@" 2>&1) || rc=$?
  echo "$out"
  echo "$out" | grep '^FIGURE ' >>"$FIGURES" || true
  if [ "$rc" -ne 0 ]; then
    echo
    echo "FAIL: $name (exit $rc after $((SECONDS - start)) s)"
    echo "--- figures so far:"
    cat "$FIGURES"
    exit 1
  fi
  echo "--- $name passed in $((SECONDS - start)) s"
}

run T1 t01_kill9.py ${T1_SEED:+--seed "$T1_SEED"}
run T2+T20 t02_fsync_order.py
run T17 t17_upstream.py
run T18 t18_shutdown.py
run T19 t19_restart.py
run T16-floor t16_disk_full.py --floor
if [ "${T16_LOOP:-0}" = 1 ]; then
  run T16-loop t16_disk_full.py --loop
fi
if command -v "${PROMETHEUS:-prometheus}" >/dev/null; then
  run T22 t22_prometheus_load.py
else
  echo; echo "=== T22 skipped: prometheus not installed"
fi

echo
echo "=== all durability tests passed; figures:"
cat "$FIGURES"
