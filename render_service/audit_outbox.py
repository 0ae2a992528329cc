"""Audit entries of the changes made in the render database (a cancel, a new carpet), by
whoever calls: a person through the gateway, a person or a backend directly on the render port.

The entry is written to `render_audit` in the transaction of the change (`record`), so a
change never exists without its entry, even when the credit service, which owns the audit
chain, is down. The relay hands each entry to the credit service (`RecordAction`, with the
entry's random key as idempotency key: a relay that lost an answer, or two replicas relaying
the same entry, write one audit row) and deletes what was recorded. A refused attempt is
recorded too, in a transaction of its own.
"""
from __future__ import annotations

import json
import uuid

from carpet_common.calls import current_call, current_principal
from carpet_common.periodic import Periodic
from protos.carpet.credit.v1 import audit_pb2
from render_service.credit_client import CreditClient
from render_service.events import outbox_relay
from render_service.models import RenderAudit

RELAY_INTERVAL_S = 0.5
BATCH = 100


def record(action: str, *, outcome: str, organization_id: int | None, target: str,
           details: dict, now) -> None:
    """The calling person's or service's entry for `action` (a full gRPC method name)."""
    principal, call = current_principal(), current_call()
    details = dict(details)
    if principal.via:
        details["relayed_by"] = principal.via
    RenderAudit.create(
        key=uuid.uuid4().hex, actor=principal.actor[:320], actor_user_id=principal.user_id,
        role=principal.role,
        action=action, outcome=outcome, organization_id=organization_id, target=target,
        details=json.dumps(details, sort_keys=True), peer=call.client_ip[:100],
        request_id=call.request_id[:100], occurred_at=now)


def relay_once(credit: CreditClient) -> int:
    """Record up to BATCH entries in the credit service's audit log, oldest first; how many."""
    pending = list(RenderAudit.select().order_by(RenderAudit.id).limit(BATCH))
    for entry in pending:
        credit.record_action(audit_pb2.RecordActionRequest(
            actor=entry.actor, actor_user_id=entry.actor_user_id or 0, role=entry.role,
            action=entry.action, outcome=entry.outcome,
            organization_id=entry.organization_id or 0, target=entry.target,
            details=entry.details, peer=entry.peer, request_id=entry.request_id,
            idempotency_key=f"render-audit:{entry.key}"))
        RenderAudit.delete().where(RenderAudit.id == entry.id).execute()
    return len(pending)


def audit_relay(credit: CreditClient, interval_s: float = RELAY_INTERVAL_S) -> Periodic:
    return outbox_relay("render-audit-relay", lambda: relay_once(credit), BATCH, interval_s)
