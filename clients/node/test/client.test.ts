// @carpet/client against real credit and render processes, started by this test through the
// repository's test stack (`python -m tests.clients.stack`, the project's .venv or CARPET_PYTHON):
// the render flow, a refused submission, a read retried through a render-service restart and 500
// submitAndWait calls waiting at once on one render process.
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
  crowd_organization_id: number;
  carpet_id: number;
}

/** The repository's test stack in a child process, driven by lines on its stdin. */
class Stack {
  private readonly process: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterableIterator<string>;

  constructor(...options: string[]) {
    this.process = spawn(PYTHON, ["-m", "tests.clients.stack", ...options], { cwd: REPOSITORY });
    this.process.stderr.on("data", (chunk) => process.stderr.write(chunk));
    this.lines = createInterface({ input: this.process.stdout })[Symbol.asyncIterator]();
  }

  async nextLine(): Promise<any> {
    const { value, done } = await this.lines.next();
    assert.ok(!done, "the test stack stopped");
    return JSON.parse(value);
  }

  async command(text: string): Promise<void> {
    this.process.stdin.write(text + "\n");
    assert.deepEqual(await this.nextLine(), { done: text });
  }

  async stop(): Promise<void> {
    this.process.stdin.end();
    await new Promise((resolve) => this.process.on("exit", resolve));
  }
}

function clientOf(config: StackConfig): CarpetClient {
  return new CarpetClient(config.render_addr, config.credit_addr,
                          { serviceToken: config.service_token }, { timeoutMs: 30_000 });
}

let stack: Stack;
let config: StackConfig;
let client: CarpetClient;

before(async () => {
  stack = new Stack();
  config = await stack.nextLine();
  client = clientOf(config);
});

after(async () => {
  client?.close();
  await stack.stop();
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

test("a shop's catalogue is listed with its sizes, and a size is rendered", async () => {
  const carpets = await client.listCarpets(config.organization_id);
  assert.deepEqual(carpets.map((carpet) => [carpet.id, carpet.sizes.map(
    (size) => [size.widthCm, size.lengthCm])]), [[String(config.carpet_id), [[120, 180]]]]);
  const job = await client.submitRender({
    organizationId: String(config.organization_id), carpetId: String(config.carpet_id),
    carpetSizeId: carpets[0].sizes[0].id, mode: "preview" });
  assert.equal(job.carpetSizeId, carpets[0].sizes[0].id);
  await client.wait(job.id);
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
  await stack.command("stop render");
  const started = Date.now();
  const reading = client.getRender(job.id);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await stack.command("start render");
  const read = await reading;
  assert.equal(read.id, job.id);
  assert.ok(Date.now() - started >= 1500, "the read waited for the restart");
});

test("500 submitAndWait calls wait at once on one render process", async () => {
  // No render worker runs in this stack: every submission waits until the stack, once it sees
  // 500 streams open on the render process, cancels the crowd's renders.
  const crowd = new Stack("--no-workers");
  const crowdConfig: StackConfig = await crowd.nextLine();
  const crowdClient = clientOf(crowdConfig);
  try {
    const waits = Array.from({ length: 500 }, () => crowdClient.submitAndWait({
      organizationId: String(crowdConfig.crowd_organization_id),
      carpetId: String(crowdConfig.carpet_id), mode: "preview" }));
    await crowd.command("release crowd 500");
    const jobs = await Promise.all(waits);
    assert.equal(new Set(jobs.map((job) => job.id)).size, 500);
    assert.deepEqual([...new Set(jobs.map((job) => job.status))], ["RENDER_STATUS_FAILED"]);
    assert.deepEqual([...new Set(jobs.map((job) => job.errorText))], ["canceled"]);
  } finally {
    crowdClient.close();
    await crowd.stop();
  }
});
