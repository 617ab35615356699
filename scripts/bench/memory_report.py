"""Prints the memory benchmark's figures (JSON lines from memory-bench and vector_peers.py)
as Markdown tables, with each system's time as a ratio to faiss's exact search at that size,
and the HNSW graphs compared at equal recall (from their breadth sweeps).

Usage: python memory_report.py RESULTS.jsonl
"""

import json
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
    searches = [row for row in rows if "p50_ms" in row and not row.get("sweep")]
    sweeps = [row for row in rows if row.get("sweep")]
    rates = [row for row in rows if "per_second" in row]
    print("| size | system | p50 ms | p99 ms | queries/s | recall@10 | p50 vs faiss | notes |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for size in sorted({row["size"] for row in searches}):
        at_size = [row for row in searches if row["size"] == size]
        faiss = next((row for row in at_size if row["system"].startswith("faiss")), None)
        for row in at_size:
            ratio = f"{row['p50_ms'] / faiss['p50_ms']:.2f}x" if faiss else ""
            notes = []
            for key, label in (("ef", "ef"), ("threads", "threads"), ("build_s", "build s"),
                               ("queries", "queries")):
                if key in row:
                    value = row[key]
                    notes.append(f"{label} {value:.1f}" if isinstance(value, float) else f"{label} {value}")
            if "resident_bytes_per_million" in row:
                notes.append(f"resident {row['resident_bytes_per_million'] / 2**30:.2f} GiB per million")
            if "huge_page_bytes" in row:
                notes.append(f"{row['huge_page_bytes'] / 2**30:.2f} GiB on huge pages")
            recall = f"{row['recall_at_10']:.3f}" if "recall_at_10" in row else ""
            print(f"| {size:,} | {row['system']} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
                  f"{row['qps']:,.0f} | {recall} | {ratio} | {', '.join(notes)} |")
    if sweeps:
        print()
        equal_recall(sweeps)
    print()
    print("| ingest | count | engrams/s |")
    print("|---|---:|---:|")
    for row in rates:
        print(f"| {row['system']} | {row['size']:,} | {row['per_second']:,.0f} |")


RECALLS = (0.95, 0.97, 0.99)


def equal_recall(sweeps):
    """For each size and recall target, each HNSW system's fastest breadth (most queries per
    second) reaching the target, and Mimo's queries per second as a ratio to hnswlib's."""
    print("| size | recall@10 at least | system | ef | recall@10 | p50 ms | p99 ms | queries/s | vs hnswlib |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in sorted({row["size"] for row in sweeps}):
        at_size = [row for row in sweeps if row["size"] == size]
        systems = sorted({row["system"] for row in at_size}, key=lambda name: name != "hnswlib")
        for target in RECALLS:
            best = {}
            for system in systems:
                reaching = [row for row in at_size
                            if row["system"] == system and row["recall_at_10"] >= target]
                if reaching:
                    best[system] = max(reaching, key=lambda row: row["qps"])
            peer = best.get("hnswlib")
            for system in systems:
                row = best.get(system)
                if row is None:
                    print(f"| {size:,} | {target:.2f} | {system} | | not reached | | | | |")
                    continue
                ratio = f"{row['qps'] / peer['qps']:.2f}x" if peer and system != "hnswlib" else ""
                print(f"| {size:,} | {target:.2f} | {system} | {row['ef']} | {row['recall_at_10']:.3f} | "
                      f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['qps']:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
