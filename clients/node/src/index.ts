// @carpet/client: the render and credit services for internal backends (`README.md`).
//
//   const client = new CarpetClient("render:50052", "credit:50051", { serviceToken });
//   const job = await client.submitAndWait({ organizationId: "7", carpetId: "3", mode: "preview" });
//
// One channel per service, built once, presenting the backend's identity on every call; a
// deadline on every call; UNAVAILABLE retried with backoff within that deadline only for calls
// that can be repeated safely (reads, and SubmitRender, which always carries an idempotency
// key); refusals thrown as typed errors from their google.rpc.ErrorInfo reason.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

import type { ProtoGrpcType as CreditProto } from "./generated/credit";
import type { ProtoGrpcType as RenderProto } from "./generated/render";
import type { Balance__Output } from "./generated/carpet/credit/v1/Balance";
import type { CreditServiceClient } from "./generated/carpet/credit/v1/CreditService";
import type { Carpet__Output } from "./generated/carpet/render/v1/Carpet";
import type { ListCarpetsRequest } from "./generated/carpet/render/v1/ListCarpetsRequest";
import type { ListCarpetsResponse__Output } from "./generated/carpet/render/v1/ListCarpetsResponse";
import type { RenderJob__Output } from "./generated/carpet/render/v1/RenderJob";
import type { RenderServiceClient } from "./generated/carpet/render/v1/RenderService";
import type { SubmitRenderRequest } from "./generated/carpet/render/v1/SubmitRenderRequest";
import { CarpetError, Unavailable, typedError } from "./errors";

export * from "./errors";
export type { Carpet__Output as Carpet } from "./generated/carpet/render/v1/Carpet";
export type { RenderJob__Output as RenderJob } from "./generated/carpet/render/v1/RenderJob";
export type { SubmitRenderRequest } from "./generated/carpet/render/v1/SubmitRenderRequest";

const PACKAGE_ROOT = join(__dirname, "..", "..");
// The same options the types were generated with (package.json "generate").
const LOADER_OPTIONS: protoLoader.Options = {
  longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PACKAGE_ROOT],
};
const TERMINAL = new Set(["RENDER_STATUS_SUCCESS", "RENDER_STATUS_FAILED"]);
const FIRST_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 2000;

/** Who the backend is: a service token, a client certificate (mTLS), or a person's JWT. */
export interface Identity {
  serviceToken?: string;
  bearerToken?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  serverName?: string;
}

export interface ClientOptions {
  timeoutMs?: number;
}

function credentials(identity: Identity): grpc.ChannelCredentials {
  const channel = identity.caFile
    ? grpc.credentials.createSsl(readFileSync(identity.caFile),
        identity.keyFile ? readFileSync(identity.keyFile) : null,
        identity.certFile ? readFileSync(identity.certFile) : null)
    : grpc.credentials.createInsecure();
  return channel;
}

function metadata(identity: Identity): grpc.Metadata {
  const result = new grpc.Metadata();
  if (identity.bearerToken) result.set("authorization", `Bearer ${identity.bearerToken}`);
  else if (identity.serviceToken) result.set("x-service-token", identity.serviceToken);
  return result;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class CarpetClient {
  readonly renders: RenderServiceClient;
  readonly credits?: CreditServiceClient;
  private readonly metadata: grpc.Metadata;
  private readonly timeoutMs: number;

  constructor(renderAddr: string, creditAddr: string | undefined, identity: Identity,
              options: ClientOptions = {}) {
    this.metadata = metadata(identity);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const channelOptions: grpc.ChannelOptions = {
      "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 2000,
      ...(identity.serverName ? { "grpc.ssl_target_name_override": identity.serverName } : {}),
    };
    const render = grpc.loadPackageDefinition(protoLoader.loadSync(
      "protos/carpet/render/v1/render.proto", LOADER_OPTIONS)) as unknown as RenderProto;
    this.renders = new render.carpet.render.v1.RenderService(
      renderAddr, credentials(identity), channelOptions);
    if (creditAddr) {
      const credit = grpc.loadPackageDefinition(protoLoader.loadSync(
        "protos/carpet/credit/v1/credit.proto", LOADER_OPTIONS)) as unknown as CreditProto;
      this.credits = new credit.carpet.credit.v1.CreditService(
        creditAddr, credentials(identity), channelOptions);
    }
  }

  close(): void {
    this.renders.close();
    this.credits?.close();
  }

  /** One unary call with the client's deadline; a repeatable one is sent again after
   *  UNAVAILABLE, with backoff, while the deadline lasts. */
  private async call<Request, Response>(
    method: (request: Request, metadata: grpc.Metadata, options: grpc.CallOptions,
             callback: grpc.requestCallback<Response>) => grpc.ClientUnaryCall,
    request: Request, repeatable = true): Promise<Response> {
    const deadline = Date.now() + this.timeoutMs;
    let backoff = FIRST_BACKOFF_MS;
    for (;;) {
      try {
        return await new Promise<Response>((resolve, reject) => {
          method(request, this.metadata, { deadline: new Date(deadline) },
                 (error, response) => (error ? reject(error) : resolve(response as Response)));
        });
      } catch (error) {
        const failure = typedError(error as grpc.ServiceError);
        if (!(repeatable && failure instanceof Unavailable && Date.now() + backoff < deadline)) {
          throw failure;
        }
      }
      await sleep(backoff);
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  }

  /** Every carpet an organisation's shoppers may see — its own catalogue and the shared one
   *  (filters: query, material, includeArchived) — newest first, each with its sizes
   *  (`docs/catalogue.md`); a size's id goes in SubmitRenderRequest.carpetSizeId. */
  async listCarpets(organizationId: string | number,
                    filters: Omit<ListCarpetsRequest, "organizationId" | "pageToken"> = {}
  ): Promise<Carpet__Output[]> {
    const carpets: Carpet__Output[] = [];
    let pageToken = "";
    do {
      const page: ListCarpetsResponse__Output = await this.call(
        this.renders.ListCarpets.bind(this.renders), {
        pageSize: 500, ...filters, organizationId: String(organizationId), pageToken });
      carpets.push(...page.carpets);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return carpets;
  }

  /** A queued job with its credits reserved; a key is made when none is given, so retries
   *  never submit twice. */
  submitRender(request: SubmitRenderRequest): Promise<RenderJob__Output> {
    const keyed = { ...request, idempotencyKey: request.idempotencyKey || randomUUID() };
    return this.call(this.renders.SubmitRender.bind(this.renders), keyed);
  }

  getRender(id: string | number): Promise<RenderJob__Output> {
    return this.call(this.renders.GetRender.bind(this.renders), { id: String(id) });
  }

  cancelRender(id: string | number): Promise<RenderJob__Output> {
    return this.call(this.renders.CancelRender.bind(this.renders), { id: String(id) }, false);
  }

  balance(organizationId: string | number): Promise<Balance__Output> {
    if (!this.credits) throw new Error("CarpetClient was made without a credit address");
    return this.call(this.credits.GetBalance.bind(this.credits),
                     { organizationId: String(organizationId) });
  }

  /** The job once it has ended, following WatchRender; a watch cut by a restarting replica is
   *  opened again until the timeout. */
  async wait(id: string | number, timeoutMs = 300_000): Promise<RenderJob__Output> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (Date.now() >= deadline) {
        throw new Unavailable(grpc.status.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
                              `render ${id} did not end within ${timeoutMs} ms`);
      }
      try {
        const ended = await new Promise<RenderJob__Output | null>((resolve, reject) => {
          const stream = this.renders.WatchRender({ id: String(id) }, this.metadata,
                                                  { deadline: new Date(deadline) });
          stream.on("data", (job: RenderJob__Output) => {
            if (TERMINAL.has(job.status as string)) {
              stream.cancel();
              resolve(job);
            }
          });
          stream.on("error", (error: grpc.ServiceError) => {
            if (error.code === grpc.status.CANCELLED) return;
            reject(error);
          });
          stream.on("end", () => resolve(null));
        });
        if (ended) return ended;
      } catch (error) {
        const failure = typedError(error as grpc.ServiceError);
        if (!(failure instanceof Unavailable)) throw failure;
        await sleep(Math.min(1000, Math.max(0, deadline - Date.now())));
      }
    }
  }

  /** Submit, then watch until the job ends; resolves with the finished job (a render that
   *  failed is a job in RENDER_STATUS_FAILED with its error text). */
  async submitAndWait(request: SubmitRenderRequest, timeoutMs = 300_000): Promise<RenderJob__Output> {
    const job = await this.submitRender(request);
    if (TERMINAL.has(job.status as string)) return job;
    return this.wait(job.id, timeoutMs);
  }
}

export { CarpetError };
