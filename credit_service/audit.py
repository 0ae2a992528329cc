"""The audit trail: append-only rows chained by HMAC-SHA256, keyed with AUDIT_HMAC_KEY.

Each row stores the hash of the row before it and its own hash, an HMAC over its contents and
that previous hash. The chain head (one row) holds the newest hash and a seal, an HMAC of that
hash. The key lives outside the database, so whoever can write the database but does not have
the key cannot edit a row, remove one, re-chain the rows after an edit or cut the newest rows off
without `verify` seeing it (a cut would need the seal of an older head).

`append_audit` must run inside the transaction of the change it records; it locks the chain
head, so concurrent writers (threads or replicas) extend one chain instead of forking it.

The key is set once per process at start (`use_key`), like the database behind the models.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from dataclasses import dataclass

from carpet_common import sources
from carpet_common.db import is_postgres
from carpet_common.paging import Page, paginate
from credit_service.models import AuditChainHead, AuditLog, database

GENESIS_HASH = "0" * 64
_key: bytes | None = None


class AuditKeyMissing(RuntimeError):
    """The process was started without AUDIT_HMAC_KEY; it must not write or judge the chain."""


def use_key(key: bytes) -> None:
    global _key
    _key = key


def _current_key() -> bytes:
    if _key is None:
        raise AuditKeyMissing("AUDIT_HMAC_KEY is not set")
    return _key


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
    actor_user_id: int | None = None  # a signed-in person's user id


def _material(prev_hash: str, created_at: datetime.datetime, entry: AuditEntry) -> bytes:
    fields = [prev_hash, created_at.isoformat(), entry.actor, entry.role, entry.action,
              entry.organization_id, entry.target, entry.details, entry.outcome, entry.peer,
              entry.request_id, entry.credit_log_id]
    if entry.actor_user_id is not None:  # only then: rows written before it keep their hash
        fields.append(entry.actor_user_id)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str, created_at: datetime.datetime, entry: AuditEntry) -> str:
    return hmac.new(_current_key(), _material(prev_hash, created_at, entry),
                    hashlib.sha256).hexdigest()


def _unkeyed_row_hash(prev_hash: str, created_at: datetime.datetime, entry: AuditEntry) -> str:
    """How rows were hashed before the chain was keyed (read only by `seal_chain`)."""
    return hashlib.sha256(_material(prev_hash, created_at, entry)).hexdigest()


def head_seal(last_hash: str) -> str:
    return hmac.new(_current_key(), b"head:" + last_hash.encode(), hashlib.sha256).hexdigest()


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _locked_head() -> AuditChainHead:
    query = AuditChainHead.select().where(AuditChainHead.id == 1)
    if is_postgres(database.obj):
        query = query.for_update()
    return query.get()


def append_audit(entry: AuditEntry, now: datetime.datetime | None = None) -> AuditLog:
    entry = AuditEntry(**{**entry.__dict__, "actor": _clip(entry.actor),
                          "target": _clip(entry.target), "peer": _clip(entry.peer),
                          "request_id": _clip(entry.request_id)})
    created_at = now or sources.now()
    with database.atomic():
        head = _locked_head()
        digest = row_hash(head.last_hash, created_at, entry)
        row = AuditLog.create(
            created_at=created_at, actor=entry.actor, role=entry.role, action=entry.action,
            organization_id=entry.organization_id, target=entry.target, details=entry.details,
            outcome=entry.outcome, peer=entry.peer, request_id=entry.request_id,
            credit_log=entry.credit_log_id, actor_user_id=entry.actor_user_id,
            prev_hash=head.last_hash, hash=digest)
        (AuditChainHead.update(last_hash=digest, seal=head_seal(digest))
         .where(AuditChainHead.id == 1).execute())
    return row


def _entry(row: AuditLog) -> AuditEntry:
    return AuditEntry(actor=row.actor, role=row.role, action=row.action, outcome=row.outcome,
                      organization_id=row.organization_id, target=row.target,
                      details=row.details, peer=row.peer, request_id=row.request_id,
                      credit_log_id=row.credit_log_id, actor_user_id=row.actor_user_id)


def _rows_in_order(batch_size: int = 5000):
    last_id = 0
    while True:
        rows = list(AuditLog.select().where(AuditLog.id > last_id)
                    .order_by(AuditLog.id).limit(batch_size))
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


class ChainBroken(RuntimeError):
    """The unkeyed chain did not verify: it is not keyed over a log that may be forged."""


def seal_chain() -> bool:
    """Key the chain once: a database whose head has no seal yet (new, or written before the
    chain was keyed) gets one; its existing rows, after their unkeyed chain verified, are
    re-chained with the key. Idempotent and safe with replicas (the head is locked). Returns
    whether anything changed. Re-chaining rewrites audit_log rows, so it needs a role that may
    UPDATE them (`python -m credit_service migrate`, as the schema's owner)."""
    with database.atomic():
        head = _locked_head()
        if head.seal:
            return False
        expected_prev = GENESIS_HASH
        rows = list(_rows_in_order())
        for row in rows:
            if row.prev_hash != expected_prev or \
                    _unkeyed_row_hash(row.prev_hash, row.created_at, _entry(row)) != row.hash:
                raise ChainBroken(f"audit_log {row.id} does not verify; the chain is not keyed")
            expected_prev = row.hash
        if head.last_hash != expected_prev:
            raise ChainBroken("audit_chain_head does not point at the newest audit row")
        prev = GENESIS_HASH
        for row in rows:
            digest = row_hash(prev, row.created_at, _entry(row))
            AuditLog.update(prev_hash=prev, hash=digest).where(AuditLog.id == row.id).execute()
            prev = digest
        (AuditChainHead.update(last_hash=prev, seal=head_seal(prev))
         .where(AuditChainHead.id == 1).execute())
    return True


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


def broken_links() -> list[str]:
    """Every place the keyed chain does not verify (invariant 5), oldest first."""
    problems: list[str] = []
    expected_prev = GENESIS_HASH
    for row in _rows_in_order():
        if row.prev_hash != expected_prev:
            problems.append(f"audit_log {row.id}: prev_hash does not match the row before")
        if not hmac.compare_digest(row_hash(row.prev_hash, row.created_at, _entry(row)),
                                   row.hash):
            problems.append(f"audit_log {row.id}: hash does not match its contents")
        expected_prev = row.hash
    head = AuditChainHead.get_or_none(AuditChainHead.id == 1)
    if head is None or head.last_hash != expected_prev:
        problems.append("audit_chain_head does not point at the newest audit row")
    elif not head.seal:
        problems.append("audit chain is not keyed yet (python -m credit_service migrate)")
    elif not hmac.compare_digest(head_seal(head.last_hash), head.seal):
        problems.append("audit_chain_head seal does not match: rows were cut off or the head "
                        "was rewritten")
    return problems
