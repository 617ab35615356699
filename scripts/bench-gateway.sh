#!/usr/bin/env bash
# Benchmarks of the MCP gateway (`mimo mcp`), each side by side with its peer in one run:
#   1. gateway-bench: its added latency, a direct gRPC CallTool versus an MCP tools/call
#      through `mimo mcp` over stdio, to the same skill on the same skill-host;
#   2. one Python client (the official `mcp`) over streamable HTTP through `mimo mcp --http`
#      and through PyPI mcp-proxy, each fronting the same skill.
# Installs mcp-proxy into $MIMO_BENCH_CACHE (default ~/.cache/mimo-bench), as
# scripts/bench-skill-host.sh does.
# Usage: scripts/bench-gateway.sh        (figures go to stdout; record them in BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench: %s\n' "$*" >&2; }

MCP_PROXY_VERSION="0.13.0"
CACHE="${MIMO_BENCH_CACHE:-$HOME/.cache/mimo-bench}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
mkdir -p "$CACHE"
if ! "$PY" - "$MCP_PROXY_VERSION" <<'PYEOF' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if version("mcp-proxy") == sys.argv[1] else 1)
PYEOF
  log "installing mcp-proxy==$MCP_PROXY_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input "mcp-proxy==$MCP_PROXY_VERSION" >&2
fi

log "building release binaries"
cargo build --release --locked -p mimo -p mimo-integration-tests --bins >&2
BIN="$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd -P)"
SKILL="$BIN/misbehaving-skill"

WORK="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
REGISTRY="127.0.0.1:$(free_port)"
HOST="127.0.0.1:$(free_port)"
GATEWAY="127.0.0.1:$(free_port)"
PROXY_PORT="$(free_port)"
printf '{"mcpServers": {"fast": {"command": "%s"}}}\n' "$SKILL" >"$WORK/skills.json"
export MIMO_LOG=warn
"$BIN/mimo" registry --registry-listen "$REGISTRY" 2>"$WORK/registry.log" &
pids+=($!)
MIMO_LOG=info "$BIN/mimo" skill-host --skills "$WORK/skills.json" --data-dir "$WORK/data" \
  --skill-host-listen "$HOST" --registry-address "$REGISTRY" 2>"$WORK/skill-host.log" &
pids+=($!)
"$BIN/mimo" mcp --http "$GATEWAY" --no-memory --registry-address "$REGISTRY" \
  --rate-limit 1000000 --rate-burst 1000000 2>"$WORK/gateway.log" &
pids+=($!)
"$VENV/bin/mcp-proxy" --host 127.0.0.1 --port "$PROXY_PORT" "$SKILL" >"$WORK/mcp-proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  if "$BIN/mimo" tools list --registry-address "$REGISTRY" 2>/dev/null | grep -q fast_echo \
    && "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PROXY_PORT), 1); socket.create_connection(('${GATEWAY%:*}', ${GATEWAY##*:}), 1)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
echo "## gateway-added latency (Rust client, stdio)"
"$BIN/gateway-bench" --mimo "$BIN/mimo" --registry "$REGISTRY" --skill-host "$HOST" --skill fast \
  --rounds 5 --calls 2000
echo
echo "## Python client over streamable HTTP: mimo mcp --http versus mcp-proxy, same skill"
"$PY" integration-tests/python/bench_gateway_vs_mcp_proxy.py \
  --gateway-url "http://$GATEWAY/mcp" --gateway-tool fast_echo \
  --proxy-url "http://127.0.0.1:$PROXY_PORT/mcp" --proxy-tool echo \
  --rounds 5 --calls 500 --concurrency 64
