#!/usr/bin/env bash
# Benchmarks of the skill-host, each side by side with its peer in one run on this machine:
#   1. skill-host-bench: added latency and calls/s versus the same skill over direct stdio,
#      and resident memory per idle skill;
#   2. skill-host-soak: 1,000 crash-and-restart cycles and 10,000 calls with random faults,
#      then the host's descriptors, threads and children against their start;
#   3. a Python client through Mimo (gRPC) and through PyPI mcp-proxy (streamable HTTP) in
#      front of the same skill.
# Installs mcp-proxy and grpcio-tools into $MIMO_BENCH_CACHE (default ~/.cache/mimo-bench).
# Usage: scripts/bench-skill-host.sh        (figures go to stdout; record them in BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench: %s\n' "$*" >&2; }

MCP_PROXY_VERSION="0.13.0"
GRPCIO_TOOLS_VERSION="1.85.1"
CACHE="${MIMO_BENCH_CACHE:-$HOME/.cache/mimo-bench}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
mkdir -p "$CACHE"
if ! "$PY" - "$MCP_PROXY_VERSION" "$GRPCIO_TOOLS_VERSION" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if version("mcp-proxy") == sys.argv[1] and version("grpcio-tools") == sys.argv[2] else 1)
EOF
  log "installing mcp-proxy==$MCP_PROXY_VERSION grpcio-tools==$GRPCIO_TOOLS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input \
    "mcp-proxy==$MCP_PROXY_VERSION" "grpcio-tools==$GRPCIO_TOOLS_VERSION" >&2
fi

log "building release binaries"
cargo build --release --locked -p mimo -p mimo-integration-tests --bins >&2
BIN="${CARGO_TARGET_DIR:-target}/release"
SKILL="$(cd "$BIN" && pwd -P)/misbehaving-skill"

echo "## skill-host versus direct stdio"
"$BIN/skill-host-bench" --rounds 5 --calls 2000 --concurrency 64 --idle-skills 50
echo
echo "## soak"
"$BIN/skill-host-soak" --cycles 1000 --calls 10000 --seed 1
echo

WORK="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HOST_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
printf '{"mcpServers": {"fast": {"command": "%s"}}}\n' "$SKILL" >"$WORK/skills.json"
"$BIN/mimo" skill-host --skills "$WORK/skills.json" --data-dir "$WORK/data" \
  --skill-host-listen "127.0.0.1:$HOST_PORT" 2>"$WORK/skill-host.log" &
pids+=($!)
"$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$PROXY_PORT" "$SKILL" >"$WORK/mcp-proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if grep -q "skill ready" "$WORK/skill-host.log" 2>/dev/null \
    && "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $PROXY_PORT), 1)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
echo "## Python client: Mimo skill-host versus mcp-proxy, same skill"
"$PY" integration-tests/python/bench_vs_mcp_proxy.py --proto-root proto \
  --skill-host "127.0.0.1:$HOST_PORT" --proxy-url "http://127.0.0.1:$PROXY_PORT/mcp" \
  --rounds 5 --calls 500 --concurrency 64
