// Typed errors: a failed call becomes the error class of its google.rpc.ErrorInfo reason (read
// from the grpc-status-details-bin trailer with protobufjs), or of its status code.
import * as grpc from "@grpc/grpc-js";
import * as protobuf from "protobufjs";

export class CarpetError extends Error {
  constructor(readonly code: grpc.status, readonly reason: string, message: string,
              readonly retryAfterS?: number) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidArgument extends CarpetError {}
export class NotFound extends CarpetError {}
export class AlreadyExists extends CarpetError {}
export class IdempotencyKeyReused extends AlreadyExists {}
export class FailedPrecondition extends CarpetError {}
export class InsufficientCredits extends FailedPrecondition {}
export class SpendLimitReached extends FailedPrecondition {}
export class OrganizationSuspended extends FailedPrecondition {}
export class RenderNotReady extends FailedPrecondition {}
export class Unauthenticated extends CarpetError {}
export class PermissionDenied extends CarpetError {}
/** Too many calls: wait retryAfterS seconds. */
export class RateLimited extends CarpetError {}
/** A service is down or restarting: safe to retry (the client already did for repeatable calls). */
export class Unavailable extends CarpetError {}

type ErrorClass = new (code: grpc.status, reason: string, message: string,
                       retryAfterS?: number) => CarpetError;

const BY_REASON: Record<string, ErrorClass> = {
  INSUFFICIENT_CREDITS: InsufficientCredits,
  SPEND_LIMIT_REACHED: SpendLimitReached,
  ORGANIZATION_SUSPENDED: OrganizationSuspended,
  RENDER_NOT_READY: RenderNotReady,
  IDEMPOTENCY_KEY_REUSED: IdempotencyKeyReused,
};
const BY_CODE: Partial<Record<grpc.status, ErrorClass>> = {
  [grpc.status.INVALID_ARGUMENT]: InvalidArgument,
  [grpc.status.NOT_FOUND]: NotFound,
  [grpc.status.ALREADY_EXISTS]: AlreadyExists,
  [grpc.status.FAILED_PRECONDITION]: FailedPrecondition,
  [grpc.status.UNAUTHENTICATED]: Unauthenticated,
  [grpc.status.PERMISSION_DENIED]: PermissionDenied,
  [grpc.status.RESOURCE_EXHAUSTED]: RateLimited,
  [grpc.status.UNAVAILABLE]: Unavailable,
  [grpc.status.DEADLINE_EXCEEDED]: Unavailable,
};

// google.rpc.Status, google.protobuf.Any and google.rpc.ErrorInfo, as much as is read here.
const types = protobuf.Root.fromJSON({
  nested: {
    Status: { fields: { code: { type: "int32", id: 1 }, message: { type: "string", id: 2 },
                        details: { rule: "repeated", type: "Any", id: 3 } } },
    Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    ErrorInfo: { fields: { reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 } } },
  },
});
const Status = types.lookupType("Status");
const ErrorInfo = types.lookupType("ErrorInfo");

function reasonOf(error: grpc.ServiceError): string {
  const raw = error.metadata?.get("grpc-status-details-bin")?.[0];
  if (!raw || typeof raw === "string") return "";
  const status = Status.toObject(Status.decode(raw)) as { details?: { type_url: string; value: Uint8Array }[] };
  for (const detail of status.details ?? []) {
    if (detail.type_url.endsWith("/google.rpc.ErrorInfo")) {
      return (ErrorInfo.toObject(ErrorInfo.decode(detail.value)) as { reason?: string }).reason ?? "";
    }
  }
  return "";
}

export function typedError(error: grpc.ServiceError): CarpetError {
  if (error instanceof CarpetError) return error;
  const code = error.code ?? grpc.status.UNKNOWN;
  const reason = reasonOf(error);
  const errorClass = BY_REASON[reason] ?? BY_CODE[code] ?? CarpetError;
  const retryAfter = error.metadata?.get("retry-after")?.[0];
  return new errorClass(code, reason || grpc.status[code], error.details || error.message,
                        retryAfter ? Number(retryAfter) : undefined);
}
