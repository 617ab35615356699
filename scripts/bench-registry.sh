#!/usr/bin/env bash
# Benchmark of the registry side by side with etcd's own leases (Debian's etcd-server,
# unpacked into the test cache by scripts/install-test-deps.sh), the same load generator
# driving both in one run: grant-and-register per second, keep-alives per second over many
# streams, expiry delay after the TTL, resident memory per lease.
# Usage: scripts/bench-registry.sh [registry-bench flags]   (figures go to stdout)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
# shellcheck disable=SC1091
. "${MIMO_TEST_CACHE:-$HOME/.cache/mimo-test}/env.sh"
echo "bench: building release binaries" >&2
cargo build --release --locked -p mimo -p mimo-integration-tests --bins >&2
BIN="${CARGO_TARGET_DIR:-target}/release"
"$BIN/registry-bench" "$@"
