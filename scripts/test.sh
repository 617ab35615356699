#!/usr/bin/env bash
# Runs Mimo's whole test suite on a fresh machine: installs the third-party MCP servers the
# tests use (npm, PyPI) into a cache folder when missing, then runs every test.
#
# Usage: scripts/test.sh [extra cargo test arguments]
# Cache: $MIMO_TEST_CACHE (default ~/.cache/mimo-test).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
# shellcheck source=/dev/null
. "${MIMO_TEST_CACHE:-$HOME/.cache/mimo-test}/env.sh"

echo "test: building and running every test of the workspace" >&2
cargo test --workspace --locked "$@"
