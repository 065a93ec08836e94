#!/bin/sh
# Makes a self-signed development certificate for localhost / 127.0.0.1 (30 days).
# Usage: certs/make-dev-cert.sh [OUTDIR]   (default: the directory of this script)
set -eu
out=${1:-$(dirname "$0")}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$out/dev-key.pem" -out "$out/dev-cert.pem" 2>/dev/null
chmod 600 "$out/dev-key.pem"
echo "wrote $out/dev-cert.pem and $out/dev-key.pem"
