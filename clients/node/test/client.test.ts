// @carpet/client against real credit and render processes, started by this test through the
// repository's test stack (`python -m tests.clients.stack`, the project's .venv or CARPET_PYTHON):
// the render flow, a refused submission and a read retried through a render-service restart.
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";

import { CarpetClient, InsufficientCredits } from "../src/index";

const REPOSITORY = join(__dirname, "..", "..", "..", "..");
const PYTHON = process.env.CARPET_PYTHON ?? join(REPOSITORY, ".venv", "bin", "python");

interface StackConfig {
  render_addr: string;
  credit_addr: string;
  service_token: string;
  organization_id: number;
  broke_organization_id: number;
  carpet_id: number;
}

let stack: ChildProcessWithoutNullStreams;
let lines: AsyncIterableIterator<string>;
let config: StackConfig;
let client: CarpetClient;

async function nextLine(): Promise<any> {
  const { value, done } = await lines.next();
  assert.ok(!done, "the test stack stopped");
  return JSON.parse(value);
}

async function command(text: string): Promise<void> {
  stack.stdin.write(text + "\n");
  assert.deepEqual(await nextLine(), { done: text });
}

before(async () => {
  stack = spawn(PYTHON, ["-m", "tests.clients.stack"], { cwd: REPOSITORY });
  stack.stderr.on("data", (chunk) => process.stderr.write(chunk));
  lines = createInterface({ input: stack.stdout })[Symbol.asyncIterator]();
  config = await nextLine();
  client = new CarpetClient(config.render_addr, config.credit_addr,
                            { serviceToken: config.service_token }, { timeoutMs: 30_000 });
});

after(async () => {
  client?.close();
  stack.stdin.end();
  await new Promise((resolve) => stack.on("exit", resolve));
});

test("submitAndWait renders and charges once", async () => {
  const job = await client.submitAndWait({
    organizationId: String(config.organization_id), carpetId: String(config.carpet_id),
    mode: "preview" });
  assert.equal(job.status, "RENDER_STATUS_SUCCESS");
  assert.equal(job.creditsCharged, "1");
  const balance = await client.balance(config.organization_id);
  assert.equal(balance.balance, "49");
});

test("a refused submission is a typed error", async () => {
  await assert.rejects(
    client.submitRender({ organizationId: String(config.broke_organization_id),
                          carpetId: String(config.carpet_id), mode: "hd" }),
    (error: unknown) => {
      assert.ok(error instanceof InsufficientCredits);
      assert.equal(error.reason, "INSUFFICIENT_CREDITS");
      return true;
    });
});

test("a read is retried while the render service restarts", async () => {
  const job = await client.submitRender({ organizationId: String(config.organization_id),
                                          carpetId: String(config.carpet_id), mode: "preview" });
  await command("stop render");
  const started = Date.now();
  const reading = client.getRender(job.id);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await command("start render");
  const read = await reading;
  assert.equal(read.id, job.id);
  assert.ok(Date.now() - started >= 1500, "the read waited for the restart");
});
