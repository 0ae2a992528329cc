"""Balances, adjustments and the hold cycle (reserve -> capture | release | expire).

Every balance change is a single conditional UPDATE whose row count says whether it happened,
in one transaction with its credit-log row. No read-modify-write in Python, so concurrent
callers (threads or replicas) cannot overspend.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from peewee import IntegrityError, fn

from carpet_common.errors import FailedPrecondition, InsufficientCredits, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from credit_service.models import (
    CREDIT_LOG_KINDS,
    CreditBalance,
    CreditHold,
    CreditLog,
    Organization,
    database,
)

MAX_REASON_LENGTH = 500
MAX_REFERENCE_LENGTH = 200
MAX_ADJUSTMENT = 10**12
MAX_RESERVATION = 10**12
DEFAULT_HOLD_TTL_S = 15 * 60
MAX_HOLD_TTL_S = 24 * 60 * 60


@dataclass(frozen=True)
class BalanceView:
    organization_id: int
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def _organization_exists(organization_id: int) -> bool:
    return Organization.select().where(Organization.id == organization_id).exists()


def _read_balance(organization_id: int) -> BalanceView:
    row = (CreditBalance.select(CreditBalance.balance, CreditBalance.held)
           .where(CreditBalance.organization == organization_id).first())
    if row is None:
        raise NotFound(f"organisation {organization_id} not found")
    return BalanceView(organization_id, row.balance, row.held)


def get_balance(organization_id: int, now: datetime.datetime) -> BalanceView:
    """Holds past their expiry no longer count as held, even before the sweeper runs."""
    current = _read_balance(organization_id)
    overdue = (CreditHold.select(fn.COALESCE(fn.SUM(CreditHold.amount), 0))
               .where((CreditHold.organization == organization_id)
                      & (CreditHold.state == "held") & (CreditHold.expires_at <= now))
               .scalar())
    return BalanceView(organization_id, current.balance, current.held - int(overdue))


def _clean_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH or "\x00" in reason:
        raise InvalidArgument(f"reason must be 1..{MAX_REASON_LENGTH} characters")
    return reason


def adjust_credits(organization_id: int, delta: int, reason: str, *, actor: str,
                   reference: str = "", now: datetime.datetime) -> tuple[CreditLog, BalanceView]:
    if delta == 0:
        raise InvalidArgument("delta must not be zero")
    if abs(delta) > MAX_ADJUSTMENT:
        raise InvalidArgument(f"delta must be within ±{MAX_ADJUSTMENT}")
    reason = _clean_reason(reason)
    with database.atomic():
        update = CreditBalance.update(balance=CreditBalance.balance + delta, updated_at=now)
        condition = CreditBalance.organization == organization_id
        if delta < 0:
            # Credits reserved by holds are spoken for: an adjustment may not take them.
            condition &= (CreditBalance.balance + delta) >= CreditBalance.held
        if update.where(condition).execute() == 0:
            if not _organization_exists(organization_id):
                raise NotFound(f"organisation {organization_id} not found")
            raise InsufficientCredits("not enough available credit for this adjustment")
        after = _read_balance(organization_id)
        log = CreditLog.create(organization=organization_id, delta=delta,
                               balance_after=after.balance, kind="adjust", reason=reason,
                               reference=reference[:MAX_REFERENCE_LENGTH], actor=actor,
                               created_at=now)
    return log, after


def _expire_overdue(organization_id: int, now: datetime.datetime) -> int:
    """Inside a transaction: mark this organisation's overdue holds expired, un-hold them."""
    overdue = list(CreditHold.select(CreditHold.id, CreditHold.amount)
                   .where((CreditHold.organization == organization_id)
                          & (CreditHold.state == "held") & (CreditHold.expires_at <= now)))
    released = 0
    for hold in overdue:
        # Conditional per hold: a concurrent capture or release of the same hold wins once.
        if (CreditHold.update(state="expired", updated_at=now)
                .where((CreditHold.id == hold.id) & (CreditHold.state == "held"))
                .execute()):
            released += hold.amount
    if released:
        (CreditBalance.update(held=CreditBalance.held - released, updated_at=now)
         .where(CreditBalance.organization == organization_id).execute())
    return released


def expire_holds(now: datetime.datetime, limit: int = 500) -> int:
    """The sweeper: expire overdue holds of every organisation, one transaction each."""
    organization_ids = [row.organization_id for row in
                        CreditHold.select(CreditHold.organization).distinct()
                        .where((CreditHold.state == "held") & (CreditHold.expires_at <= now))
                        .limit(limit)]
    expired = 0
    for organization_id in organization_ids:
        with database.atomic():
            expired += _expire_overdue(organization_id, now)
    return expired


def reserve_credits(organization_id: int, amount: int, reference: str, ttl_seconds: int, *,
                    user_id: int | None, now: datetime.datetime) -> CreditHold:
    if not 0 < amount <= MAX_RESERVATION:
        raise InvalidArgument(f"amount must be between 1 and {MAX_RESERVATION}")
    reference = reference.strip()
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidArgument(f"reference must be 1..{MAX_REFERENCE_LENGTH} characters")
    ttl = ttl_seconds or DEFAULT_HOLD_TTL_S
    if not 0 < ttl <= MAX_HOLD_TTL_S:
        raise InvalidArgument(f"ttl_seconds must be between 1 and {MAX_HOLD_TTL_S}")
    try:
        with database.atomic():
            existing = _hold_by_reference(organization_id, reference)
            if existing is not None:
                return existing
            _expire_overdue(organization_id, now)
            reserved = (CreditBalance.update(held=CreditBalance.held + amount, updated_at=now)
                        .where((CreditBalance.organization == organization_id)
                               & ((CreditBalance.balance - CreditBalance.held) >= amount))
                        .execute())
            if not reserved:
                if not _organization_exists(organization_id):
                    raise NotFound(f"organisation {organization_id} not found")
                raise InsufficientCredits("not enough available credit")
            return CreditHold.create(
                organization=organization_id, user=user_id or None, amount=amount,
                state="held", reference=reference,
                expires_at=now + datetime.timedelta(seconds=ttl), created_at=now,
                updated_at=now)
    except IntegrityError:
        # A concurrent reserve with the same reference won; ours rolled back entirely.
        existing = _hold_by_reference(organization_id, reference)
        if existing is None:
            raise
        return existing


def _hold_by_reference(organization_id: int, reference: str) -> CreditHold | None:
    return CreditHold.get_or_none((CreditHold.organization == organization_id)
                                  & (CreditHold.reference == reference))


def _get_hold(hold_id: int) -> CreditHold:
    hold = CreditHold.get_or_none(CreditHold.id == hold_id)
    if hold is None:
        raise NotFound(f"hold {hold_id} not found")
    return hold


def _not_held(hold: CreditHold, now: datetime.datetime) -> FailedPrecondition:
    if hold.state == "expired" or (hold.state == "held" and hold.expires_at <= now):
        return FailedPrecondition(f"hold {hold.id} has expired", reason="HOLD_EXPIRED")
    return FailedPrecondition(f"hold {hold.id} is {hold.state}, not held", reason="HOLD_NOT_HELD")


def capture_hold(hold_id: int, *, now: datetime.datetime,
                 actor: str = "render-service") -> tuple[CreditHold, CreditLog]:
    """held -> captured: balance and held drop by the amount, one `render` log row.
    Capturing again returns the same row."""
    with database.atomic():
        # The conditional UPDATE decides between racing capture/release/expiry.
        won = (CreditHold.update(state="captured", updated_at=now)
               .where((CreditHold.id == hold_id) & (CreditHold.state == "held")
                      & (CreditHold.expires_at > now))
               .execute())
        hold = _get_hold(hold_id)
        if not won:
            if hold.state == "captured":
                return hold, CreditLog.get_by_id(hold.credit_log_id)
            raise _not_held(hold, now)
        (CreditBalance.update(balance=CreditBalance.balance - hold.amount,
                              held=CreditBalance.held - hold.amount, updated_at=now)
         .where(CreditBalance.organization == hold.organization_id).execute())
        after = _read_balance(hold.organization_id)
        log = CreditLog.create(organization=hold.organization_id, user=hold.user_id,
                               delta=-hold.amount, balance_after=after.balance, kind="render",
                               reason="render charge", reference=hold.reference, actor=actor,
                               created_at=now)
        CreditHold.update(credit_log=log.id).where(CreditHold.id == hold_id).execute()
        hold.credit_log = log.id
    return hold, log


def release_hold(hold_id: int, *, now: datetime.datetime) -> CreditHold:
    """held -> released. Releasing again, or releasing an expired hold, changes nothing;
    a captured hold cannot be released."""
    with database.atomic():
        won = (CreditHold.update(state="released", updated_at=now)
               .where((CreditHold.id == hold_id) & (CreditHold.state == "held"))
               .execute())
        hold = _get_hold(hold_id)
        if won:
            (CreditBalance.update(held=CreditBalance.held - hold.amount, updated_at=now)
             .where(CreditBalance.organization == hold.organization_id).execute())
        elif hold.state == "captured":
            raise FailedPrecondition(f"hold {hold_id} is captured and cannot be released",
                                     reason="HOLD_NOT_HELD")
    return hold


def list_credit_logs(page_size: int, page_token: str, *, organization_id: int = 0,
                     kind: str = "", user_id: int = 0) -> Page:
    query = CreditLog.select()
    if organization_id:
        query = query.where(CreditLog.organization == organization_id)
    if kind:
        if kind not in CREDIT_LOG_KINDS:
            raise InvalidArgument("unknown credit-log kind")
        query = query.where(CreditLog.kind == kind)
    if user_id:
        query = query.where(CreditLog.user == user_id)
    return paginate(query, CreditLog.created_at, CreditLog.id, page_size, page_token)
