// An MCP client built on the official TypeScript SDK (npm `@modelcontextprotocol/sdk`),
// driven by Mimo's gateway tests.
//
// Usage: node mcp_client.cjs stdio MIMO [MIMO_ARGS...]   (launches MIMO and talks over stdio)
//        node mcp_client.cjs http URL [API_KEY]
//
// It initialises, lists the tools, calls a skill's tool and the memory tools, calls the
// everything server's long-running tool with progress, cancels another such call after its
// first progress update, prints {"step": "waiting"} and waits for
// notifications/tools/list_changed, then lists again. Each step is one JSON line on stdout.
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { ToolListChangedNotificationSchema } = require("@modelcontextprotocol/sdk/types.js");

const say = (step, fields = {}) => process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
const textOf = (result) => result.content.map((item) => item.text || "").join("\n");

async function main() {
  const [kind, target, ...rest] = process.argv.slice(2);
  const transport =
    kind === "stdio"
      ? new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "inherit" })
      : new StreamableHTTPClientTransport(new URL(target), {
          requestInit: rest[0] ? { headers: { Authorization: `Bearer ${rest[0]}` } } : {},
        });
  const client = new Client({ name: "mimo-gateway-test", version: "1.0.0" });
  let changed;
  const listChanged = new Promise((resolve) => (changed = resolve));
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed());
  await client.connect(transport);
  say("initialized", { server: client.getServerVersion().name });

  const tools = await client.listTools();
  say("tools", {
    names: tools.tools.map((tool) => tool.name).sort(),
    schemas: Object.fromEntries(tools.tools.map((tool) => [tool.name, tool.inputSchema])),
  });

  const echoed = await client.callTool({ name: "everything_echo", arguments: { message: "hello from typescript" } });
  say("echo", { text: textOf(echoed), is_error: !!echoed.isError });

  const stored = await client.callTool({ name: "memory_store", arguments: { content: "The TypeScript client was here" } });
  say("stored", { is_error: !!stored.isError, structured: stored.structuredContent, text: textOf(stored) });
  const found = await client.callTool({ name: "memory_search", arguments: { query: "TypeScript client", limit: 3 } });
  say("found", { is_error: !!found.isError, structured: found.structuredContent });
  const bad = await client.callTool({ name: "memory_store", arguments: { content: "" } });
  say("bad store", { is_error: !!bad.isError, text: textOf(bad) });

  let unknown;
  try {
    await client.callTool({ name: "no_such_tool", arguments: {} });
    unknown = { error: null };
  } catch (error) {
    unknown = { error: String(error.message), code: error.code };
  }
  say("unknown", unknown);

  const updates = [];
  const long = await client.callTool(
    { name: "everything_trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
    undefined,
    { onprogress: (progress) => updates.push(progress), timeout: 60000 },
  );
  say("progress", { updates, text: textOf(long), is_error: !!long.isError });

  const abort = new AbortController();
  let cancelled;
  try {
    await client.callTool(
      { name: "everything_trigger-long-running-operation", arguments: { duration: 60, steps: 60 } },
      undefined,
      { onprogress: () => abort.abort("the test cancels"), signal: abort.signal, timeout: 120000 },
    );
    cancelled = { error: null };
  } catch (error) {
    cancelled = { error: String(error.message || error) };
  }
  say("cancelled", cancelled);

  say("waiting");
  await listChanged;
  const after = await client.listTools();
  say("changed", { names: after.tools.map((tool) => tool.name).sort() });
  await client.close();
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`mcp_client.cjs: ${error.stack || error}\n`);
    process.exit(1);
  },
);
