#!/usr/bin/env python3
"""Side-by-side benchmark: one Python client calling the same fast MCP skill through
Mimo's skill-host (gRPC, stubs generated from /proto) and through PyPI `mcp-proxy`
(streamable HTTP, the official `mcp` client), in alternating rounds of one run.

Prints a Markdown table of p50 / p99 latency of sequential calls and calls per second with
CONCURRENCY calls in flight, medians over the rounds, and the ratios.

Usage:
  bench_vs_mcp_proxy.py --proto-root PROTO --skill-host HOST:PORT --proxy-url URL
                        [--rounds N] [--calls N] [--concurrency N]
"""

import argparse
import asyncio
import glob
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import grpc
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def generate_stubs(proto_root, out_dir):
    protos = sorted(
        os.path.relpath(path, proto_root)
        for path in glob.glob(os.path.join(proto_root, "mimo", "v1", "*.proto"))
    )
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos],
        check=True,
    )
    for package in ("mimo", os.path.join("mimo", "v1")):
        open(os.path.join(out_dir, package, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    return (importlib.import_module("mimo.v1.skill_host_pb2"),
            importlib.import_module("mimo.v1.skill_host_pb2_grpc"))


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * fraction)]


async def mimo_round(stub, pb2, calls, concurrency):
    request = pb2.CallToolRequest(skill="fast", tool="echo", arguments_json='{"text":"x"}')
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await stub.CallTool(request, timeout=30)
        latencies.append(time.perf_counter() - started)

    async def caller(count):
        for _ in range(count):
            await stub.CallTool(request, timeout=30)

    per_caller = max(1, (calls * 2) // concurrency)
    started = time.perf_counter()
    await asyncio.gather(*(caller(per_caller) for _ in range(concurrency)))
    rate = per_caller * concurrency / (time.perf_counter() - started)
    return latencies, rate


async def proxy_round(session, calls, concurrency):
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await session.call_tool("echo", {"text": "x"})
        latencies.append(time.perf_counter() - started)

    async def caller(count):
        for _ in range(count):
            await session.call_tool("echo", {"text": "x"})

    per_caller = max(1, (calls * 2) // concurrency)
    started = time.perf_counter()
    await asyncio.gather(*(caller(per_caller) for _ in range(concurrency)))
    rate = per_caller * concurrency / (time.perf_counter() - started)
    return latencies, rate


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proto-root", required=True)
    parser.add_argument("--skill-host", required=True)
    parser.add_argument("--proxy-url", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        pb2, pb2_grpc = generate_stubs(args.proto_root, out_dir)
        results = {"mimo": ([], [], []), "proxy": ([], [], [])}
        async with grpc.aio.insecure_channel(args.skill_host) as channel:
            stub = pb2_grpc.SkillHostStub(channel)
            async with streamablehttp_client(args.proxy_url) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    # Warm both paths.
                    await mimo_round(stub, pb2, 50, 4)
                    await proxy_round(session, 50, 4)
                    for round_number in range(1, args.rounds + 1):
                        for name in ("mimo", "proxy"):
                            if name == "mimo":
                                latencies, rate = await mimo_round(
                                    stub, pb2, args.calls, args.concurrency)
                            else:
                                latencies, rate = await proxy_round(
                                    session, args.calls, args.concurrency)
                            p50s, p99s, rates = results[name]
                            p50s.append(percentile(latencies, 0.5) * 1e6)
                            p99s.append(percentile(latencies, 0.99) * 1e6)
                            rates.append(rate)
                        print(f"bench: round {round_number}/{args.rounds} done",
                              file=sys.stderr, flush=True)
    med = {name: tuple(statistics.median(values) for values in columns)
           for name, columns in results.items()}
    print(f"python client, {args.rounds} rounds x {args.calls} sequential calls, "
          f"{args.concurrency} in flight for throughput; medians of rounds")
    print("| path | p50 µs | p99 µs | calls/s |")
    print("|---|---|---|---|")
    print("| Mimo skill-host (gRPC, grpc.aio) | %.0f | %.0f | %.0f |" % med["mimo"])
    print("| mcp-proxy (streamable HTTP, mcp client) | %.0f | %.0f | %.0f |" % med["proxy"])
    print("ratios (mcp-proxy / Mimo): p50 %.1fx, p99 %.1fx; throughput (Mimo / mcp-proxy) %.1fx"
          % (med["proxy"][0] / med["mimo"][0], med["proxy"][1] / med["mimo"][1],
             med["mimo"][2] / med["proxy"][2]))


if __name__ == "__main__":
    asyncio.run(main())
