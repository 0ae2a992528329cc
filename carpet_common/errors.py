"""Domain exceptions raised by the service layers; `ErrorMappingInterceptor` turns them into
gRPC status codes (one table, in carpet_common.interceptors). The message is shown to the
caller, so it must never contain a secret."""
from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller is meant to see. `reason` becomes google.rpc.ErrorInfo."""

    reason: str = ""

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class IdempotencyKeyReused(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class InsufficientCredits(FailedPrecondition):
    reason = "INSUFFICIENT_CREDITS"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: int = 1, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    reason = "UNAVAILABLE"
