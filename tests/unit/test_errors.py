"""The one error map: every class carries its gRPC code, HTTP status and reason, and the other
tables (HTTP statuses, OpenAPI responses, RpcError -> domain error) are derived from it."""
import grpc
import pytest

from admin_gateway.openapi import ERROR_STATUSES
from carpet_common import errors


@pytest.mark.parametrize("cls, code, status, reason", [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, 400, "INVALID_ARGUMENT"),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, 409, "ALREADY_EXISTS"),
    (errors.IdempotencyKeyReused, grpc.StatusCode.ALREADY_EXISTS, 409,
     "IDEMPOTENCY_KEY_REUSED"),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, 412,
     "FAILED_PRECONDITION"),
    (errors.InsufficientCredits, grpc.StatusCode.FAILED_PRECONDITION, 412,
     "INSUFFICIENT_CREDITS"),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "RATE_LIMITED"),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE, 503, "UNAVAILABLE"),
])
def test_each_class_carries_its_code_status_and_reason(cls, code, status, reason):
    error = cls("message")
    assert (error.grpc_code, error.http_status, error.reason) == (code, status, reason)
    assert errors.http_status_for(code) == status


def test_derived_tables():
    assert errors.http_status_for(grpc.StatusCode.INTERNAL) == 500
    assert errors.http_status_for(grpc.StatusCode.DEADLINE_EXCEEDED) == 504
    assert sorted(ERROR_STATUSES) == ["400", "401", "403", "404", "409", "412", "429", "503"]
    assert ERROR_STATUSES["412"] == errors.FailedPrecondition.description


def test_a_long_message_is_cut_to_fit_the_trailers():
    """A message quoting a caller's long input travels twice in the trailers (grpc-message and
    the status details), which a client refuses above 16 KiB: it is cut, and says so."""
    from carpet_common.interceptors import MAX_MESSAGE_CHARS, error_status

    status = error_status(errors.InvalidArgument("x" * 20_000))
    assert status.details == "x" * (MAX_MESSAGE_CHARS - 1) + "…"
    assert sum(len(str(value)) for _, value in status.trailing_metadata) < 16 * 1024
    short = error_status(errors.InvalidArgument("name must be 1..200 characters"))
    assert short.details == "name must be 1..200 characters"
