"""The peers of Mimo's memory search on the data memory-bench wrote: faiss IndexFlatIP
(exact), hnswlib (approximate, ef raised until recall@10 >= 0.95 against the exact answers,
and on to 0.995 for the sweep compared at equal recall)
and sqlite-vec (a vec0 table's KNN query). One JSON object per line on stdout, in the shape
memory-bench prints; progress on stderr.

Usage: python vector_peers.py DIR DIMENSION SIZE [SIZE ...]
"""

import json
import os
import statistics
import sys
import time

import apsw
import faiss
import hnswlib
import numpy as np
import sqlite_vec

TOP = 10
TARGET_RECALL = 0.95
# The breadth sweep goes on to this recall, for the comparison at equal recall.
SWEEP_UNTIL_RECALL = 0.995
# The breadths swept, the same as Mimo's in memory-bench: steps of 1.25x or less, so that
# both are compared at close recalls.
EF_GRID = (16, 20, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)


def progress(message):
    print(f"vector-peers: {message}", file=sys.stderr, flush=True)


def emit(system, size, latencies, **extra):
    latencies = np.sort(np.asarray(latencies))
    index = lambda fraction: latencies[int(round((len(latencies) - 1) * fraction))]
    line = {
        "system": system,
        "size": size,
        "queries": len(latencies),
        "p50_ms": index(0.5) * 1e3,
        "p99_ms": index(0.99) * 1e3,
        "qps": len(latencies) / latencies.sum(),
    }
    line.update(extra)
    print(json.dumps(line), flush=True)


def timed(queries, search, warm=10):
    for query in queries[:warm]:
        search(query)
    latencies, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(search(query))
        latencies.append(time.perf_counter() - started)
    return latencies, answers


def recall(answers, truth):
    found = sum(len(set(map(int, answer)) & set(map(int, expected)))
                for answer, expected in zip(answers, truth))
    return found / (len(truth) * TOP)


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def faiss_flat(base, queries, truth, size):
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    latencies, answers = timed(queries, lambda q: index.search(q[None, :], TOP)[1][0])
    emit("faiss IndexFlatIP (exact)", size, latencies, recall_at_10=recall(answers, truth),
         threads=faiss.omp_get_max_threads())


def hnsw(base, queries, truth, size):
    before = resident_bytes()
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=size, ef_construction=200, M=16)
    index.add_items(base, np.arange(size))
    build = time.perf_counter() - started
    resident = resident_bytes() - before
    progress(f"hnswlib built {size} in {build:.1f} s")
    reported = False
    for ef in EF_GRID:
        index.set_ef(ef)
        latencies, answers = timed(queries, lambda q: index.knn_query(q, k=TOP)[0][0])
        achieved = recall(answers, truth)
        progress(f"  hnswlib ef {ef}: recall@10 {achieved:.3f}, "
                 f"p50 {statistics.median(latencies) * 1e3:.3f} ms")
        emit("hnswlib", size, latencies, sweep=True, recall_at_10=achieved, ef=ef)
        if not reported and (achieved >= TARGET_RECALL or ef == 512):
            emit("hnswlib (M=16, ef_construction=200)", size, latencies, recall_at_10=achieved,
                 ef=ef, build_s=build, resident_bytes_per_million=resident * 1e6 / size)
            reported = True
        if achieved >= SWEEP_UNTIL_RECALL:
            return


def sqlite_vec_knn(base, queries, truth, size, count):
    db = apsw.Connection(":memory:")
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec.loadable_path())
    db.execute(f"CREATE VIRTUAL TABLE vectors USING vec0(embedding float[{base.shape[1]}])")
    started = time.perf_counter()
    with db:
        db.executemany("INSERT INTO vectors(rowid, embedding) VALUES (?, ?)",
                       ((row, base[row].tobytes()) for row in range(size)))
    progress(f"sqlite-vec loaded {size} in {time.perf_counter() - started:.1f} s")
    query_sql = "SELECT rowid FROM vectors WHERE embedding MATCH ? AND k = ? ORDER BY distance"
    latencies, answers = timed(
        queries[:count],
        lambda q: [row for (row,) in db.execute(query_sql, (q.tobytes(), TOP))],
        warm=2)
    emit(f"sqlite-vec {sqlite_vec.__version__} (vec0 KNN)", size, latencies,
         recall_at_10=recall(answers, truth[:count]))


def main():
    folder, dimension, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    queries = np.fromfile(os.path.join(folder, "queries.f32"), dtype="<f4").reshape(-1, dimension)
    for size in sorted(sizes):
        base = np.fromfile(os.path.join(folder, "base.f32"), dtype="<f4",
                           count=size * dimension).reshape(size, dimension)
        truth = np.fromfile(os.path.join(folder, f"truth_{size}.u32"),
                            dtype="<u4").reshape(-1, TOP)
        progress(f"faiss: {size}")
        faiss_flat(base, queries, truth, size)
        progress(f"hnswlib: {size}")
        hnsw(base, queries, truth, size)
        progress(f"sqlite-vec: {size}")
        sqlite_vec_knn(base, queries, truth, size, count=max(10, min(len(queries), 2_000_000 // size)))
        del base


if __name__ == "__main__":
    main()
