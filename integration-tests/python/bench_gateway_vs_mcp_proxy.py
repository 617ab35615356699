#!/usr/bin/env python3
"""Side-by-side benchmark of two MCP servers over streamable HTTP, one client (the official
`mcp` package) for both: Mimo's gateway (`mimo mcp --http`, which relays each call through
the registry and a skill-host) and PyPI `mcp-proxy`, each fronting the same fast skill.
Alternating rounds of one run.

Prints a Markdown table of p50 / p99 latency of sequential calls and calls per second with
CONCURRENCY calls in flight, medians over the rounds, and the ratios.

Usage:
  bench_gateway_vs_mcp_proxy.py --gateway-url URL --gateway-tool NAME
                                --proxy-url URL --proxy-tool NAME
                                [--rounds N] [--calls N] [--concurrency N]
"""

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import AsyncExitStack

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * fraction)]


async def one_round(session, tool, calls, concurrency):
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await session.call_tool(tool, {"text": "x"})
        latencies.append(time.perf_counter() - started)
        if result.isError:
            raise RuntimeError(f"{tool} failed: {result}")

    async def caller(count):
        for _ in range(count):
            await session.call_tool(tool, {"text": "x"})

    per_caller = max(1, (calls * 2) // concurrency)
    started = time.perf_counter()
    await asyncio.gather(*(caller(per_caller) for _ in range(concurrency)))
    rate = per_caller * concurrency / (time.perf_counter() - started)
    return latencies, rate


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway-url", required=True)
    parser.add_argument("--gateway-tool", required=True)
    parser.add_argument("--proxy-url", required=True)
    parser.add_argument("--proxy-tool", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    targets = {"gateway": (args.gateway_url, args.gateway_tool), "proxy": (args.proxy_url, args.proxy_tool)}
    results = {name: ([], [], []) for name in targets}
    async with AsyncExitStack() as stack:
        sessions = {}
        for name, (url, _) in targets.items():
            read, write, _ = await stack.enter_async_context(streamablehttp_client(url))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            sessions[name] = session
        for name, (_, tool) in targets.items():
            await one_round(sessions[name], tool, 50, 4)
        for round_number in range(1, args.rounds + 1):
            for name, (_, tool) in targets.items():
                latencies, rate = await one_round(sessions[name], tool, args.calls, args.concurrency)
                p50s, p99s, rates = results[name]
                p50s.append(percentile(latencies, 0.5) * 1e6)
                p99s.append(percentile(latencies, 0.99) * 1e6)
                rates.append(rate)
            print(f"bench: round {round_number}/{args.rounds} done", file=sys.stderr, flush=True)
    med = {name: tuple(statistics.median(values) for values in columns) for name, columns in results.items()}
    print(f"python mcp client over streamable HTTP, {args.rounds} rounds x {args.calls} sequential calls, "
          f"{args.concurrency} in flight for throughput; medians of rounds")
    print("| path | p50 µs | p99 µs | calls/s |")
    print("|---|---:|---:|---:|")
    print("| `mimo mcp --http` (registry + skill-host behind it) | %.0f | %.0f | %.0f |" % med["gateway"])
    print("| mcp-proxy (the skill behind it) | %.0f | %.0f | %.0f |" % med["proxy"])
    print("ratios (mcp-proxy / Mimo): p50 %.2fx, p99 %.2fx; throughput (Mimo / mcp-proxy) %.2fx"
          % (med["proxy"][0] / med["gateway"][0], med["proxy"][1] / med["gateway"][1],
             med["gateway"][2] / med["proxy"][2]))


if __name__ == "__main__":
    asyncio.run(main())
