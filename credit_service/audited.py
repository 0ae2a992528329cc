"""The audit and idempotency wrapper of the credit service's mutating admin calls.

Around each such call it opens one transaction that holds: the idempotency look-up, the change
itself (the servicer's behaviour), its audit row and the idempotency record. So no adjustment can
exist without its audit row, and a retried key can never apply a change twice. Failed attempts
are audited too, in a transaction of their own (the change itself rolled back).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message
from peewee import IntegrityError

from carpet_common import errors
from carpet_common.calls import Denial, current_call, current_principal
from carpet_common.interceptors import BehaviourInterceptor, status_code_for
from credit_service.audit import AuditEntry, append_audit
from credit_service.models import IdempotencyRecord, database

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 200
_SECRET_FIELD_HINTS = ("token", "secret", "password", "authorization", "api_key")


@dataclass(frozen=True)
class AuditSpec:
    """How to audit one method: the response type (to replay stored results), the affected
    organisation and target, and the credit-log row it wrote (for invariant 3)."""

    response_type: type[Message]
    organization_id: Callable[[Message, Message | None], int | None]
    target: Callable[[Message, Message | None], str]
    credit_log_id: Callable[[Message], int | None] = lambda response: None


def summarize_request(request: Message) -> str:
    """The request as JSON for the audit row: secrets dropped, bytes reduced to a size."""
    summary = {}
    for field, value in request.ListFields():
        if any(hint in field.name.lower() for hint in _SECRET_FIELD_HINTS):
            summary[field.name] = "[redacted]"
        elif field.type == field.TYPE_BYTES:
            summary[field.name] = f"<{len(value)} bytes>"
        elif isinstance(value, Message):
            summary[field.name] = json_format.MessageToDict(value)
        elif field.is_repeated:
            summary[field.name] = list(value)[:50]
        else:
            summary[field.name] = value if not isinstance(value, str) else value[:500]
    return json.dumps(summary, ensure_ascii=False, sort_keys=True, default=str)


def request_fingerprint(request: Message) -> str:
    """Hash of the request without its idempotency key: same key + same request = replay."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def record_denial(denial: Denial) -> None:
    """AuthInterceptor's hook: refused admin attempts are audited with the client IP. It runs
    before DatabaseConnectionInterceptor, so it takes the thread's connection the same way."""
    database.connect(reuse_if_open=True)
    append_audit(AuditEntry(actor=denial.actor, role=denial.role, action=denial.method,
                            outcome=denial.outcome,
                            details=json.dumps({"error": denial.message}),
                            peer=denial.client_ip, request_id=denial.request_id))


class AuditInterceptor(BehaviourInterceptor):
    def __init__(self, specs: dict[str, AuditSpec]):
        self._specs = specs

    def wrap(self, behaviour, call_details, streaming):
        spec = self._specs.get(call_details.method)
        if spec is None or streaming:
            return behaviour
        method = call_details.method

        def entry_for(request, response, outcome: str) -> AuditEntry:
            call, principal = current_call(), current_principal()
            return AuditEntry(
                actor=principal.actor if principal else "anonymous",
                role=principal.role if principal else "", action=method, outcome=outcome,
                organization_id=spec.organization_id(request, response) or None,
                target=spec.target(request, response), details=summarize_request(request),
                peer=call.client_ip, request_id=call.request_id,
                credit_log_id=spec.credit_log_id(response) if response is not None else None)

        def replay(request, key: str, fingerprint: str):
            record = IdempotencyRecord.get_or_none((IdempotencyRecord.method == method)
                                                   & (IdempotencyRecord.key == key))
            if record is None:
                return None
            if record.request_hash != fingerprint:
                raise errors.IdempotencyKeyReused(
                    "idempotency_key was already used with a different request")
            return spec.response_type.FromString(bytes(record.response))

        def attempt(request, context, key: str, fingerprint: str):
            with database.atomic():
                if key:
                    previous = replay(request, key, fingerprint)
                    if previous is not None:
                        return previous
                response = behaviour(request, context)
                append_audit(entry_for(request, response, "ok"))
                if key:
                    IdempotencyRecord.create(method=method, key=key, request_hash=fingerprint,
                                             response=response.SerializeToString())
                return response

        def unary(request, context):
            key = request.idempotency_key.strip()
            try:
                if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                    raise errors.InvalidArgument(
                        f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
                fingerprint = request_fingerprint(request)
                try:
                    return attempt(request, context, key, fingerprint)
                except IntegrityError:
                    if not key:
                        raise
                    # A concurrent call with the same key committed first: answer as a replay.
                    previous = replay(request, key, fingerprint)
                    if previous is None:
                        raise
                    return previous
            except errors.DomainError as error:
                outcome = "error:" + status_code_for(error).name
                append_audit(entry_for(request, None, outcome))
                raise

        return unary
