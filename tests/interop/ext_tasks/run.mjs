// The official MCP tasks requester, @modelcontextprotocol/ext-tasks, driving a BE-MCP server over Streamable HTTP
// through the TypeScript SDK v2 client (@modelcontextprotocol/client).
//
//   node run.mjs <url> <2025-11-25|2026-07-28>
//
// Bare imports resolve from the folder holding node_modules (`make setup` installs it at .cache/ext-tasks); the
// test copies this file there to run it. One JSON line per check goes to stdout:
//   {"check": ..., "revision": ..., "ok": true|false, "detail": {...}, "error"?: ..., "wire"?: [...]}
// and the exit status is 1 when any check failed. "wire" is the HTTP traffic of a failed check (request and
// response bodies, cut short: its last tools/call and tasks/* exchanges), the evidence of what the server answered.

import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  DispatchError,
  createApplicationInputHandler,
  createTaskSessionEndpointId,
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";

const [url, revision] = process.argv.slice(2);
if (!url || !["2025-11-25", "2026-07-28"].includes(revision)) {
  console.error("usage: node run.mjs <url> <2025-11-25|2026-07-28>");
  process.exit(2);
}
const MODERN = revision === "2026-07-28";
const CHECK_TIMEOUT_MS = 30_000;
const CLIENT_INFO = { name: "bemcp-ext-tasks-interop", version: "1.0.0" };
const CAPABILITIES = { elicitation: { form: {} } };
const endpointId = await createTaskSessionEndpointId("bemcp-interop", { url, revision });

// -- the wire, recorded ---------------------------------------------------------------------------------------

let wire = [];
const cut = (s, n = 700) => (s.length > n ? `${s.slice(0, n)}...` : s);

/** `fetch`, recording each POST's request and response body (SSE included) for the check that made it. */
async function tracedFetch(input, init = {}) {
  const response = await fetch(input, init);
  if ((init.method ?? "GET") === "POST") {
    const entry = { request: cut(String(init.body ?? "")), status: response.status, response: "" };
    wire.push(entry);
    response
      .clone()
      .text()
      .then(
        (text) => (entry.response = cut(text)),
        () => {},
      );
  }
  return response;
}

// -- 2026-07-28: the raw request path ext-tasks needs -----------------------------------------------------------

let rawIds = 0;

/** The first JSON-RPC message answering `id` in a JSON or SSE body. */
function answerIn(text, contentType, id) {
  if (!contentType.includes("text/event-stream")) return JSON.parse(text);
  for (const event of text.split(/\r?\n\r?\n/)) {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (!data) continue;
    const message = JSON.parse(data);
    if (message.id === id && ("result" in message || "error" in message)) return message;
  }
  return undefined;
}

/**
 * ext-tasks' `rawDispatch` for 2026-07-28: the SDK client's codecs refuse task results (`resultType: "task"`),
 * so the host sends `tools/call` and `tasks/*` itself, already framed by ext-tasks (`_meta` with the protocol
 * version, client info and capabilities). Over Streamable HTTP each request is one POST answered on its own
 * response, so ids and matching are this function's alone. Headers per 2026-07-28: `MCP-Protocol-Version`,
 * `Mcp-Method`, and `Mcp-Name` (the tool's name; for tasks/* ext-tasks supplies the task id).
 */
async function rawDispatch(request, options = {}) {
  const id = `ext-tasks-${++rawIds}`;
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
    "MCP-Protocol-Version": revision,
    "Mcp-Method": request.method,
    ...(request.method === "tools/call" ? { "Mcp-Name": request.params.name } : {}),
    ...(options.context?.headers ?? {}),
  };
  const signals = [options.signal, options.context?.requestTimeoutMs && AbortSignal.timeout(options.context.requestTimeoutMs)];
  const signal = AbortSignal.any(signals.filter(Boolean));
  let response;
  try {
    response = await tracedFetch(url, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id, ...request }), signal });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new DispatchError(`POST ${request.method} failed`, true, { cause: error });
  }
  const text = await response.text();
  let message;
  try {
    message = answerIn(text, response.headers.get("content-type") ?? "", id);
  } catch (error) {
    throw new DispatchError(`HTTP ${response.status} for ${request.method}: not JSON-RPC: ${cut(text, 200)}`, false, { cause: error });
  }
  if (message?.error) return { kind: "error", error: message.error };
  if (message && "result" in message) return { kind: "result", result: message.result };
  throw new DispatchError(`HTTP ${response.status} for ${request.method}: no answer to ${id}: ${cut(text, 200)}`);
}

// -- sessions -------------------------------------------------------------------------------------------------

/** A connected SDK client: the 2025-11-25 handshake, or pinned to 2026-07-28 (`server/discover`). */
async function connect() {
  const client = new Client(CLIENT_INFO, {
    capabilities: CAPABILITIES,
    ...(MODERN ? { versionNegotiation: { mode: { pin: revision } } } : {}),
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: tracedFetch }));
  return client;
}

/** An ext-tasks session over `client`; `asked` records each input request the session routes to the app. */
function taskSession(client, asked = []) {
  const onInputRequest = createApplicationInputHandler({
    elicitation: async (request, context) => {
      asked.push({ kind: request.kind, message: request.params.message, scope: context.scope, delivery: context.delivery, taskId: context.taskId });
      return { action: "accept", content: { ok: true } };
    },
    sampling: async () => {
      throw new Error("no sampling here");
    },
    roots: async () => ({ roots: [] }),
  });
  return createTaskSessionFromClient(client, {
    endpointId,
    onInputRequest,
    onError: (error) => console.error(`ext-tasks: ${error?.stack ?? error}`),
    ...(MODERN ? { rawDispatch, v2RequestFraming: { protocolVersion: revision, clientInfo: CLIENT_INFO, clientCapabilities: CAPABILITIES } } : {}),
  });
}

// -- helpers --------------------------------------------------------------------------------------------------

class CheckFailed extends Error {
  constructor(message, detail = {}) {
    super(message);
    this.detail = detail;
  }
}

function expect(condition, message, detail) {
  if (!condition) throw new CheckFailed(message, detail);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Settle an execution, keeping the statuses it went through. */
async function settle(execution, onTask = () => {}) {
  const statuses = [];
  const { outcome } = await execution.settle({
    onEvent: (event) => {
      if (event.type === "task") {
        if (statuses.at(-1) !== event.task.status) statuses.push(event.task.status);
        onTask(event.task);
      }
    },
  });
  return { outcome, statuses };
}

/** Zod issues, unions flattened, as "path: message" strings. */
function leafIssues(issues, at = []) {
  return issues.flatMap((issue) =>
    issue.code === "invalid_union" && Array.isArray(issue.errors)
      ? issue.errors.flatMap((branch) => leafIssues(branch, [...at, ...issue.path]))
      : [`${[...at, ...issue.path].join(".") || "(root)"}: ${issue.message}`],
  );
}

/** A completed outcome's result, or a failure that says what ext-tasks refused and what the server had sent. */
function completedResult(outcome, statuses) {
  if (outcome.status !== "completed") {
    const cause = outcome.error?.cause;
    const issues = cause?.cause?.issues ?? cause?.issues;
    const why = Array.isArray(issues)
      ? `ext-tasks refused the task's result: ${[...new Set(leafIssues(issues))].join("; ")}`
      : (outcome.error?.message ?? "");
    throw new CheckFailed(`outcome ${outcome.status}: ${why}`, {
      statuses,
      serverTask: outcome.task ? cut(JSON.stringify(outcome.task.raw), 600) : undefined,
    });
  }
  return resultFromTaskOutcome(outcome);
}

const textOf = (result) => result?.content?.[0]?.text;

/** Poll the server's view of a task through ext-tasks' TaskController until `done`. */
async function snapshotUntil(session, taskId, done, timeoutMs = 10_000) {
  const controller = session.task(taskId);
  const end = Date.now() + timeoutMs;
  for (;;) {
    const view = await controller.snapshot();
    if (done(view) || Date.now() > end) return view;
    await sleep(100);
  }
}

// -- the checks -----------------------------------------------------------------------------------------------

/** (a) A task-backed `work` call, polled by ext-tasks to completion; its result is the tool's text. */
async function checkWork() {
  const client = await connect();
  const session = taskSession(client);
  try {
    const text = `work done over ${revision}`;
    const execution = await session.callTool("work", { seconds: 0.5, text }, { task: { preference: "require" } });
    expect(execution.kind === "task", `the call ran as ${execution.kind}, not as a task`);
    const { outcome, statuses } = await settle(execution);
    const result = completedResult(outcome, statuses);
    expect(textOf(result) === text, `result text ${JSON.stringify(textOf(result))}`, { result });
    return { taskId: execution.handle.taskId, statuses, text: textOf(result) };
  } finally {
    await session.close();
    await client.close();
  }
}

/**
 * (b) `confirm` elicits `{ok: boolean}`; ext-tasks' input routing hands the question to the app's handler, whose
 * answer gets back to the task. 2026-07-28: the question is inlined in `tasks/get` (`inputRequests`) and ext-tasks
 * answers with `tasks/update`. 2025-11-25: the server sends `elicitation/create` (with related-task `_meta`) on
 * the stream of a `tasks/result` request, and ext-tasks correlates it to the task by that `_meta`.
 *
 * ext-tasks 0.2.2 limitation (2025-11-25): its requester polls `tasks/get` and calls `tasks/result` only once the
 * task is terminal, never on `input_required` (where the spec says the requester SHOULD call it at once), so on
 * its own it never receives the question and the task waits forever. This check therefore opens that stream
 * itself, with one plain `tasks/result` through the SDK client when ext-tasks reports `input_required`; the
 * answering is still ext-tasks' routing (handler context: scope "task", delivery "peer-request").
 */
async function checkConfirm() {
  const client = await connect();
  const asked = [];
  const session = taskSession(client, asked);
  try {
    const question = `proceed over ${revision}?`;
    const execution = await session.callTool("confirm", { question }, { task: { preference: "require" } });
    expect(execution.kind === "task", `the call ran as ${execution.kind}, not as a task`);
    const taskId = execution.handle.taskId;
    let pulled;
    const { outcome, statuses } = await settle(execution, (task) => {
      if (!MODERN && task.status === "input_required" && pulled === undefined) {
        const anyResult = { "~standard": { version: 1, vendor: "bemcp-interop", validate: (value) => ({ value }) } };
        pulled = client.request({ method: "tasks/result", params: { taskId } }, anyResult).catch((error) => error);
      }
    });
    const result = completedResult(outcome, statuses);
    expect(textOf(result) === "answered True", `result text ${JSON.stringify(textOf(result))}`, { result, asked });
    expect(asked.length === 1, `the app was asked ${asked.length} times`, { asked });
    const [got] = asked;
    expect(got.kind === "elicitation" && got.message === question, "the app was asked something else", { asked });
    expect(got.scope === "task" && got.taskId === taskId, "the question was not routed to this task", { asked, taskId });
    if (pulled !== undefined) {
      const relayed = await pulled;
      expect(!(relayed instanceof Error) && textOf(relayed) === "answered True", "tasks/result did not end with the result", {
        relayed: relayed instanceof Error ? relayed.message : relayed,
      });
    }
    return { taskId, statuses, asked: got, text: textOf(result) };
  } finally {
    await session.close();
    await client.close();
  }
}

/** (c) A 60 s `work` cancelled through ext-tasks: the execution settles as cancelled, and so does the server's task. */
async function checkCancel() {
  const client = await connect();
  const session = taskSession(client);
  try {
    const execution = await session.callTool("work", { seconds: 60, text: "never" }, { task: { preference: "require" } });
    expect(execution.kind === "task", `the call ran as ${execution.kind}, not as a task`);
    const taskId = execution.handle.taskId;
    const settling = settle(execution);
    const before = await snapshotUntil(session, taskId, (view) => view.status === "working");
    expect(before.status === "working", `the task was ${before.status} before the cancel`);
    await execution.cancel();
    const { outcome, statuses } = await settling;
    expect(outcome.status === "cancelled", `outcome ${outcome.status}`, { statuses, error: outcome.error?.message });
    // ext-tasks settles on the server's ack; the server's own record must say so too (and not "working" forever).
    const after = await snapshotUntil(session, taskId, (view) => ["completed", "failed", "cancelled"].includes(view.status));
    expect(after.status === "cancelled", `the server's task is ${after.status} after the cancel`, { after: after.raw });
    return { taskId, statuses, server: after.status };
  } finally {
    await session.close();
    await client.close();
  }
}

/**
 * (d) Recovery: a first ext-tasks session starts `work`, hands the task off (a serialized reference, polling
 * stopped, the task left running) and closes; a new session resumes polling that task id to its result.
 * 2026-07-28 has no MCP sessions (the task id is the capability), so the new session is a new SDK client and
 * connection. On 2025-11-25 BE-MCP binds a task to the MCP session that created it (the spec asks for binding
 * to the authorization context, and this server has no auth), so the new ext-tasks session runs on the same
 * SDK client, i.e. the same MCP session, after the first ext-tasks session is closed.
 */
async function checkRecover() {
  const text = `recovered over ${revision}`;
  let client = await connect();
  let reference;
  try {
    const first = taskSession(client);
    const execution = await first.callTool("work", { seconds: 2, text }, { task: { preference: "require" } });
    expect(execution.kind === "task", `the call ran as ${execution.kind}, not as a task`);
    await execution.handoff((ref) => {
      reference = JSON.stringify(ref);
    });
    await execution.result(); // detached: settles locally (closed) without touching the remote task
    await first.close();
    if (MODERN) {
      await client.close();
      client = await connect();
    }
    const second = taskSession(client);
    try {
      const resumed = await second.resumeTask(JSON.parse(reference));
      const { outcome, statuses } = await settle(resumed);
      expect(statuses[0] === "working", `the resumed task was already ${statuses[0]}: nothing was recovered`, { statuses });
      const result = completedResult(outcome, statuses);
      expect(textOf(result) === text, `result text ${JSON.stringify(textOf(result))}`, { result });
      return { reference: JSON.parse(reference), statuses, text: textOf(result) };
    } finally {
      await second.close();
    }
  } finally {
    await client.close();
  }
}

// -- run --------------------------------------------------------------------------------------------------------

const CHECKS = { work: checkWork, confirm: checkConfirm, cancel: checkCancel, recover: checkRecover };
let failed = 0;
for (const [name, check] of Object.entries(CHECKS)) {
  wire = [];
  const line = { check: name, revision, ok: false };
  let timer;
  try {
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`no outcome in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
    });
    line.detail = await Promise.race([check(), timeout]);
    line.ok = true;
  } catch (error) {
    failed += 1;
    line.error = error?.message ?? String(error);
    line.detail = error instanceof CheckFailed ? error.detail : { stack: cut(String(error?.stack ?? ""), 600) };
    line.wire = wire.filter((entry) => /"method":"(tools\/call|tasks\/)/.test(entry.request)).slice(-4);
  } finally {
    clearTimeout(timer);
  }
  console.log(JSON.stringify(line));
}
process.exit(failed ? 1 : 0);
