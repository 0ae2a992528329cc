"""Domain exceptions and the one error map.

Each class carries everything a transport needs to know about it: its gRPC status code, its
HTTP status and the default `google.rpc.ErrorInfo` reason. Every other table is derived from
these classes: the server interceptor's status (`error.grpc_code`), the gateway's HTTP status
(`http_status_for`), the OpenAPI error responses (`HTTP_ERROR_STATUSES`) and the clients'
`RpcError` -> domain error translation (`from_rpc_error`). The message is shown to the caller,
so it must never contain a secret.
"""
from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "carpet.example.com"


class DomainError(Exception):
    """Base of every error a caller is meant to see. `reason` becomes google.rpc.ErrorInfo."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    description: str = "internal error"  # for the OpenAPI document
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    grpc_code, http_status, description = grpc.StatusCode.INVALID_ARGUMENT, 400, "bad input"
    reason = "INVALID_ARGUMENT"


class Unauthenticated(DomainError):
    grpc_code, http_status = grpc.StatusCode.UNAUTHENTICATED, 401
    description = "missing or bad credentials"
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    grpc_code, http_status = grpc.StatusCode.PERMISSION_DENIED, 403
    description = "the caller's role may not do this"
    reason = "PERMISSION_DENIED"


class NotFound(DomainError):
    grpc_code, http_status, description = grpc.StatusCode.NOT_FOUND, 404, "no such resource"
    reason = "NOT_FOUND"


class UserNotFound(NotFound):
    """No such user in the organisation named: a user of another organisation gets the same
    answer as one that does not exist (user ids are sequential; telling them apart lets a
    caller walk every shop's users)."""
    reason = "USER_NOT_FOUND"


class AlreadyExists(DomainError):
    grpc_code, http_status = grpc.StatusCode.ALREADY_EXISTS, 409
    description = "duplicate, or an idempotency key reused with another request"
    reason = "ALREADY_EXISTS"


class IdempotencyKeyReused(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"


class FailedPrecondition(DomainError):
    grpc_code, http_status = grpc.StatusCode.FAILED_PRECONDITION, 412
    description = "not possible in the current state (for example insufficient credits)"
    reason = "FAILED_PRECONDITION"


class InsufficientCredits(FailedPrecondition):
    reason = "INSUFFICIENT_CREDITS"


class SpendLimitReached(FailedPrecondition):
    reason = "SPEND_LIMIT_REACHED"


class OrganizationSuspended(FailedPrecondition):
    reason = "ORGANIZATION_SUSPENDED"


class ResourceExhausted(DomainError):
    grpc_code, http_status = grpc.StatusCode.RESOURCE_EXHAUSTED, 429
    description = "rate limited; see Retry-After"
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: int = 1, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    grpc_code, http_status = grpc.StatusCode.UNAVAILABLE, 503
    description = "a dependency is down; safe to retry"
    reason = "UNAVAILABLE"


# Every class a caller can receive, most specific first (a reason picks a subclass).
ERROR_CLASSES: tuple[type[DomainError], ...] = (
    IdempotencyKeyReused, InsufficientCredits, SpendLimitReached, OrganizationSuspended,
    UserNotFound,
    InvalidArgument, Unauthenticated,
    PermissionDenied, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted,
    Unavailable,
)
_BASES = tuple(cls for cls in ERROR_CLASSES if cls.__bases__ == (DomainError,))
_BY_CODE = {cls.grpc_code: cls for cls in _BASES}
_BY_REASON = {cls.reason: cls for cls in ERROR_CLASSES}
# A deadline that passed on the way to another service is, for our caller, that service
# being unavailable: safe to retry.
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = Unavailable

# The statuses the HTTP API answers errors with, for the OpenAPI document.
HTTP_ERROR_STATUSES: dict[int, str] = {cls.http_status: cls.description for cls in _BASES}


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC status code (500 for anything not in the map)."""
    cls = _BY_CODE.get(code)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return 504
    return cls.http_status if cls is not None else 500


def rpc_error_reason(error: grpc.RpcError) -> str:
    """The google.rpc.ErrorInfo reason a failed call carries ('' when none)."""
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


def from_rpc_error(error: grpc.RpcError) -> DomainError | None:
    """A service's refusal as this process's domain error (same code, reason and message), so
    it can be raised again towards our own caller; None for INTERNAL and other codes outside
    the map (the caller then answers INTERNAL with a generic message)."""
    code = error.code()
    base = _BY_CODE.get(code)
    if base is None:
        return None
    if base is Unavailable:
        return Unavailable("a backend service is unavailable, retry")
    reason = rpc_error_reason(error)
    cls = _BY_REASON.get(reason, base)
    if not issubclass(cls, base):  # a reason that does not belong to the code: keep the code
        cls = base
    message = error.details() or code.name
    if cls is ResourceExhausted:
        trailers = dict(error.trailing_metadata() or ())
        try:
            retry_after = int(trailers.get("retry-after", "1"))
        except ValueError:
            retry_after = 1
        return ResourceExhausted(message, retry_after_s=retry_after, reason=reason or None)
    return cls(message, reason=reason or None)
