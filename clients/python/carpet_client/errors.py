"""Typed errors: a failed call becomes the exception of its google.rpc.ErrorInfo reason (or of
its status code when it carries none), so callers catch what they mean:

    try:
        job = client.submit_and_wait(...)
    except InsufficientCredits:
        ...
"""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class CarpetError(Exception):
    """Any refusal of the services: `code` (grpc.StatusCode), `reason` (ErrorInfo), message."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 retry_after_s: int | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.retry_after_s = retry_after_s


class InvalidArgument(CarpetError):
    pass


class NotFound(CarpetError):
    pass


class AlreadyExists(CarpetError):
    pass


class IdempotencyKeyReused(AlreadyExists):
    pass


class FailedPrecondition(CarpetError):
    pass


class InsufficientCredits(FailedPrecondition):
    pass


class SpendLimitReached(FailedPrecondition):
    pass


class OrganizationSuspended(FailedPrecondition):
    pass


class RenderNotReady(FailedPrecondition):
    pass


class Unauthenticated(CarpetError):
    pass


class PermissionDenied(CarpetError):
    pass


class RateLimited(CarpetError):
    """Too many calls: wait `retry_after_s` seconds."""


class Unavailable(CarpetError):
    """A service is down or restarting: safe to retry (the client already did, for calls that
    can be repeated)."""


BY_REASON = {
    "INSUFFICIENT_CREDITS": InsufficientCredits,
    "SPEND_LIMIT_REACHED": SpendLimitReached,
    "ORGANIZATION_SUSPENDED": OrganizationSuspended,
    "RENDER_NOT_READY": RenderNotReady,
    "IDEMPOTENCY_KEY_REUSED": IdempotencyKeyReused,
}
BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def reason_of(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def typed(error: grpc.RpcError) -> CarpetError:
    """The CarpetError subclass for a failed call (CarpetError itself for INTERNAL and the
    like)."""
    code, reason = error.code(), reason_of(error)
    cls = BY_REASON.get(reason) or BY_CODE.get(code, CarpetError)
    retry_after = None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailers = dict(error.trailing_metadata() or ())
        retry_after = int(trailers["retry-after"]) if trailers.get("retry-after", "").isdigit() \
            else None
    return cls(code, reason or code.name, error.details() or code.name, retry_after)
