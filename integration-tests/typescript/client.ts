// A Mimo client in TypeScript built only from /proto: the types under ./gen are generated
// from the .proto files by @grpc/proto-loader's `proto-loader-gen-types`, and the same files
// are loaded at run time by @grpc/grpc-js. It walks through the registry, skill-host, memory
// and telemetry services of a running `mimo up`; each step prints one line, and the first
// failed check exits non-zero saying what was expected.
//
// Usage: node client.js --proto-root PROTO --registry HOST:PORT --memory HOST:PORT
//          --telemetry HOST:PORT

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { ProtoGrpcType as MemoryProto } from "./gen/memory";
import type { ProtoGrpcType as RegistryProto } from "./gen/registry";
import type { ProtoGrpcType as SkillHostProto } from "./gen/skill_host";
import type { ProtoGrpcType as TelemetryProto } from "./gen/telemetry";
import type { StoreResponse__Output } from "./gen/mimo/v1/StoreResponse";

type Proto = MemoryProto & RegistryProto & SkillHostProto & TelemetryProto;

const DEADLINE_MS = 10_000;
const TOOL_CALL_DEADLINE_MS = 60_000;
const TELEMETRY_PATIENCE_MS = 30_000;

class CheckFailed extends Error {}

function check(condition: boolean, message: string): void {
  if (!condition) throw new CheckFailed(message);
}

function step(message: string): void {
  console.log(`- ${message}`);
}

function argument(name: string): string {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? process.argv[at + 1] : undefined;
  if (!value) throw new CheckFailed(`--${name} is required`);
  return value;
}

function deadline(ms: number): grpc.CallOptions {
  return { deadline: new Date(Date.now() + ms) };
}

/** Turns a callback-style unary call into a promise. */
function unary<Response>(
  call: (callback: (error: grpc.ServiceError | null, response?: Response) => void) => void,
): Promise<Response> {
  return new Promise((resolve, reject) =>
    call((error, response) => (error ? reject(error) : resolve(response as Response))),
  );
}

/** Expects `promise` to fail with gRPC status `code`. */
async function expectStatus(code: grpc.status, promise: Promise<unknown>, what: string) {
  try {
    await promise;
  } catch (error) {
    const status = (error as grpc.ServiceError).code;
    check(status === code, `${what}: expected ${grpc.status[code]}, got ${grpc.status[status]}`);
    step(`${what} is refused with ${grpc.status[code]}`);
    return;
  }
  throw new CheckFailed(`${what}: expected ${grpc.status[code]}, but it succeeded`);
}

function load(protoRoot: string): Proto {
  const definition = protoLoader.loadSync(
    ["mimo/v1/registry.proto", "mimo/v1/skill_host.proto", "mimo/v1/memory.proto", "mimo/v1/telemetry.proto"],
    // The options `proto-loader-gen-types` was run with, so that the types match.
    { longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoRoot] },
  );
  return grpc.loadPackageDefinition(definition) as unknown as Proto;
}

async function toolsScenario(proto: Proto, registryAddress: string): Promise<void> {
  const insecure = grpc.credentials.createInsecure();
  const registry = new proto.mimo.v1.Registry(registryAddress, insecure);
  const listed = await unary<any>((done) => registry.ListTools({}, deadline(DEADLINE_MS), done));
  const names: string[] = listed.tools.map((tool: { name: string }) => tool.name);
  check(names.includes("time_get_current_time"), `ListTools lacks time_get_current_time: ${names}`);
  step(`Registry.ListTools lists ${names.length} tools`);

  const route = await unary<any>((done) =>
    registry.ResolveTool({ name: "time_get_current_time" }, deadline(DEADLINE_MS), done),
  );
  check(route.endpoint.length > 0 && route.tool === "get_current_time", `ResolveTool: ${JSON.stringify(route)}`);
  step(`Registry.ResolveTool routes time_get_current_time to ${route.endpoint} (lease ${route.leaseId})`);

  const host = new proto.mimo.v1.SkillHost(route.endpoint, insecure);
  const answer = await unary<any>((done) =>
    host.CallTool(
      { skill: route.skill, tool: route.tool, argumentsJson: JSON.stringify({ timezone: "UTC" }), leaseId: route.leaseId },
      deadline(TOOL_CALL_DEADLINE_MS),
      done,
    ),
  );
  const text = answer.content.map((item: { text: string }) => item.text).join("");
  check(!answer.isError && text.includes("UTC"), `CallTool answered ${JSON.stringify(answer)}`);
  step(`SkillHost.CallTool answers ${text.slice(0, 60)}...`);

  await expectStatus(
    grpc.status.NOT_FOUND,
    unary((done) => registry.ResolveTool({ name: "no_such_tool" }, deadline(DEADLINE_MS), done)),
    "ResolveTool of an unknown tool",
  );
  registry.close();
  host.close();
}

async function memoryScenario(proto: Proto, memoryAddress: string): Promise<void> {
  const memory = new proto.mimo.v1.Memory(memoryAddress, grpc.credentials.createInsecure());
  const content = "The TypeScript client stored this engram about lighthouses on rocky coasts";
  const stored = await unary<StoreResponse__Output>((done) =>
    memory.Store({ content, category: "CATEGORY_OBSERVATION", importance: 0.7 }, deadline(DEADLINE_MS), done),
  );
  const id = stored.engram?.id ?? "";
  check(id.length > 0, `Store answered ${JSON.stringify(stored)}`);
  step(`Memory.Store keeps it as ${id}`);

  const found = await unary<any>((done) =>
    memory.Search({ query: "lighthouses on rocky coasts", limit: 3, minSimilarity: -1 }, deadline(DEADLINE_MS), done),
  );
  check(found.hits.length > 0 && found.hits[0].engram.id === id, `Search answered ${JSON.stringify(found)}`);
  check(found.hits[0].engram.category === "CATEGORY_OBSERVATION", "the category comes back as stored");
  step(`Memory.Search finds it first (similarity ${found.hits[0].similarity.toFixed(3)})`);

  await expectStatus(
    grpc.status.INVALID_ARGUMENT,
    unary((done) => memory.Search({ query: "anything", limit: 5000 }, deadline(DEADLINE_MS), done)),
    "Search with limit 5000",
  );

  // A bidirectional stream: one answer per store, in order.
  const stream = memory.StoreStream(deadline(DEADLINE_MS * 3));
  const answers: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    stream.on("data", (answer: StoreResponse__Output) => answers.push(answer.engram?.content ?? ""));
    stream.on("error", reject);
    stream.on("end", resolve);
  });
  const sent: string[] = [];
  for (let n = 0; n < 20; n++) {
    const text = `streamed from TypeScript, item ${n}, word w${n * 37}`;
    sent.push(text);
    stream.write({ content: text });
  }
  stream.end();
  await ended;
  check(JSON.stringify(answers) === JSON.stringify(sent), `StoreStream answered ${answers.length} of 20, in order`);
  step("Memory.StoreStream stores 20 engrams and answers each in order");
  memory.close();
}

async function telemetryScenario(proto: Proto, telemetryAddress: string): Promise<void> {
  const telemetry = new proto.mimo.v1.Telemetry(telemetryAddress, grpc.credentials.createInsecure());
  const wanted = ["memory", "registry", "skill-host", "telemetry"];
  const until = Date.now() + TELEMETRY_PATIENCE_MS;
  let services: string[] = [];
  for (;;) {
    const listed = await unary<any>((done) => telemetry.ListInstances({}, deadline(DEADLINE_MS), done));
    services = [...new Set<string>(listed.instances.map((s: any) => s.latest.instance.service))].sort();
    if (wanted.every((w) => services.includes(w)) || Date.now() >= until) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  check(wanted.every((w) => services.includes(w)), `ListInstances shows ${services}; expected ${wanted}`);
  step(`Telemetry.ListInstances shows ${services.join(", ")}`);
  telemetry.close();
}

async function main(): Promise<number> {
  try {
    const proto = load(argument("proto-root"));
    await toolsScenario(proto, argument("registry"));
    await memoryScenario(proto, argument("memory"));
    await telemetryScenario(proto, argument("telemetry"));
  } catch (error) {
    const status = (error as grpc.ServiceError).code;
    const text =
      error instanceof CheckFailed || status === undefined
        ? String((error as Error).message)
        : `unexpected gRPC error ${grpc.status[status]}: ${(error as grpc.ServiceError).details}`;
    console.error(`FAILED: ${text}`);
    return 1;
  }
  console.log("ok: every check passed");
  return 0;
}

main().then((code) => process.exit(code));
