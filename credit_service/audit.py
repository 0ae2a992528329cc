"""The audit trail: append-only rows chained by SHA-256 so a removed or edited row shows.

`append_audit` must run inside the transaction of the change it records; it locks the chain
head, so concurrent writers (threads or replicas) extend one chain instead of forking it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass

from carpet_common.db import is_postgres
from carpet_common.paging import Page, paginate
from credit_service.models import AuditChainHead, AuditLog, database, utcnow

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    role: str
    action: str
    outcome: str
    organization_id: int | None = None
    target: str = ""
    details: str = "{}"
    peer: str = ""
    request_id: str = ""
    credit_log_id: int | None = None


def row_hash(prev_hash: str, created_at: datetime.datetime, entry: AuditEntry) -> str:
    material = json.dumps(
        [prev_hash, created_at.isoformat(), entry.actor, entry.role, entry.action,
         entry.organization_id, entry.target, entry.details, entry.outcome, entry.peer,
         entry.request_id, entry.credit_log_id],
        separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode()).hexdigest()


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def append_audit(entry: AuditEntry, now: datetime.datetime | None = None) -> AuditLog:
    entry = AuditEntry(**{**entry.__dict__, "actor": _clip(entry.actor),
                          "target": _clip(entry.target), "peer": _clip(entry.peer),
                          "request_id": _clip(entry.request_id)})
    created_at = now or utcnow()
    with database.atomic():
        head_query = AuditChainHead.select().where(AuditChainHead.id == 1)
        if is_postgres(database.obj):
            head_query = head_query.for_update()
        head = head_query.get()
        digest = row_hash(head.last_hash, created_at, entry)
        row = AuditLog.create(
            created_at=created_at, actor=entry.actor, role=entry.role, action=entry.action,
            organization_id=entry.organization_id, target=entry.target, details=entry.details,
            outcome=entry.outcome, peer=entry.peer, request_id=entry.request_id,
            credit_log=entry.credit_log_id, prev_hash=head.last_hash, hash=digest)
        AuditChainHead.update(last_hash=digest).where(AuditChainHead.id == 1).execute()
    return row


def list_audit_logs(page_size: int, page_token: str, *, organization_id: int = 0,
                    actor: str = "", action: str = "",
                    created_after: datetime.datetime | None = None,
                    created_before: datetime.datetime | None = None) -> Page:
    query = AuditLog.select()
    if organization_id:
        query = query.where(AuditLog.organization_id == organization_id)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if action:
        query = query.where(AuditLog.action == action)
    if created_after is not None:
        query = query.where(AuditLog.created_at >= created_after)
    if created_before is not None:
        query = query.where(AuditLog.created_at < created_before)
    return paginate(query, AuditLog.created_at, AuditLog.id, page_size, page_token)


def broken_links(batch_size: int = 5000) -> list[str]:
    """Every place the chain does not verify (invariant 5), oldest first."""
    problems: list[str] = []
    expected_prev = GENESIS_HASH
    last_id = 0
    while True:
        rows = list(AuditLog.select().where(AuditLog.id > last_id)
                    .order_by(AuditLog.id).limit(batch_size))
        if not rows:
            break
        for row in rows:
            entry = AuditEntry(actor=row.actor, role=row.role, action=row.action,
                               outcome=row.outcome, organization_id=row.organization_id,
                               target=row.target, details=row.details, peer=row.peer,
                               request_id=row.request_id, credit_log_id=row.credit_log_id)
            if row.prev_hash != expected_prev:
                problems.append(f"audit_log {row.id}: prev_hash does not match the row before")
            if row_hash(row.prev_hash, row.created_at, entry) != row.hash:
                problems.append(f"audit_log {row.id}: hash does not match its contents")
            expected_prev = row.hash
        last_id = rows[-1].id
    head = AuditChainHead.get_or_none(AuditChainHead.id == 1)
    if head is None or head.last_hash != expected_prev:
        problems.append("audit_chain_head does not point at the newest audit row")
    return problems
