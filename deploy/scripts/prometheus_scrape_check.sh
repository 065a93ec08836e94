#!/usr/bin/env bash
# Real Prometheus scraping a real mailbrake, checked through Prometheus' HTTP API
# (RELIABILITY.md T22, ECOSYSTEM.md §2.5).
#
# Usage: deploy/scripts/prometheus_scrape_check.sh PATH/TO/mailbrake
#
#  1. starts the given mailbrake binary (it builds nothing) with a temporary configuration:
#     SMTP, admin API and metrics on free 127.0.0.1 ports, data directory in a temp dir,
#     no upstream (clean mail goes to the outbox), the shipped policies/;
#  2. starts Debian's `prometheus` on a free 127.0.0.1 port, scraping mailbrake every second
#     and loading deploy/prometheus/alerts.yml, with its storage in the temp dir;
#  3. sends one incident-2 message (30 external addresses folded into To:) with Python
#     smtplib, which mailbrake must hold;
#  4. polls /api/v1/query and /api/v1/targets (at most 60 s) until
#     mailbrake_holds_total{reason="visible_recipients",mode="enforce"} is 1 and the target
#     is up, then prints the figures.
# Both processes are stopped by PID on exit. Exit status 0 on success, 1 on failure.
# Needs: prometheus (Debian package `prometheus`) and python3; no curl.
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH/TO/mailbrake   (an executable mailbrake binary)" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
RULES=$REPO/deploy/prometheus/alerts.yml
PROMETHEUS=${PROMETHEUS:-prometheus}
command -v "$PROMETHEUS" >/dev/null || { echo "FAIL: $PROMETHEUS not found (apt-get install prometheus)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 not found" >&2; exit 1; }
[ -f "$RULES" ] || { echo "FAIL: $RULES missing" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailbrake-scrape.XXXXXX")
MB_PID=""
PROM_PID=""
stop() {
  # Stop only what this script started, by PID: SIGTERM, wait up to 10 s, then SIGKILL.
  local pid
  for pid in "$PROM_PID" "$MB_PID"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      wait "$pid" 2>/dev/null || true
    fi
  done
}
cleanup() {
  local rc=$?
  stop
  if [ "$rc" -ne 0 ]; then
    echo "--- mailbrake log (last 30 lines)"; tail -n 30 "$WORK/mailbrake.log" 2>/dev/null || true
    echo "--- prometheus log (last 30 lines)"; tail -n 30 "$WORK/prometheus.log" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

# Four distinct free ports on 127.0.0.1 (bound together, then released).
read -r SMTP_PORT ADMIN_PORT METRICS_PORT PROM_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)

# HTTP GET on 127.0.0.1 with Python (no curl needed); prints the body, fails on non-2xx.
http_get() {
  python3 - "$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
PY
}

# --- 1. mailbrake -------------------------------------------------------------------------
cat >"$WORK/mailbrake.toml" <<EOF
[server]
listen = ["127.0.0.1:$SMTP_PORT"]
hostname = "scrape-check.localhost"
data_dir = "$WORK/data"
policies = "$REPO/policies"
shutdown_grace = "2s"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[metrics]
listen = "127.0.0.1:$METRICS_PORT"
EOF
"$BIN" check-config --config "$WORK/mailbrake.toml" >/dev/null || fail "check-config rejected the temp config"
"$BIN" serve --config "$WORK/mailbrake.toml" >"$WORK/mailbrake.log" 2>&1 &
MB_PID=$!

ok=""
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$MB_PID" 2>/dev/null || fail "mailbrake exited at start"
  if http_get "http://127.0.0.1:$METRICS_PORT/healthz" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "mailbrake /healthz did not answer within 20 s"
echo "mailbrake $("$BIN" --version | awk '{print $2}') pid $MB_PID: smtp 127.0.0.1:$SMTP_PORT, metrics 127.0.0.1:$METRICS_PORT"

# --- 2. prometheus ------------------------------------------------------------------------
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "$RULES"
scrape_configs:
  - job_name: mailbrake
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
EOF
"$PROMETHEUS" --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
PROM=http://127.0.0.1:$PROM_PORT

ok=""
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus exited at start"
  if http_get "$PROM/-/ready" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || fail "prometheus was not ready within 20 s"
echo "prometheus $("$PROMETHEUS" --version 2>&1 | awk 'NR==1{print $3}') pid $PROM_PID: $PROM"

# --- 3. one incident-2 message through mailbrake -------------------------------------------
python3 - "$SMTP_PORT" <<'PY' || fail "the SMTP transaction did not end in 'held'"
import smtplib, sys
port = int(sys.argv[1])
to = ",\r\n ".join(f"member{i}@family{i}.example" for i in range(30))
msg = (f"From: news@corp.example\r\nTo: {to}\r\nSubject: newsletter\r\n"
       f"Message-ID: <scrape-check@corp.example>\r\n\r\nhello everyone\r\n")
with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
    s.ehlo("scrape-check.localhost")
    s.mail("news@corp.example")
    s.rcpt("member1@family1.example")
    code, text = s.data(msg.encode())
print(f"SMTP DATA reply: {code} {text.decode()}")
sys.exit(0 if code == 250 and b"held" in text else 1)
PY

# --- 4. poll Prometheus' HTTP API ------------------------------------------------------------
QUERY='mailbrake_holds_total{reason="visible_recipients",mode="enforce"}'
poll() {
  python3 - "$PROM" "$QUERY" <<'PY'
import json, sys, urllib.parse, urllib.request
prom, query = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(prom + path, timeout=5) as r:
        return json.load(r)
def value(q):
    res = get("/api/v1/query?query=" + urllib.parse.quote(q))["data"]["result"]
    return res[0]["value"][1] if res else "none"
holds = value(query)
targets = [t for t in get("/api/v1/targets")["data"]["activeTargets"]
           if t["labels"].get("job") == "mailbrake"]
health = targets[0]["health"] if targets else "absent"
print(f"{holds} {health}")
PY
}
deadline=$((SECONDS + 60))
holds="none"; health="unknown"
while [ "$SECONDS" -lt "$deadline" ]; do
  kill -0 "$MB_PID" 2>/dev/null || fail "mailbrake died"
  kill -0 "$PROM_PID" 2>/dev/null || fail "prometheus died"
  if out=$(poll 2>/dev/null); then
    read -r holds health <<<"$out"
    if [ "$holds" = "1" ] && [ "$health" = "up" ]; then break; fi
  fi
  sleep 1
done
waited=$((60 - (deadline - SECONDS)))
if [ "$holds" != "1" ] || [ "$health" != "up" ]; then
  fail "after 60 s: $QUERY = $holds, target health = $health"
fi

# --- 5. the figures -------------------------------------------------------------------------
python3 - "$PROM" "$waited" <<'PY'
import json, sys, urllib.parse, urllib.request
prom, waited = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(prom + path, timeout=5) as r:
        return json.load(r)
def show(q):
    res = get("/api/v1/query?query=" + urllib.parse.quote(q))["data"]["result"]
    vals = ", ".join(
        ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items()) if k not in ("__name__", "instance", "job")) + "} " if len(r["metric"]) > 3 or q.startswith("sum") else "")
        + r["value"][1] for r in res) or "(no data)"
    print(f"  {q} = {vals}")
print(f"OK after {waited} s of polling. Prometheus API figures:")
for q in ['up{job="mailbrake"}',
          'mailbrake_holds_total{reason="visible_recipients",mode="enforce"}',
          'sum(mailbrake_holds_total)',
          'mailbrake_messages_total{verdict="hold"}',
          'mailbrake_quarantine_messages',
          'mailbrake_quarantine_oldest_message_age_seconds',
          'mailbrake_spool_free_bytes',
          'mailbrake_spool_free_floor_bytes',
          'mailbrake_build_info',
          'count({job="mailbrake",__name__=~"mailbrake_.*"})']:
    show(q)
t = [t for t in get("/api/v1/targets")["data"]["activeTargets"] if t["labels"]["job"] == "mailbrake"][0]
print(f"  target {t['scrapeUrl']}: health={t['health']} lastScrapeDuration={t['lastScrapeDuration']:.4f}s lastError={t['lastError']!r}")
groups = get("/api/v1/rules")["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
print(f"  rules loaded from alerts.yml: {len(rules)} ({', '.join(sorted({r['name'] for r in rules}))})")
expected = {"MailbrakeHoldsSpiking", "MailbrakeSenderBrakeOpen", "MailbrakeUpstreamFailing",
            "MailbrakeQuarantineNotReviewed", "MailbrakeAuthBruteForce", "MailbrakeSpoolDiskLow",
            "MailbrakeDown"}
if not expected <= {r["name"] for r in rules}:
    print(f"FAIL: rules missing from Prometheus: {sorted(expected - {r['name'] for r in rules})}")
    sys.exit(1)
alerts = get("/api/v1/alerts")["data"]["alerts"]
def names(state):
    return ", ".join(sorted(a["labels"]["alertname"] + "/" + a["labels"]["severity"]
                            for a in alerts if a["state"] == state)) or "none"
# MailbrakeDown may still be pending from before the first scrape (absent(up) is true until
# Prometheus applies its targets, ~5 s after start); its for: 2m keeps it from firing.
print(f"  alerts firing: {names('firing')}; pending: {names('pending')}")
if any(a["state"] == "firing" for a in alerts):
    print("FAIL: an alert fires against a healthy mailbrake with one held message")
    sys.exit(1)
PY
echo "PASS: Prometheus scraped mailbrake and saw the held message"
