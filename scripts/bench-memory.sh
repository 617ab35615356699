#!/usr/bin/env bash
# Benchmark of Mimo's memory side by side with its peers on the same vectors in one run:
# exact top-10 search by Mimo's index, through Mimo's store (SQLite included), and by the old
# approach (every row loaded and decoded per search); faiss-cpu IndexFlatIP (exact), hnswlib
# (approximate, at recall@10 >= 0.95) and sqlite-vec, installed from PyPI into
# $MIMO_BENCH_CACHE (default ~/.cache/mimo-bench); ingest rates; resident memory.
# Usage: [MIMO_BENCH_SIZES=10000,100000,1000000] scripts/bench-memory.sh [memory-bench flags]
#        (Markdown tables on stdout; record them in BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench: %s\n' "$*" >&2; }

CACHE="${MIMO_BENCH_CACHE:-$HOME/.cache/mimo-bench}"
VENV="$CACHE/vector-venv"
PY="$VENV/bin/python"
PINS=(faiss-cpu==1.15.1 hnswlib==0.8.0 sqlite-vec==0.1.9 apsw==3.54.1.0 numpy==2.4.6)
mkdir -p "$CACHE"
if ! "$PY" -c 'import faiss, hnswlib, sqlite_vec, apsw, numpy' 2>/dev/null; then
  log "installing ${PINS[*]} into $VENV (hnswlib builds from source: a minute)"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input "${PINS[@]}" >&2
fi

log "building release binaries"
cargo build --release --locked -p mimo-integration-tests --bin memory-bench >&2
BIN="${CARGO_TARGET_DIR:-target}/release"

DATA="$(mktemp -d "${TMPDIR:-/tmp}/mimo-memory-bench.XXXXXX")"
trap 'rm -rf "$DATA"' EXIT
RESULTS="$DATA/results.jsonl"
SIZES="${MIMO_BENCH_SIZES:-10000,100000,1000000}"

log "mimo: index, store and old approach at sizes $SIZES"
"$BIN/memory-bench" --dir "$DATA" --sizes "$SIZES" "$@" | tee -a "$RESULTS" >&2
log "peers: faiss, hnswlib, sqlite-vec on the same vectors"
"$PY" scripts/bench/vector_peers.py "$DATA" 384 ${SIZES//,/ } | tee -a "$RESULTS" >&2
"$PY" scripts/bench/memory_report.py "$RESULTS"
