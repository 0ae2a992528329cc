"""Audit entries of the changes made in the render database (a cancel, a new carpet), by
whoever calls: a person through the gateway, a person or a backend directly on the render port,
or the demo catalogue `make run` seeds (SEED). Who made the change is passed in (`Who`, taken
from the call by the servicer): the domain code never reads the call's context.

The entry is written to `render_audit` in the transaction of the change (`record`), so a
change never exists without its entry, even when the credit service, which owns the audit
chain, is down. The relay hands each entry to the credit service (`RecordAction`, with the
entry's random key as idempotency key: a relay that lost an answer, or two replicas relaying
the same entry, write one audit row) and deletes what was recorded. A refused attempt is
recorded too, in a transaction of its own.
"""
from __future__ import annotations

import json

from carpet_common import sources
from carpet_common.calls import Who
from carpet_common.periodic import Periodic
from protos.carpet.credit.v1 import audit_pb2
from render_service.credit_client import CreditClient
from render_service.events import outbox_relay
from render_service.models import RenderAudit, database

RELAY_INTERVAL_S = 0.5
BATCH = 100


CANCEL = "/carpet.render.v1.RenderService/CancelRender"
CREATE_CARPET = "/carpet.render.v1.RenderService/CreateCarpet"
UPDATE_CARPET = "/carpet.render.v1.RenderService/UpdateCarpet"
ARCHIVE_CARPET = "/carpet.render.v1.RenderService/ArchiveCarpet"
RESTORE_CARPET = "/carpet.render.v1.RenderService/RestoreCarpet"
IMPORT_CARPETS = "/carpet.render.v1.RenderService/ImportCarpets"
CREATE_PUBLISHABLE_KEY = "/carpet.render.v1.RenderService/CreatePublishableKey"
UPDATE_PUBLISHABLE_KEY = "/carpet.render.v1.RenderService/UpdatePublishableKey"
ROTATE_PUBLISHABLE_KEY = "/carpet.render.v1.RenderService/RotatePublishableKey"
REVOKE_PUBLISHABLE_KEY = "/carpet.render.v1.RenderService/RevokePublishableKey"
REVOKE_SHARE = "/carpet.render.v1.RenderService/RevokeShare"
UPDATE_LEAD = "/carpet.render.v1.RenderService/UpdateLead"
EXPORT_PERSONAL_DATA = "/carpet.render.v1.RenderService/ExportPersonalData"
ERASE_PERSONAL_DATA = "/carpet.render.v1.RenderService/ErasePersonalData"
SET_SHOP_LOGO = "/carpet.render.v1.RenderService/SetShopLogo"
DELETE_SHOP_LOGO = "/carpet.render.v1.RenderService/DeleteShopLogo"


SEED = Who(actor="seed", role="SERVICE")  # the demo catalogue of `make run`


def record(action: str, who: Who, *, outcome: str, organization_id: int | None, target: str,
           details: dict, now) -> None:
    """`who`'s entry for `action` (a full gRPC method name), in the caller's transaction."""
    details = dict(details)
    if who.via:
        details["relayed_by"] = who.via
    RenderAudit.create(
        key=sources.unique_hex(), actor=who.actor[:320], actor_user_id=who.user_id, role=who.role,
        action=action, outcome=outcome, organization_id=organization_id, target=target,
        details=json.dumps(details, sort_keys=True), peer=who.client_ip[:100],
        request_id=who.request_id[:100], occurred_at=now)


def record_refusal(action: str, who: Who, error_code: str, target: str,
                   organization_id: int | None, details: dict, now) -> None:
    """A refused change, in a transaction of its own."""
    with database.atomic():
        record(action, who, outcome=f"error:{error_code}", organization_id=organization_id,
               target=target, details=details, now=now)


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
