#!/usr/bin/env bash
# The attack tests of RELIABILITY.md §2/§4 that run in CI, in order, against the real binary
# (target/debug/mailbrake, or $MAILBRAKE_BIN): T4+T5 (smuggling in and out), T6 (STARTTLS
# injection), T7 (relay access), T8 (AUTH brute force, ~30 s), T9 (idle and trickle
# connections), T10 (long lines), T11 (huge messages), T12 (recipient flood), T13 (control
# characters in the envelope, CLI and logs), T14 (MIME bombs), T15 (zip bombs), and T25
# (1,000 TLS sessions, ~6 s; skip with SKIP_T25=1).
# Prints every FIGURE line, stops at the first failure (exit 1). Loopback only.
#
# Needs: python3 (3.11), Postfix's smtp-sink, swaks (+ Net::SSLeay), openssl; optional: zip
# (T15's ZipCrypto case), jq (T13), pip access to PyPI (aiosmtpd 1.4.4.post2 as the known-bad
# target of T4/T5/T6; skipped with a message when it cannot be installed).
# Usage: tests/reliability/run_attacks.sh        (from anywhere)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

BIN=${MAILBRAKE_BIN:-$REPO/target/debug/mailbrake}
if [ ! -x "$BIN" ]; then
  echo "=== building $BIN (cargo build)"
  cargo build --locked
fi
for tool in smtp-sink swaks openssl python3; do
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

run T4+T5 t04_t05_smuggling.py
run T6 t06_starttls_inject.py
run T7 t07_relay_access.py
run T8 t08_auth_bruteforce.py
run T9 t09_slowloris.py
run T10 t10_long_lines.py
run T11 t11_huge.py
run T12 t12_rcpt_flood.py
run T13 t13_control_chars.py
run T14 t14_mime_bombs.py
run T15 t15_zip_bombs.py
if [ "${SKIP_T25:-0}" != 1 ]; then
  run T25 t25_tls_storm.py
fi

echo
echo "=== all attack tests passed; figures:"
cat "$FIGURES"
