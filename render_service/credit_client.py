"""The render service's client of the credit service: one channel per process, a deadline on
every call, retries on UNAVAILABLE with the same request (every call here is idempotent: a
reserve by its reference, a capture or release by its hold id), and credit errors translated
into this service's domain exceptions."""
from __future__ import annotations

import logging
import time

import grpc

from carpet_common import errors
from carpet_common.interceptors import error_reason
from carpet_common.logs import request_id_var
from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc

logger = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def hold_reference(job_id: int) -> str:
    """The hold of a render job is found by this reference (one hold per job)."""
    return f"render-job:{job_id}"


class CreditClient:
    def __init__(self, channel: grpc.Channel, *, timeout_s: float = 5.0, attempts: int = 4,
                 backoff_s: float = 0.2):
        self._stub = credit_pb2_grpc.CreditServiceStub(channel)
        self._timeout = timeout_s
        self._attempts = attempts
        self._backoff = backoff_s

    def reserve(self, organization_id: int, amount: int, job_id: int, ttl_seconds: int,
                user_id: int | None) -> credit_pb2.Hold:
        return self._call(self._stub.ReserveCredits, credit_pb2.ReserveCreditsRequest(
            organization_id=organization_id, amount=amount, reference=hold_reference(job_id),
            ttl_seconds=ttl_seconds, user_id=user_id or 0))

    def capture(self, hold_id: int) -> credit_pb2.CaptureHoldResponse:
        return self._call(self._stub.CaptureHold, credit_pb2.CaptureHoldRequest(hold_id=hold_id))

    def release(self, hold_id: int, reason: str) -> credit_pb2.Hold:
        return self._call(self._stub.ReleaseHold,
                          credit_pb2.ReleaseHoldRequest(hold_id=hold_id, reason=reason))

    def _call(self, method, request):
        metadata = (("x-request-id", request_id_var.get()),)
        for attempt in range(1, self._attempts + 1):
            try:
                return method(request, timeout=self._timeout, metadata=metadata)
            except grpc.RpcError as error:
                if error.code() not in RETRYABLE:
                    raise _translate(error) from None
                if attempt == self._attempts:
                    raise errors.Unavailable("credit service unavailable, retry") from None
                logger.warning("credit service %s (attempt %d), retrying",
                               error.code().name, attempt)
                time.sleep(self._backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _translate(error: grpc.RpcError) -> Exception:
    code, reason, message = error.code(), error_reason(error), error.details() or ""
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        if reason == "INSUFFICIENT_CREDITS":
            return errors.InsufficientCredits("not enough credit for this render")
        return errors.FailedPrecondition(message, reason=reason or None)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(message)
    return error
