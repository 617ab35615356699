"""An MCP client built on the official Python SDK (PyPI `mcp`), driven by Mimo's gateway tests.

Usage: mcp_client.py stdio MIMO [MIMO_ARGS...]    (launches `MIMO MIMO_ARGS...` and talks over stdio)
       mcp_client.py http URL [API_KEY]
With MIMO_TEST_MEMORY_DOWN set, it expects the memory to be unreachable: it reports the
memory tool's error and checks that a skill's tool still answers.

It initialises, lists the tools, calls a skill's tool and the memory tools, then opens a
`subscriptions/listen` stream (or, on a session protocol, waits for the notification),
prints {"step": "waiting"} and waits until the tool list changes, then lists again. Each
step is one JSON line on stdout; the test reads them. Anything wrong raises (exit 1).
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client, StdioServerParameters


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def text_of(result):
    return "\n".join(getattr(item, "text", "") for item in result.content)


async def scenario(client):
    say("initialized", protocol=client.protocol_version, server=client.server_info.name if client.server_info else None)
    tools = await client.list_tools()
    names = sorted(tool.name for tool in tools.tools)
    say("tools", names=names, schemas={tool.name: tool.input_schema for tool in tools.tools})

    echoed = await client.call_tool("everything_echo", {"message": "hello from python"})
    say("echo", text=text_of(echoed), is_error=bool(echoed.is_error))

    if os.environ.get("MIMO_TEST_MEMORY_DOWN"):
        down = await client.call_tool("memory_store", {"content": "nowhere to go"})
        say("memory down", is_error=bool(down.is_error), text=text_of(down))
        again = await client.call_tool("everything_echo", {"message": "still here"})
        say("echo again", text=text_of(again))
        return

    stored = await client.call_tool("memory_store", {"content": "The python client was here", "category": "observation"})
    say("stored", is_error=bool(stored.is_error), structured=stored.structured_content, text=text_of(stored))
    found = await client.call_tool("memory_search", {"query": "python client", "limit": 3})
    say("found", is_error=bool(found.is_error), structured=found.structured_content)
    bad = await client.call_tool("memory_store", {"content": ""})
    say("bad store", is_error=bool(bad.is_error), text=text_of(bad))

    if client.protocol_version >= "2026-07-28":
        async with client.listen(tools_list_changed=True) as subscription:
            say("waiting")
            async for _event in subscription:
                break
    else:
        changed = asyncio.Event()
        client_changed.append(changed)
        say("waiting")
        await changed.wait()
    tools = await client.list_tools()
    say("changed", names=sorted(tool.name for tool in tools.tools))


client_changed = []


async def on_message(message):
    method = getattr(getattr(message, "root", message), "method", None) or getattr(message, "method", None)
    if method == "notifications/tools/list_changed":
        for changed in client_changed:
            changed.set()


async def main():
    kind = sys.argv[1]
    if kind == "stdio":
        server = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:], env=dict(os.environ))
    else:
        headers = {"Authorization": f"Bearer {sys.argv[3]}"} if len(sys.argv) > 3 else {}
        from mcp.client.streamable_http import streamable_http_client

        server = streamable_http_client(sys.argv[2], http_client=httpx2.AsyncClient(headers=headers, timeout=60))
    async with Client(server, message_handler=on_message, read_timeout_seconds=60) as client:
        await asyncio.wait_for(scenario(client), timeout=120)


asyncio.run(main())
