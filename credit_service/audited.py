"""The audited, idempotent unit of work of the credit service's mutating admin calls.

A servicer method hands it the change as a function of its own:

    def adjust(change: Change) -> Message:
        log, after = ledger.adjust_credits(...)   # its atomic() nests as a savepoint
        return change.done(response, target=..., credit_log_id=log.id)

    return audited(request, adjust, who=who_calls(),
                   replay=credit_pb2.AdjustCreditsResponse.FromString,
                   organization_id=request.organization_id)

A retry with a key already used gets the stored answer (`replay`) and the body never runs: no
servicer has to remember to check. Who makes the change (`who`, with the call's method) is passed
in by the servicer: nothing here reads the call's context.

One transaction holds the idempotency key's claim, the change itself, its audit row and the
stored response, so no adjustment can exist without its audit row and a retried key can never
apply a change twice. The key is claimed by inserting its record first: a concurrent call with
the same key waits on that row (PostgreSQL) or on the write lock (SQLite), then sees the first
call's result and replays it. A key belongs to its caller: the same key from another caller
is another key (a stored answer may hold a secret shown once, such as a webhook's signing
secret, and must never be replayed to someone else). A refused attempt (a domain error) is
audited too, in a transaction of its own after the change rolled back.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message
from peewee import IntegrityError

from carpet_common import errors
from carpet_common.calls import Denial, Who
from carpet_common.idempotency import clean_key, request_fingerprint
from credit_service.audit import AuditEntry, append_audit
from credit_service.models import IdempotencyRecord, database

_SECRET_FIELD_HINTS = ("token", "secret", "password", "authorization", "api_key")


def summarize_request(request: Message, relayed_by: str = "") -> str:
    """The request as JSON for the audit row: secrets dropped, bytes reduced to a size; and,
    for a person's call relayed by a service (the gateway), that service's name."""
    summary: dict[str, object] = {}
    for field, value in request.ListFields():
        if any(hint in field.name.lower() for hint in _SECRET_FIELD_HINTS):
            summary[field.name] = "[redacted]"
        elif field.type == field.TYPE_BYTES:
            summary[field.name] = f"<{len(value)} bytes>"
        elif isinstance(value, Message):
            try:
                summary[field.name] = json_format.MessageToDict(value)
            except ValueError:  # e.g. a Timestamp out of range: the refusal is still audited
                summary[field.name] = "<invalid>"
        elif field.is_repeated:
            summary[field.name] = list(value)[:50]
        else:
            summary[field.name] = value if not isinstance(value, str) else value[:500]
    if relayed_by:
        summary["relayed_by"] = relayed_by
    return json.dumps(summary, ensure_ascii=False, sort_keys=True, default=str)


@dataclass
class Change:
    """What the body of `audited` tells: the response of the change it made (stored for a
    retry with the same key) and what the audit row should name."""

    replayed: bytes | None = None  # the stored response of an earlier call with the same key
    response: Message | None = None
    organization_id: int | None = None
    target: str = ""
    credit_log_id: int | None = None

    def done(self, response: Message, *, target: str, organization_id: int | None = None,
             credit_log_id: int | None = None) -> Message:
        self.response = response
        self.target = target
        if organization_id is not None:
            self.organization_id = organization_id
        self.credit_log_id = credit_log_id
        return response


def _audit_entry(request: Message, who: Who, change: Change, outcome: str) -> AuditEntry:
    return AuditEntry(
        actor=who.actor, role=who.role, action=who.method, outcome=outcome,
        organization_id=change.organization_id or None, target=change.target,
        details=summarize_request(request, who.via),
        peer=who.client_ip, request_id=who.request_id,
        credit_log_id=change.credit_log_id, actor_user_id=who.user_id)


def _stored_response(method: str, key: str, fingerprint: str) -> bytes | None:
    record = IdempotencyRecord.get_or_none((IdempotencyRecord.method == method)
                                           & (IdempotencyRecord.key == key))
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise errors.IdempotencyKeyReused(
            "idempotency_key was already used with a different request")
    return bytes(record.response)


def _claim_key(method: str, key: str, fingerprint: str) -> bytes | None:
    """Inside the transaction: None when this call owns the key now, else the first call's
    stored response."""
    stored = _stored_response(method, key, fingerprint)
    if stored is not None:
        return stored
    try:
        with database.atomic():  # a savepoint: losing the race rolls back only the claim
            IdempotencyRecord.create(method=method, key=key, request_hash=fingerprint,
                                     response=b"")
    except IntegrityError:
        # A concurrent call with the same key committed first (we waited for it).
        stored = _stored_response(method, key, fingerprint)
        if stored is None:
            raise
        return stored
    return None


def _keyed_method(who: Who) -> str:
    """The method column of the caller's idempotency records: the method and a digest of who
    calls (role, organisation and name), so each caller's keys are its own."""
    caller = f"{who.role}:{who.organization_id or 0}:{who.actor}"
    return f"{who.method}@{hashlib.sha256(caller.encode()).hexdigest()[:16]}"


def audited(request: Message, body: Callable[[Change], Message], *, who: Who,
            replay: Callable[[bytes], Message] | None = None,
            organization_id: int | None = None, target: str = "",
            own_row: bool = True) -> Message:
    """The unit of work of one audited, idempotent call (see the module's docstring): `body`
    makes the change and answers what `change.done()` returned (or, where the stored answer
    must lack something, such as a secret shown once, its own fuller answer); a call whose key
    was used before gets `replay(stored answer)` instead, and `body` does not run. `replay` is
    needed only by requests with an idempotency key. `organization_id` and `target` name what
    a refused attempt's audit row is about. `own_row=False`: a call whose change is itself an
    audit row (RecordAction) writes no row of its own about the call; it keeps the key's
    claim and replay. `who` names the caller and the call's method."""
    with _unit_of_work(request, who, organization_id, target, own_row) as change:
        if change.replayed is not None:
            if replay is None:
                raise RuntimeError("a stored answer without a way to replay it")
            return replay(change.replayed)
        return body(change)


@contextlib.contextmanager
def _unit_of_work(request: Message, who: Who, organization_id: int | None, target: str,
                  own_row: bool) -> Iterator[Change]:
    method = who.method
    change = Change(organization_id=organization_id, target=target)
    try:
        key = clean_key(getattr(request, "idempotency_key", ""))
        fingerprint = request_fingerprint(request) if key else ""
        keyed_method = _keyed_method(who) if key else ""
        with database.atomic():
            if key:
                change.replayed = _claim_key(keyed_method, key, fingerprint)
            yield change
            if change.replayed is not None:
                return
            if change.response is None:
                raise RuntimeError(f"{method} ended its audited change without done()")
            if own_row:
                append_audit(_audit_entry(request, who, change, "ok"))
            if key:
                (IdempotencyRecord.update(response=change.response.SerializeToString())
                 .where((IdempotencyRecord.method == keyed_method)
                        & (IdempotencyRecord.key == key))
                 .execute())
    except errors.DomainError as error:
        if own_row:
            append_audit(_audit_entry(request, who, change, "error:" + error.grpc_code.name))
        raise


def write_denial(denial: Denial, count: int, methods: Counter[str]) -> None:
    """DenialLog's writer: refused calls (one, or a burst summarised) as one audit row with
    the client IP. It runs before DatabaseConnectionInterceptor (or on the summary timer's
    thread), so it opens a connection when the thread has none, and gives back what it opened."""
    opened = database.connect(reuse_if_open=True)
    details: dict[str, object] = {"error": denial.message}
    if count > 1:
        details.update(count=count, methods=dict(methods.most_common(20)))
    try:
        append_audit(AuditEntry(actor=denial.actor, role=denial.role, action=denial.method,
                                outcome=denial.outcome,
                                details=json.dumps(details, sort_keys=True),
                                peer=denial.client_ip, request_id=denial.request_id))
    finally:
        if opened:
            database.close()
