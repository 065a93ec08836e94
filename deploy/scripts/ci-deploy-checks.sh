#!/usr/bin/env bash
# CI checks of the deployment files (RELIABILITY.md T22, T23). Installs nothing.
#
# Needs these Debian packages (install them before running this script):
#   prometheus              promtool, and the prometheus binary for the scrape check
#   prometheus-alertmanager amtool, to validate deploy/prometheus/alertmanager.yml
#   docker-compose          docker-compose 1.29 (validation only; no engine is needed)
#   systemd                 systemd-analyze (preinstalled)
#   python3                 the scrape check's SMTP client and HTTP polling (preinstalled)
#   openssl                 a throwaway certificate for check-config (already in .ci/run)
# e.g.  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
#         prometheus prometheus-alertmanager docker-compose
# and a built binary:  cargo build --locked   (target/debug/mailbrake)
#
# Usage: deploy/scripts/ci-deploy-checks.sh [PATH/TO/mailbrake]   (default target/debug/mailbrake)
# Stops at the first failing step with a non-zero exit status.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:-target/debug/mailbrake}
step() { printf '\n=== deploy: %s ===\n' "$*"; }

echo "needs Debian packages: prometheus prometheus-alertmanager docker-compose (+ systemd, python3, openssl: preinstalled / in .ci/run)"
missing=()
for tool in systemd-analyze promtool prometheus amtool docker-compose python3 openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "FAIL: missing tools: ${missing[*]}" >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "FAIL: $BIN is not an executable (run cargo build --locked first)" >&2; exit 1; }

step "systemd-analyze security --offline=true --threshold=20 deploy/mailbrake.service"
# --threshold is on the 0-100 scale (10x the displayed score): 20 means "2.0 or lower".
out=$(systemd-analyze security --offline=true --threshold=20 deploy/mailbrake.service 2>&1) || {
  echo "$out" | grep -E '✗|Overall' >&2 || echo "$out" >&2
  echo "FAIL: deploy/mailbrake.service exposure is above 2.0" >&2
  exit 1
}
echo "$out" | grep -E '✗' || true
echo "$out" | grep 'Overall exposure level'

step "promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

step "promtool test rules deploy/prometheus/alerts.test.yml"
promtool test rules deploy/prometheus/alerts.test.yml

step "promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

step "amtool check-config deploy/prometheus/alertmanager.yml"
amtool check-config deploy/prometheus/alertmanager.yml

step "docker-compose -f deploy/compose.yaml config -q"
docker-compose -f deploy/compose.yaml config -q
echo "compose file valid (validation only: no Docker engine runs here, images not built)"

step "the Dockerfile's build context compiles (deploy/scripts/docker_context_check.sh)"
deploy/scripts/docker_context_check.sh

step "mailbrake check-config on the example configurations"
# The image's config, with the repository's policies standing in for /etc/mailbrake/policies.
"$BIN" check-config --config deploy/docker/mailbrake.toml --policies policies
# The production example refers to files that exist only on a real host (TLS certificate
# and key); check everything else by pointing those at a throwaway certificate.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=localhost" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
sed -e "s#/etc/mailbrake/tls/fullchain.pem#$tmp/cert.pem#" \
    -e "s#/etc/mailbrake/tls/privkey.pem#$tmp/key.pem#" \
    -e "s#/etc/mailbrake/policies#$PWD/policies#" \
    deploy/mailbrake.production.toml >"$tmp/production.toml"
"$BIN" check-config --config "$tmp/production.toml"

step "Prometheus scrapes a running mailbrake (deploy/scripts/prometheus_scrape_check.sh $BIN)"
deploy/scripts/prometheus_scrape_check.sh "$BIN"

step "all deploy checks passed"
