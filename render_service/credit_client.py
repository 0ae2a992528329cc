"""The render service's client of the credit service: one channel per process, a deadline on
every call, and credit errors turned into this service's domain exceptions (the one error map,
`carpet_common.errors.from_rpc_error`).

Retries are the channel's configuration, not loops here: every call of this client is
idempotent (a reserve by its reference, a capture or release by its hold), so the service config
retries them on UNAVAILABLE with backoff, within the call's deadline.
"""
from __future__ import annotations

import json

import grpc

from carpet_common import errors
from carpet_common.logs import request_id_var
from protos.carpet.credit.v1 import (
    account_pb2,
    account_pb2_grpc,
    audit_pb2_grpc,
    credit_pb2,
    credit_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)

CREDIT_SERVICE = "carpet.credit.v1.CreditService"
CALL_TIMEOUT_S = 5.0
# gRPC's retry policy (gRFC A6) for the hold cycle; attempts share the call's deadline.
RETRY_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": CREDIT_SERVICE, "method": method}
             for method in ("ReserveCredits", "CaptureHold", "ReleaseHold")],
    "retryPolicy": {
        "maxAttempts": 4,
        "initialBackoff": "0.2s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    },
}]})


def hold_reference(job_id: int) -> str:
    """The hold of a render job is found by this reference (one hold per job)."""
    return f"render-job:{job_id}"


class CreditClient:
    def __init__(self, channel: grpc.Channel, *, timeout_s: float = CALL_TIMEOUT_S):
        self._stub = credit_pb2_grpc.CreditServiceStub(channel)
        self._notifications = notification_pb2_grpc.NotificationServiceStub(channel)
        self._audit = audit_pb2_grpc.AuditServiceStub(channel)
        self._accounts = account_pb2_grpc.AccountServiceStub(channel)
        self._timeout = timeout_s

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

    def release_by_reference(self, organization_id: int, job_id: int,
                             reason: str) -> credit_pb2.Hold:
        """Release the job's hold when its id is not known here (the submission's answer was
        lost); NotFound when no hold with the job's reference exists."""
        return self._call(self._stub.ReleaseHold, credit_pb2.ReleaseHoldRequest(
            organization_id=organization_id, reference=hold_reference(job_id), reason=reason))

    def publish_render_events(self, events) -> int:
        """Hand finished jobs' events to the credit service (render_service.events)."""
        return self._call(self._notifications.PublishRenderEvents,
                          notification_pb2.PublishRenderEventsRequest(events=events)).recorded

    def organization_name(self, organization_id: int) -> str:
        """The organisation's name (a share link's page shows it)."""
        return self._call(self._accounts.GetOrganization, account_pb2.GetOrganizationRequest(
            id=organization_id)).name

    def record_action(self, request):
        """Write an entry of the render service's audit outbox to the audit chain."""
        return self._call(self._audit.RecordAction, request)

    def _call(self, method, request):
        metadata = (("x-request-id", request_id_var.get()),)
        try:
            return method(request, timeout=self._timeout, metadata=metadata)
        except grpc.RpcError as error:
            translated = errors.from_rpc_error(error)
            if translated is None:
                raise
            if isinstance(translated, errors.Unavailable):
                raise errors.Unavailable("credit service unavailable, retry") from None
            raise translated from None
