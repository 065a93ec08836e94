#!/usr/bin/env bash
# T21 (RELIABILITY.md §4): run every cargo-fuzz target of fuzz/ for N seconds each
# (argument, default 60) on the stable toolchain, and print one FIGURE line per target:
# executions, corpus size (entries and bytes), crashes/timeouts/OOMs (artifacts written).
#
#   tests/reliability/t21_fuzz.sh [SECONDS] [TARGET...]
#
# Targets: smtp_line, smtp_data, inspect, config_policy. Each run is
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> --sanitizer none -- \
#       -max_total_time=N -rss_limit_mb=2048 -timeout=10 -max_len=<per target>
# (libFuzzer needs `-Z` flags; RUSTC_BOOTSTRAP=1 lets the stable 1.95 toolchain take them;
# `--sanitizer none` because ASan needs a nightly std; Rust is memory-safe, so what is
# hunted is panics, debug-assertion overflows, hangs > 10 s and memory > 2 GiB).
# Before each target, the known crash inputs in fuzz/regressions/<target>/ are replayed; any
# that still fails is reported and makes the exit status 1. New inputs go to
# fuzz/corpus/<target>/ (untracked; seeds come from make_seeds.py); a crash leaves its
# reproducer in fuzz/artifacts/<target>/ and makes this script exit 1. Replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> --sanitizer none fuzz/artifacts/<target>/<file>
# Manual / nightly: not part of run_attacks.sh (4 x N seconds plus a ~5 min first build).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO/fuzz"

SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(smtp_line smtp_data inspect config_policy)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "=== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
python3 make_seeds.py >/dev/null
echo "=== building the fuzz targets (release, coverage instrumentation, no sanitizer)"
cargo fuzz build --sanitizer none

max_len() {
  case $1 in
    inspect) echo 65536 ;;
    smtp_data|config_policy) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

# Keep-going mode (default): libFuzzer's -fork=1 with -ignore_crashes/-ignore_timeouts/
# -ignore_ooms, so a known crash does not end the run early; every crash/timeout/OOM is still
# written to fuzz/artifacts/<target>/ and counted. T21_STOP_ON_CRASH=1: classic mode, stop at
# the first one.
if [ "${T21_STOP_ON_CRASH:-0}" = 1 ]; then
  MODE=()
else
  MODE=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
failed=0
for t in "${TARGETS[@]}"; do
  # First the known crash inputs of fuzz/regressions/<target>/ (tracked): each must now pass.
  regress_failing=0
  if [ -d "regressions/$t" ]; then
    for r in regressions/$t/*; do
      case $r in *.md) continue ;; esac
      if ! cargo fuzz run "$t" --sanitizer none "$r" -- -runs=1 -timeout=30 >"$LOGS/regress.log" 2>&1; then
        regress_failing=$((regress_failing + 1))
        echo "REGRESSION $t $r still fails: $(grep -aoE 'panicked at [^ ]+|ERROR: libFuzzer: [a-z -]+' "$LOGS/regress.log" | head -1 || true)"
      fi
    done
  fi
  echo
  echo "=== $t: ${SECS}s (${MODE[*]:-stop at the first crash})"
  mkdir -p "corpus/$t" "artifacts/$t"
  ls "artifacts/$t" >"$LOGS/$t.before"
  rc=0
  cargo fuzz run "$t" --sanitizer none -- -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
    -max_len="$(max_len "$t")" -print_final_stats=1 "${MODE[@]}" >"$LOGS/$t.log" 2>&1 || rc=$?
  new=$(ls "artifacts/$t" | grep -vxF -f "$LOGS/$t.before" | grep -E '^(crash|timeout|oom|leak|slow-unit)-' || true)
  if [ ${#MODE[@]} -gt 0 ]; then
    last=$(grep -E '^#[0-9]+: cov:' "$LOGS/$t.log" | tail -1)
    execs=$(echo "$last" | sed -E 's/^#([0-9]+):.*/\1/')
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
    corp=$(echo "$last" | grep -oE 'corp: [0-9]+' | grep -oE '[0-9]+')
    rate=$(echo "$last" | grep -oE 'exec/s: [0-9]+' | grep -oE '[0-9]+')
    otc=$(echo "$last" | grep -oE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' | sed 's/.*: //')
    ooms=${otc%%/*}; rest=${otc#*/}; timeouts=${rest%%/*}; crashes=${rest#*/}
    peak="-"
  else
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$' | tail -1)
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$LOGS/$t.log" | tail -1 | grep -oE '[0-9]+')
    corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$LOGS/$t.log" | tail -1 | sed 's/corp: //')
    peak=$(grep -oE 'stat::peak_rss_mb: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$' | tail -1)
    crashes=$(echo "$new" | grep -c '^crash-' || true)
    timeouts=$(echo "$new" | grep -c '^timeout-' || true)
    ooms=$(echo "$new" | grep -c '^oom-' || true)
  fi
  grep -E '^#[0-9]+: cov:|^Done|^INFO: exiting' "$LOGS/$t.log" | tail -3 || true
  echo "FIGURE T21 target=$t seconds=$SECS execs=${execs:-?} execs_per_s=${rate:-?} cov=${cov:-?} corpus=${corp:-?} corpus_files=$(ls "corpus/$t" | wc -l) peak_rss_mb=${peak:-?} crashes=${crashes:-?} timeouts=${timeouts:-?} ooms=${ooms:-?} new_artifacts=$(echo -n "$new" | grep -c . || true) regressions_failing=$regress_failing exit=$rc"
  [ "$regress_failing" -eq 0 ] || failed=1
  if [ -n "$new" ]; then
    failed=1
    echo "FAIL T21 $t: new artifacts in fuzz/artifacts/$t/; where each one fails:"
    for a in $new; do
      where=$(cargo fuzz run "$t" --sanitizer none "artifacts/$t/$a" -- -runs=1 -timeout=30 2>&1 \
        | grep -oE "panicked at [^ ]+|ERROR: libFuzzer: [a-z -]+" | head -1 || true)
      echo "${where:-unknown (see the log)}" >>"$LOGS/$t.where"
      echo "  $a: ${where:-unknown}"
    done
    echo "  distinct failure sites:"
    sort "$LOGS/$t.where" | uniq -c | sed 's/^/   /'
  elif [ "$rc" -ne 0 ]; then
    failed=1
    echo "FAIL T21 $t: exit $rc; log tail:"
    tail -n 40 "$LOGS/$t.log"
  fi
done
exit $failed
