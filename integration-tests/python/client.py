#!/usr/bin/env python3
"""A Mimo client in Python built only from /proto: proves the gRPC API is usable from another
language with nothing but the .proto files and grpcio-tools.

The stubs are generated at run time into a temporary folder, then the client walks through the
registry, skill-host, memory and telemetry services of a running `mimo up`. Each step prints one
line; the first failed check exits non-zero with a message saying what was expected.

Usage:
  client.py --proto-root PROTO --registry HOST:PORT --memory HOST:PORT --telemetry HOST:PORT
"""

import argparse
import glob
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import grpc

# Every call gets a deadline; a tool call may start a slow server, so it gets more time.
STREAM_DEADLINE_SECONDS = 300
DEADLINE_SECONDS = 10.0
TOOL_CALL_DEADLINE_SECONDS = 60.0
TELEMETRY_PATIENCE_SECONDS = 30.0


class CheckFailed(Exception):
    """A step of the scenario did not behave as the API promises."""


def check(condition, message):
    """Raises CheckFailed with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


def step(message):
    print(f"ok: {message}", flush=True)


def generate_stubs(proto_root, out_dir):
    """Runs grpc_tools.protoc over mimo/v1/*.proto into out_dir and makes it importable."""
    protos = sorted(
        os.path.relpath(path, proto_root)
        for path in glob.glob(os.path.join(proto_root, "mimo", "v1", "*.proto"))
    )
    check(protos, f"no mimo/v1/*.proto under {proto_root}")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    check(
        result.returncode == 0,
        f"protoc failed ({result.returncode}): {result.stderr.strip()}",
    )
    # Generated modules import each other as `mimo.v1.x_pb2`; make the packages importable.
    for package in ("mimo", os.path.join("mimo", "v1")):
        open(os.path.join(out_dir, package, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    step(f"generated python stubs for {len(protos)} proto files")


def load(name):
    return importlib.import_module(f"mimo.v1.{name}")


def expect_status(code, call, what):
    """Runs `call` and checks that it fails with the gRPC status `code`."""
    try:
        call()
    except grpc.RpcError as error:
        check(
            error.code() == code,
            f"{what}: expected {code.name}, got {error.code().name}: {error.details()}",
        )
        return error
    raise CheckFailed(f"{what}: expected {code.name}, but the call succeeded")


def tools_scenario(registry_address):
    registry_pb2 = load("registry_pb2")
    registry_grpc = load("registry_pb2_grpc")
    skill_host_pb2 = load("skill_host_pb2")
    skill_host_grpc = load("skill_host_pb2_grpc")

    with grpc.insecure_channel(registry_address) as channel:
        registry = registry_grpc.RegistryStub(channel)
        listed = registry.ListTools(
            registry_pb2.ListToolsRequest(), timeout=DEADLINE_SECONDS
        )
        names = [tool.name for tool in listed.tools]
        for wanted in ("everything_echo", "time_get_current_time"):
            check(wanted in names, f"ListTools lacks {wanted}; it lists {names}")
        check(names == sorted(names), f"ListTools is not sorted by name: {names}")
        step(f"ListTools lists {len(names)} tools, everything_echo and time_get_current_time among them")

        echo = registry.ResolveTool(
            registry_pb2.ResolveToolRequest(name="everything_echo"),
            timeout=DEADLINE_SECONDS,
        )
        check(
            echo.skill == "everything" and echo.tool == "echo",
            f"ResolveTool(everything_echo) gave skill={echo.skill!r} tool={echo.tool!r}",
        )
        check(echo.endpoint, "ResolveTool(everything_echo) gave no endpoint")
        step(f"ResolveTool(everything_echo) -> {echo.skill}/{echo.tool} at {echo.endpoint}")

        clock = registry.ResolveTool(
            registry_pb2.ResolveToolRequest(name="time_get_current_time"),
            timeout=DEADLINE_SECONDS,
        )

        expect_status(
            grpc.StatusCode.NOT_FOUND,
            lambda: registry.ResolveTool(
                registry_pb2.ResolveToolRequest(name="no_such_tool"),
                timeout=DEADLINE_SECONDS,
            ),
            "ResolveTool(no_such_tool)",
        )
        step("ResolveTool of an unknown tool gets NOT_FOUND")

    def call_tool(resolved, arguments_json):
        address = resolved.endpoint
        with grpc.insecure_channel(address) as channel:
            host = skill_host_grpc.SkillHostStub(channel)
            return host.CallTool(
                skill_host_pb2.CallToolRequest(
                    skill=resolved.skill,
                    tool=resolved.tool,
                    arguments_json=arguments_json,
                ),
                timeout=TOOL_CALL_DEADLINE_SECONDS,
            )

    answer = call_tool(echo, json.dumps({"message": "from python"}))
    check(not answer.is_error, f"echo reported an error: {answer}")
    texts = [item.text for item in answer.content if item.type == "text"]
    check(
        texts == ["Echo: from python"],
        f"echo answered {texts}, expected ['Echo: from python']",
    )
    step("SkillHost.CallTool(everything/echo) answered 'Echo: from python'")

    answer = call_tool(clock, json.dumps({"timezone": "UTC"}))
    check(not answer.is_error, f"get_current_time reported an error: {answer}")
    texts = [item.text for item in answer.content if item.type == "text"]
    check(texts, f"get_current_time answered no text: {answer}")
    try:
        current = json.loads(texts[0])
    except json.JSONDecodeError as error:
        raise CheckFailed(f"get_current_time text is not JSON ({error}): {texts[0]!r}")
    check(
        current.get("timezone") == "UTC" and current.get("datetime"),
        f"get_current_time answered {current}, expected timezone UTC and a datetime",
    )
    step(f"SkillHost.CallTool(time/get_current_time) answered {current['datetime']} UTC")

    expect_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: call_tool(echo, '{"message": '),
        "CallTool with malformed arguments_json",
    )
    step("CallTool with malformed arguments_json gets INVALID_ARGUMENT")


def memory_scenario(memory_address):
    memory_pb2 = load("memory_pb2")
    memory_grpc = load("memory_pb2_grpc")

    sentences = [
        "The user's dog is named Biscuit and loves long walks in the park",
        "The quarterly tax report must be filed before the end of April",
        "Alice prefers green tea over coffee in the morning",
    ]
    intended = 0
    paraphrase = "what is the name of the user's dog"

    with grpc.insecure_channel(memory_address) as channel:
        memory = memory_grpc.MemoryStub(channel)
        ids = []
        for sentence in sentences:
            stored = memory.Store(
                memory_pb2.StoreRequest(
                    content=sentence, category=memory_pb2.CATEGORY_FACT, importance=0.6
                ),
                timeout=DEADLINE_SECONDS,
            )
            check(stored.engram.id, f"Store gave no id for {sentence!r}")
            check(
                stored.engram.content == sentence,
                f"Store echoed content {stored.engram.content!r}, expected {sentence!r}",
            )
            ids.append(stored.engram.id)
        step(f"Memory.Store stored {len(ids)} engrams")

        found = memory.Search(
            memory_pb2.SearchRequest(query=paraphrase, limit=3, min_similarity=-1.0),
            timeout=DEADLINE_SECONDS,
        )
        check(found.hits, f"Search({paraphrase!r}) found nothing")
        best = found.hits[0]
        ranking = [(round(hit.similarity, 3), hit.engram.content) for hit in found.hits]
        check(
            best.engram.id == ids[intended],
            f"Search({paraphrase!r}) ranked {ranking}; expected {sentences[intended]!r} first",
        )
        check(best.similarity > 0, f"best hit has similarity {best.similarity}, expected > 0")
        step(f"Memory.Search({paraphrase!r}) ranks the intended engram first ({best.similarity:.3f})")

        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: memory.Search(
                memory_pb2.SearchRequest(query=paraphrase, limit=0),
                timeout=DEADLINE_SECONDS,
            ),
            "Search with limit=0",
        )
        step("Memory.Search with limit=0 gets INVALID_ARGUMENT")

        target = ids[1]
        got = memory.Get(memory_pb2.GetRequest(id=target), timeout=DEADLINE_SECONDS)
        check(
            got.id == target and got.content == sentences[1],
            f"Get({target}) gave id={got.id!r} content={got.content!r}",
        )
        memory.Delete(memory_pb2.DeleteRequest(id=target), timeout=DEADLINE_SECONDS)
        expect_status(
            grpc.StatusCode.NOT_FOUND,
            lambda: memory.Get(memory_pb2.GetRequest(id=target), timeout=DEADLINE_SECONDS),
            "Get after Delete",
        )
        step("Memory.Get, Delete, then Get again gets NOT_FOUND")

        # Many small messages on one stream (grpc-core sends each in a DATA frame of its
        # own), faster than the server stores them: the server must read them all without
        # closing the connection.
        streamed = 20000
        requests = (
            memory_pb2.StoreRequest(content=f"streamed item {n} w{n % 977}")
            for n in range(streamed)
        )
        acknowledged = [
            answer.engram.id
            for answer in memory.StoreStream(requests, timeout=STREAM_DEADLINE_SECONDS)
        ]
        check(
            len(acknowledged) == streamed,
            f"StoreStream acknowledged {len(acknowledged)} of {streamed}",
        )
        step(f"Memory.StoreStream stored {streamed} small engrams in order")

        seen, after_id = 0, ""
        while True:
            page = memory.List(
                memory_pb2.ListRequest(
                    limit=1000, order=memory_pb2.LIST_ORDER_BY_ID, after_id=after_id
                ),
                timeout=DEADLINE_SECONDS,
            )
            if not page.engrams:
                break
            seen += len(page.engrams)
            after_id = page.engrams[-1].id
        check(seen == page.total, f"List paged through {seen} engrams of {page.total}")
        step(f"Memory.List paged through all {seen} engrams by id")


def telemetry_scenario(telemetry_address):
    telemetry_pb2 = load("telemetry_pb2")
    telemetry_grpc = load("telemetry_pb2_grpc")
    wanted = {"registry", "skill-host", "memory", "telemetry"}
    with grpc.insecure_channel(telemetry_address) as channel:
        telemetry = telemetry_grpc.TelemetryStub(channel)
        # Services report every few hundred milliseconds; poll until each has, with a bound.
        deadline = time.monotonic() + TELEMETRY_PATIENCE_SECONDS
        while True:
            listed = telemetry.ListInstances(
                telemetry_pb2.ListInstancesRequest(), timeout=DEADLINE_SECONDS
            )
            services = {status.latest.instance.service for status in listed.instances}
            if wanted <= services or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        check(
            wanted <= services,
            f"ListInstances shows {sorted(services)} after {TELEMETRY_PATIENCE_SECONDS} s;"
            f" expected {sorted(wanted)}",
        )
        step(f"Telemetry.ListInstances shows {', '.join(sorted(services))}")


def health_and_reflection_scenario(addresses):
    """Every service answers the stock gRPC health and reflection clients."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    for service, address in addresses.items():
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", service):
                answer = health.Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=DEADLINE_SECONDS
                )
                check(
                    answer.status == health_pb2.HealthCheckResponse.SERVING,
                    f"{address}: health of {name!r} is {answer.status}, expected SERVING",
                )
            listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            check(
                {service, "grpc.health.v1.Health"} <= listed,
                f"{address}: reflection lists {sorted(listed)}, without {service}",
            )
        step(f"{service} at {address} is SERVING and reflection lists it")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-root", required=True, help="folder holding mimo/v1/*.proto")
    parser.add_argument("--registry", required=True, help="registry HOST:PORT")
    parser.add_argument("--memory", required=True, help="memory HOST:PORT")
    parser.add_argument("--telemetry", required=True, help="telemetry HOST:PORT")
    arguments = parser.parse_args()

    try:
        with tempfile.TemporaryDirectory(prefix="mimo-python-stubs-") as out_dir:
            generate_stubs(os.path.abspath(arguments.proto_root), out_dir)
            tools_scenario(arguments.registry)
            memory_scenario(arguments.memory)
            telemetry_scenario(arguments.telemetry)
            health_and_reflection_scenario(
                {
                    "mimo.v1.Registry": arguments.registry,
                    "mimo.v1.Memory": arguments.memory,
                    "mimo.v1.Telemetry": arguments.telemetry,
                }
            )
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    except grpc.RpcError as error:
        print(
            f"FAILED: unexpected gRPC error {error.code().name}: {error.details()}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    print("ok: every check passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
