"""Balances, adjustments and the hold cycle (reserve -> capture | release | expire).

Every balance change is a single conditional UPDATE whose row count says whether it happened,
in one transaction with its credit-log row. No read-modify-write in Python, so concurrent
callers (threads or replicas) cannot overspend. The hot path's SQL is in `ledger_sql`; what
leaves this module is plain frozen views (`BalanceView`, `HoldView`, `CreditLogView`) or pages
of rows.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from peewee import JOIN, SQL, IntegrityError, ModelSelect, fn

from carpet_common.days import as_date
from carpet_common.db import tuples
from carpet_common.errors import (
    FailedPrecondition,
    InsufficientCredits,
    InvalidArgument,
    NotFound,
    SpendLimitReached,
    UserNotFound,
)
from carpet_common.paging import Page, paginate
from credit_service import controls, grants, ledger_sql
from credit_service.ledger_sql import CreditLogView as CreditLogView  # shown to callers
from credit_service.ledger_sql import HoldView as HoldView
from credit_service.models import (
    CreditBalance,
    CreditDaily,
    CreditGrant,
    CreditHold,
    CreditLog,
    Organization,
    User,
    database,
)
from credit_service.webhooks.outbox import record_event

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


def get_balance(organization_id: int, now: datetime.datetime) -> BalanceView:
    """Holds past their expiry no longer count as held, even before the sweeper runs."""
    found = ledger_sql.balance_now(organization_id, now)
    if found is None:
        raise NotFound(f"organisation {organization_id} not found")
    return BalanceView(organization_id, *found)


def _clean_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_LENGTH or "\x00" in reason:
        raise InvalidArgument(f"reason must be 1..{MAX_REASON_LENGTH} characters")
    return reason


def _log_view(row: CreditLog) -> CreditLogView:
    return CreditLogView(id=row.id, organization_id=row.organization_id, user_id=row.user_id,
                         delta=row.delta, balance_after=row.balance_after, kind=row.kind,
                         reason=row.reason, reference=row.reference, actor=row.actor,
                         created_at=row.created_at, grant_id=row.grant_id)


def adjust_credits(organization_id: int, delta: int, reason: str, *, actor: str,
                   reference: str = "", now: datetime.datetime,
                   terms: grants.GrantTerms | None = None
                   ) -> tuple[CreditLogView, BalanceView]:
    """A positive delta is a grant (paid, never expiring, unless `terms` say otherwise); a
    negative one spends from the spendable grants in their order, like a capture."""
    if delta == 0:
        raise InvalidArgument("delta must not be zero")
    if abs(delta) > MAX_ADJUSTMENT:
        raise InvalidArgument(f"delta must be within ±{MAX_ADJUSTMENT}")
    reason = _clean_reason(reason)
    grant_terms = grants.GrantTerms()
    if delta > 0:
        grant_terms = grants.check_terms(terms or grant_terms, now)
    elif terms is not None:
        raise InvalidArgument("only credit added can be a grant")
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
        grant = None
        if delta > 0:
            grant = grants.add_grant(organization_id, delta, grant_terms, reason=reason,
                                     reference=reference[:MAX_REFERENCE_LENGTH], now=now)
        elif not ledger_sql.consume(organization_id, -delta, now):
            # The balance has it, but not all of it is spendable now (a grant not yet in
            # effect, or past its expiry): this transaction rolls back.
            raise InsufficientCredits("not enough spendable credit for this adjustment")
        state = controls.read_state(organization_id)
        after = BalanceView(organization_id, state.balance, state.held)
        log = CreditLog.create(organization=organization_id, delta=delta,
                               balance_after=after.balance, kind="adjust", reason=reason,
                               reference=reference[:MAX_REFERENCE_LENGTH], actor=actor,
                               created_at=now, grant=grant)
        data = {"creditLogId": log.id, "delta": delta, "balanceAfter": after.balance,
                "reason": reason, "actor": actor}
        if grant is not None:
            data["grantId"] = grant.id
        record_event("credit.adjusted", organization_id, data, now)
        controls.after_available_change(state, organization_id, now)
    return _log_view(log), after


def _expire_overdue(organization_id: int, now: datetime.datetime) -> int:
    """Inside a transaction: mark this organisation's overdue holds expired, un-hold them."""
    overdue = list(CreditHold.select(CreditHold.id, CreditHold.amount)
                   .where((CreditHold.organization == organization_id)
                          & (CreditHold.state == "held") & (CreditHold.expires_at <= now)))
    released, expired = 0, []
    for hold in overdue:
        # Conditional per hold: a concurrent capture or release of the same hold wins once.
        if (CreditHold.update(state="expired", updated_at=now)
                .where((CreditHold.id == hold.id) & (CreditHold.state == "held"))
                .execute()):
            released += hold.amount
            expired.append(hold.id)
    if released:
        rearm = ledger_sql.REARM.replace("{amount}", str(int(released)))
        (CreditBalance.update(held=CreditBalance.held - released, updated_at=now,
                              low_balance_armed=SQL(f"({rearm})"))
         .where(CreditBalance.organization == organization_id).execute())
        for hold_id in expired:  # the balance row is locked now: back to their grants
            grants.lapse(organization_id, ledger_sql.return_draws(hold_id), now)
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


class _NotReserved(Exception):
    """Rolls the reserve transaction back: the balance did not cover the amount."""


def reserve_credits(organization_id: int, amount: int, reference: str, ttl_seconds: int, *,
                    user_id: int | None, now: datetime.datetime) -> HoldView:
    if not 0 < amount <= MAX_RESERVATION:
        raise InvalidArgument(f"amount must be between 1 and {MAX_RESERVATION}")
    reference = _clean_reference(reference)
    ttl = ttl_seconds or DEFAULT_HOLD_TTL_S
    if not 0 < ttl <= MAX_HOLD_TTL_S:
        raise InvalidArgument(f"ttl_seconds must be between 1 and {MAX_HOLD_TTL_S}")
    expires_at = now + datetime.timedelta(seconds=ttl)
    if user_id:
        _check_member(user_id, organization_id)

    def attempt() -> HoldView:
        with database.atomic():
            hold_id, state = ledger_sql.insert_and_hold(organization_id, user_id or None,
                                                        amount, reference, expires_at, now)
            if hold_id is None:  # this reference already has its hold: a repeat
                return _repeated_hold(organization_id, reference)
            if state is None:
                raise _NotReserved
            # The balance row is locked by this transaction from here to its end.
            if ledger_sql.draw(hold_id, organization_id, amount, now) < amount:
                raise _NotReserved  # the grants in effect do not cover it: roll back
            controls.check_limits(state, organization_id, user_id or None, now)
            controls.after_available_change(state, organization_id, now)
        return HoldView(id=hold_id, organization_id=organization_id, user_id=user_id or None,
                        amount=amount, state="held", reference=reference,
                        expires_at=expires_at)

    try:
        try:
            return attempt()
        except _NotReserved:
            # Overdue holds may still count as held: expire them, then try once more.
            with database.atomic():
                released = _expire_overdue(organization_id, now)
            if not released:
                raise
            return attempt()
    except _NotReserved:
        controls.check_not_suspended(organization_id)
        raise InsufficientCredits("not enough available credit") from None
    except controls.LimitRefused as refused:
        controls.note_refusal(organization_id, refused, now)
        raise SpendLimitReached(controls.spend_limit_message(refused.user_id, refused.limit)
                                ) from None
    except IntegrityError:
        # The hold's foreign key: there is no such organisation (its user was checked above,
        # and users are never deleted).
        if not _organization_exists(organization_id):
            raise NotFound(f"organisation {organization_id} not found") from None
        raise


def _check_member(user_id: int, organization_id: int) -> None:
    """A hold names a user of its own organisation (users never change organisation, so a
    look-up before the transaction is as good as one inside it). A user of another
    organisation gets the same answer as no user at all (errors.UserNotFound)."""
    member_of = (User.select(User.organization).where(User.id == user_id)
                 .scalar())
    if member_of != organization_id:
        raise UserNotFound(f"user {user_id} not found in organisation {organization_id}")


def _clean_reference(reference: str) -> str:
    reference = reference.strip()
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidArgument(f"reference must be 1..{MAX_REFERENCE_LENGTH} characters")
    return reference


def _hold_view(row: Any) -> HoldView:
    """A CreditHold row, read with the id of the log row that captured it (an alias column)."""
    return HoldView(id=row.id, organization_id=row.organization_id, user_id=row.user_id,
                    amount=row.amount, state=row.state, reference=row.reference,
                    expires_at=row.expires_at, credit_log_id=row.credit_log_id,
                    release_reason=row.release_reason)


def _holds() -> ModelSelect[CreditHold]:
    """Holds with `credit_log_id`: the id of the `render` row that captured them, or None."""
    return (CreditHold.select(CreditHold, CreditLog.id.alias("credit_log_id"))
            .join(CreditLog, JOIN.LEFT_OUTER, on=(CreditLog.hold == CreditHold.id))
            .objects())


def _hold_by_reference(organization_id: int, reference: str) -> HoldView | None:
    row = _holds().where((CreditHold.organization == organization_id)
                         & (CreditHold.reference == reference)).first()
    return None if row is None else _hold_view(row)


def _repeated_hold(organization_id: int, reference: str) -> HoldView:
    """The hold a repeated reserve found (holds are never deleted)."""
    hold = _hold_by_reference(organization_id, reference)
    if hold is None:
        raise RuntimeError(f"the hold of reference {reference!r} vanished")
    return hold


def _get_hold(hold_id: int) -> HoldView:
    row = _holds().where(CreditHold.id == hold_id).first()
    if row is None:
        raise NotFound(f"hold {hold_id} not found")
    return _hold_view(row)


def _not_held(hold: HoldView) -> FailedPrecondition:
    """Why a capture did not happen. A hold still marked held that could not be captured is
    past its expiry (the sweeper has not reached it yet)."""
    if hold.state in ("expired", "held"):
        return FailedPrecondition(f"hold {hold.id} has expired", reason="HOLD_EXPIRED")
    return FailedPrecondition(f"hold {hold.id} is {hold.state}, not held", reason="HOLD_NOT_HELD")


def capture_hold(hold_id: int, *, now: datetime.datetime,
                 actor: str = "render-service") -> tuple[HoldView, CreditLogView]:
    """held -> captured: balance and held drop by the amount, one `render` log row.
    Capturing again returns the same row."""
    with database.atomic():
        captured = ledger_sql.capture(hold_id, now, actor)
        if captured is not None:
            return captured
        hold = _get_hold(hold_id)
        if hold.state == "captured":
            return hold, _log_view(CreditLog.get(CreditLog.hold == hold_id))
        raise _not_held(hold)


def release_hold(hold_id: int, *, reason: str = "", now: datetime.datetime) -> HoldView:
    """held -> released, keeping `reason`. Releasing again, or releasing an expired hold,
    changes nothing; a captured hold cannot be released."""
    reason = reason.strip()[:MAX_REFERENCE_LENGTH]
    with database.atomic():
        released = ledger_sql.release(hold_id, reason, now)
        hold = _get_hold(hold_id)
        if released:
            grants.lapse(hold.organization_id, ledger_sql.return_draws(hold_id), now)
        if not released and hold.state == "captured":
            raise FailedPrecondition(f"hold {hold_id} is captured and cannot be released",
                                     reason="HOLD_NOT_HELD")
    return hold


def release_hold_by_reference(organization_id: int, reference: str, *, reason: str = "",
                              now: datetime.datetime) -> HoldView:
    """`release_hold` for the hold of (organisation, reference): for a caller that lost the
    reservation's answer. NotFound when that reference has no hold."""
    hold = _hold_by_reference(organization_id, _clean_reference(reference))
    if hold is None:
        raise NotFound(f"no hold with reference {reference[:80]!r} in organisation "
                       f"{organization_id}")
    return release_hold(hold.id, reason=reason, now=now)


def list_credit_logs(page_size: int, page_token: str, *, organization_id: int = 0,
                     kind: str = "", user_id: int = 0) -> Page:
    # Each row with its grant's kind and expiry, when it added or expired one (the console
    # shows a promotional grant as such, with its last day).
    query = (CreditLog.select(CreditLog, CreditGrant.id, CreditGrant.kind, CreditGrant.expires_at)
             .join(CreditGrant, JOIN.LEFT_OUTER, on=(CreditLog.grant == CreditGrant.id)))
    if organization_id:
        query = query.where(CreditLog.organization == organization_id)
    if kind:  # already one of CREDIT_LOG_KINDS: the servicer maps the enum
        query = query.where(CreditLog.kind == kind)
    if user_id:
        query = query.where(CreditLog.user == user_id)
    return paginate(query, CreditLog.created_at, CreditLog.id, page_size, page_token)


def credit_usage(start: datetime.date, end: datetime.date, organization_id: int = 0
                 ) -> dict[datetime.date, tuple[int, int]]:
    """(spent, added) per day from the trigger-kept roll-up; days without rows are left out."""
    query = (CreditDaily.select(CreditDaily.day, fn.SUM(CreditDaily.spent),
                                fn.SUM(CreditDaily.added))
             .where(CreditDaily.day.between(start, end)).group_by(CreditDaily.day))
    if organization_id:
        query = query.where(CreditDaily.organization_id == organization_id)
    return {as_date(day): (int(spent), int(added)) for day, spent, added in tuples(query)}
