"""Credit grants (`docs/data-rules.md`): paid and promotional credit, with a priority, a start
and an expiry, spent in the documented order (ledger_sql.SPEND_ORDER).

The ledger's hot statements draw from grants (ledger_sql.draw, spend_draws, return_draws,
consume); this module creates grants, expires them, and reads them. Every change here runs in a
transaction that has first locked the organisation's balance row, like the ledger's, so one
organisation's grants change one transaction at a time, across threads and replicas.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from carpet_common.db import Statement, require_transaction, tuples
from carpet_common.errors import InvalidArgument
from credit_service.ledger_sql import SPEND_ORDER
from credit_service.models import (
    GRANT_KINDS,
    CreditBalance,
    CreditGrant,
    CreditLog,
    database,
)

EXPIRING_SOON = datetime.timedelta(days=30)
MAX_PRIORITY = 2**31 - 1
EXPIRE_REASON = "grant expired"  # the sweeper's row: once per grant
RETURNED_REASON = "returned to an expired grant"  # a hold ended after its grant expired


@dataclass(frozen=True)
class GrantTerms:
    kind: str = "paid"
    priority: int = 0
    effective_at: datetime.datetime | None = None  # None: now
    expires_at: datetime.datetime | None = None  # None: never


def check_terms(terms: GrantTerms, now: datetime.datetime) -> GrantTerms:
    if terms.kind not in GRANT_KINDS:
        raise InvalidArgument("kind must be GRANT_KIND_PAID or GRANT_KIND_PROMOTIONAL")
    if not -MAX_PRIORITY <= terms.priority <= MAX_PRIORITY:
        raise InvalidArgument("priority is out of range")
    effective_at = terms.effective_at or now
    if terms.expires_at is not None:
        if terms.expires_at <= now:
            raise InvalidArgument("expires_at must be in the future")
        if terms.expires_at <= effective_at:
            raise InvalidArgument("expires_at must be after effective_at")
    return GrantTerms(terms.kind, terms.priority, effective_at, terms.expires_at)


def add_grant(organization_id: int, amount: int, terms: GrantTerms, *, reason: str,
              reference: str, now: datetime.datetime) -> CreditGrant:
    """Inside the caller's transaction, after it raised the balance by `amount`."""
    require_transaction(database)
    return CreditGrant.create(
        organization=organization_id, kind=terms.kind, amount=amount, remaining=amount, held=0,
        priority=terms.priority, effective_at=terms.effective_at or now,
        expires_at=terms.expires_at, reason=reason, reference=reference, created_at=now)


def lapse(organization_id: int, lapsed: list[tuple[int, int]], now: datetime.datetime,
          reason: str = RETURNED_REASON, actor: str = "credit-service") -> None:
    """Inside the caller's transaction (balance row locked): amounts that expired with their
    grants leave the balance, each with its `expire` row naming the grant."""
    require_transaction(database)
    for grant_id, amount in lapsed:
        if amount <= 0:
            continue
        (balance_after,) = (CreditBalance.update(balance=CreditBalance.balance - amount,
                                                 updated_at=now)
                            .where(CreditBalance.organization == organization_id)
                            .returning(CreditBalance.balance).tuples().execute())[0]
        CreditLog.create(organization=organization_id, grant=grant_id, delta=-amount,
                         balance_after=balance_after, kind="expire", reason=reason,
                         reference=f"grant:{grant_id}", actor=actor, created_at=now)


def _lock_balance(organization_id: int, now: datetime.datetime) -> None:
    (CreditBalance.update(updated_at=now)
     .where(CreditBalance.organization == organization_id).execute())


def expire_grants(now: datetime.datetime, limit: int = 500) -> int:
    """The sweeper: expire every grant past its `expires_at`, one transaction per organisation;
    what was spendable in it leaves the balance with an `expire` row. A replica that loses the
    race finds the grant already expired (its conditional UPDATE changes nothing): each grant
    is expired once. Returns the credits expired."""
    organization_ids = [row[0] for row in
                        tuples(CreditGrant.select(CreditGrant.organization).distinct()
                               .where(CreditGrant.expired_at.is_null()
                                      & (CreditGrant.expires_at <= now))
                               .limit(limit))]
    total = 0
    for organization_id in organization_ids:
        with database.atomic():
            total += _expire_due(organization_id, now)
    return total


def _expire_due(organization_id: int, now: datetime.datetime) -> int:
    """Inside a transaction: expire this organisation's grants past their `expires_at`; the
    credits that left its balance."""
    _lock_balance(organization_id, now)
    due = list(CreditGrant.select(CreditGrant.id, CreditGrant.remaining, CreditGrant.held)
               .where((CreditGrant.organization == organization_id)
                      & CreditGrant.expired_at.is_null()
                      & (CreditGrant.expires_at <= now))
               .order_by(CreditGrant.id))
    lapsed = []
    for grant in due:
        if (CreditGrant.update(expired_at=now, remaining=CreditGrant.held)
                .where((CreditGrant.id == grant.id) & CreditGrant.expired_at.is_null())
                .execute()):
            lapsed.append((grant.id, grant.remaining - grant.held))
    lapse(organization_id, lapsed, now, EXPIRE_REASON)
    return sum(amount for _, amount in lapsed)


@dataclass(frozen=True)
class GrantView:
    id: int
    kind: str
    amount: int
    remaining: int
    held: int
    priority: int
    effective_at: datetime.datetime
    expires_at: datetime.datetime | None
    reason: str
    created_at: datetime.datetime


def _view(row: CreditGrant) -> GrantView:
    return GrantView(row.id, row.kind, row.amount, row.remaining, row.held, row.priority,
                     row.effective_at, row.expires_at, row.reason, row.created_at)


# GetBalance's read, on every call: written once as SQL (carpet_common.db.Statement).
_LIVE = Statement(f"""
    SELECT id, kind, amount, remaining, held, priority, effective_at, expires_at, reason,
           created_at
    FROM credit_grant
    WHERE organization_id = {{organization_id}} AND expired_at IS NULL AND remaining > 0
    ORDER BY {SPEND_ORDER}""")
# driver value -> naive UTC datetime
_as_time: Callable[[object], datetime.datetime] = CreditGrant.created_at.python_value


def live_grants(organization_id: int) -> list[GrantView]:
    """The grants that make up the balance (not expired, something left), in spending order."""
    return [GrantView(row.id, row.kind, row.amount, row.remaining, row.held, row.priority,
                      _as_time(row.effective_at),
                      _as_time(row.expires_at) if row.expires_at is not None else None,
                      row.reason, _as_time(row.created_at))
            for row in _LIVE.rows(database, organization_id=organization_id)]


# "Expiring within 30 days", the one definition (balances, organisation lists, totals): the
# spendable credit (left and not held) of grants not yet expired that expire by {soon}.
_EXPIRING = """
    SELECT organization_id, SUM(remaining - held) AS expiring FROM credit_grant
    WHERE expired_at IS NULL AND expires_at IS NOT NULL AND expires_at <= {soon}
      AND remaining > held"""
_EXPIRING_ALL = Statement(f"{_EXPIRING} GROUP BY organization_id")
_EXPIRING_ONE = Statement(f"{_EXPIRING} AND organization_id = {{organization_id}} "
                          "GROUP BY organization_id")


def expiring_soon(now: datetime.datetime, organization_ids: list[int] | None = None
                  ) -> dict[int, int]:
    """Per organisation: spendable credit whose grant expires within 30 days (organisations
    without any are left out). Written once as SQL: GetBalance asks on every call."""
    soon = CreditGrant.expires_at.db_value(now + EXPIRING_SOON)  # as the column keeps it
    if organization_ids is not None and len(organization_ids) == 1:
        rows = _EXPIRING_ONE.rows(database, soon=soon, organization_id=organization_ids[0])
    else:
        wanted = None if organization_ids is None else set(organization_ids)
        rows = [row for row in _EXPIRING_ALL.rows(database, soon=soon)
                if wanted is None or row.organization_id in wanted]
    return {row.organization_id: int(row.expiring) for row in rows}
