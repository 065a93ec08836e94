#!/usr/bin/env bash
# The Dockerfile's build stage, without a Docker engine: copy exactly what its COPY lines
# copy into an empty directory and compile the release build there (`cargo check`, offline:
# the registry cache of the CI's own build serves it). Catches a path the image build needs
# but the Dockerfile forgets (vendor/ for the [patch] of Cargo.toml, a new include_str!).
#
# Usage: deploy/scripts/docker_context_check.sh   (from anywhere; needs cargo and a filled
# registry cache, e.g. after `cargo build --locked`)
set -euo pipefail
cd "$(dirname "$0")/../.."

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# COPY lines of the first stage (up to the second FROM), without --from: "COPY src... dst".
mapfile -t copies < <(awk '/^FROM /{n++} n==1 && /^COPY / && !/--from/ {print}' deploy/Dockerfile)
[ "${#copies[@]}" -gt 0 ] || { echo "FAIL: no COPY lines found in the build stage" >&2; exit 1; }
for line in "${copies[@]}"; do
  read -r -a words <<<"$line"
  dst=${words[-1]}
  for src in "${words[@]:1:${#words[@]}-2}"; do
    if [[ $dst == */ ]]; then
      cp -a "$src" "$ctx/$dst"
    else
      mkdir -p "$ctx/$(dirname "$dst")"
      cp -a "$src" "$ctx/$dst"
    fi
  done
  echo "copied: ${words[*]:1}"
done
CARGO_TARGET_DIR="$ctx/target" cargo check --release --locked --offline --quiet \
  --manifest-path "$ctx/Cargo.toml" --bin mailbrake
echo "PASS: the build stage's context compiles (cargo check --release --locked --offline)"
