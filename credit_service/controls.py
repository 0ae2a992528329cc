"""Spend controls and alerts of an organisation (`docs/webhooks.md`): the low-balance alert, the
monthly and per-user daily spend limits, and suspension.

The ledger calls in here from inside its own transactions, after the statement that changed
the balance row, so that row's lock (PostgreSQL) or the write lock (SQLite) is held: concurrent
reservations of one organisation are serialised on it, and a limit or a threshold crossing is
decided by exactly one of them. Nothing here is read first and written later in Python without
that lock.

- Spend: render credits captured or held by holds created in the period (a calendar month, or a
  day, UTC), read by one indexed SUM; negative adjustments are not spending.
- Low balance: `credit.low_balance` when balance − held falls below the threshold while armed,
  which disarms it; it re-arms (silently) when the available credit is back at or above it.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from peewee import IntegrityError, fn

from carpet_common.db import require_transaction, tuples
from carpet_common.errors import InvalidArgument, NotFound, OrganizationSuspended
from credit_service.models import (
    CreditBalance,
    CreditHold,
    Organization,
    SpendLimitNotice,
    database,
)
from credit_service.webhooks.outbox import record_event

MAX_LIMIT = 10**12
MAX_SUSPENSION_REASON = 500
SPENDING = ("held", "captured")


@dataclass(frozen=True)
class BalanceState:
    """The balance row as the statement that changed it returned it."""

    balance: int
    held: int
    low_balance_threshold: int
    low_balance_armed: bool
    monthly_credit_limit: int
    user_daily_credit_limit: int

    @property
    def available(self) -> int:
        return self.balance - self.held


class LimitRefused(Exception):
    """Raised inside the reserve transaction to roll it back; `refused` records the notice."""

    def __init__(self, scope: str, period: str, limit: int, spent: int, user_id: int | None):
        super().__init__(scope)
        self.scope, self.period, self.limit, self.spent, self.user_id = (
            scope, period, limit, spent, user_id)


def month_start(now: datetime.datetime) -> datetime.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def day_start(now: datetime.datetime) -> datetime.datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spent_since(since: datetime.datetime, *, organization_id: int | None = None,
                user_id: int | None = None) -> int:
    query = CreditHold.select(fn.COALESCE(fn.SUM(CreditHold.amount), 0)).where(
        (CreditHold.created_at >= since) & CreditHold.state.in_(SPENDING))
    if organization_id is not None:
        query = query.where(CreditHold.organization == organization_id)
    if user_id is not None:
        query = query.where(CreditHold.user == user_id)
    return int(query.scalar())


def check_limits(state: BalanceState, organization_id: int, user_id: int | None,
                 now: datetime.datetime) -> None:
    """Inside the reserve transaction, after the new hold is written: LimitRefused when the
    organisation's month or the user's day now spends more than its limit."""
    if state.monthly_credit_limit:
        spent = spent_since(month_start(now), organization_id=organization_id)
        if spent > state.monthly_credit_limit:
            raise LimitRefused("organization", now.strftime("%Y-%m"), state.monthly_credit_limit,
                               spent, None)
    if state.user_daily_credit_limit and user_id:
        spent = spent_since(day_start(now), user_id=user_id)
        if spent > state.user_daily_credit_limit:
            raise LimitRefused(f"user:{user_id}", now.strftime("%Y-%m-%d"),
                               state.user_daily_credit_limit, spent, user_id)


def note_refusal(organization_id: int, refused: LimitRefused, now: datetime.datetime) -> None:
    """After the refused reservation rolled back: `credit.spend_limit_reached`, once per limit
    and period (the notice row's unique key decides among concurrent refusals)."""
    with database.atomic():
        try:
            with database.atomic():
                SpendLimitNotice.create(organization_id=organization_id, scope=refused.scope,
                                        period=refused.period, created_at=now)
        except IntegrityError:
            return
        data = {"limit": "monthly" if refused.user_id is None else "user_daily",
                "limitCredits": refused.limit, "period": refused.period,
                "spentWithThisRequest": refused.spent}
        if refused.user_id is not None:
            data["userId"] = refused.user_id
        record_event("credit.spend_limit_reached", organization_id, data, now)


def after_available_change(state: BalanceState, organization_id: int,
                           now: datetime.datetime) -> None:
    """Inside the transaction that changed the balance row: fire or re-arm the alert."""
    require_transaction(database)
    threshold = state.low_balance_threshold
    if not threshold:
        return
    if state.low_balance_armed and state.available < threshold:
        (CreditBalance.update(low_balance_armed=False)
         .where(CreditBalance.organization == organization_id).execute())
        record_event("credit.low_balance", organization_id,
                     {"available": state.available, "threshold": threshold,
                      "balance": state.balance, "held": state.held}, now)
    elif not state.low_balance_armed and state.available >= threshold:
        (CreditBalance.update(low_balance_armed=True)
         .where(CreditBalance.organization == organization_id).execute())


def read_state(organization_id: int) -> BalanceState:
    row = (CreditBalance.select(CreditBalance.balance, CreditBalance.held,
                                CreditBalance.low_balance_threshold,
                                CreditBalance.low_balance_armed,
                                CreditBalance.monthly_credit_limit,
                                CreditBalance.user_daily_credit_limit)
           .where(CreditBalance.organization == organization_id).tuples().first())
    if row is None:
        raise NotFound(f"organisation {organization_id} not found")
    balance, held, threshold, armed, monthly, daily = row
    return BalanceState(balance, held, threshold, bool(armed), monthly, daily)


# --- admin changes (each inside the caller's audited transaction) ----------------------------

def _check_amount(value: int, name: str) -> int:
    if not 0 <= value <= MAX_LIMIT:
        raise InvalidArgument(f"{name} must be between 0 and {MAX_LIMIT}")
    return value


def set_low_balance_threshold(organization_id: int, threshold: int,
                              now: datetime.datetime) -> None:
    """A new threshold above the available credit counts as a crossing: the alert fires now
    (the threshold and its event are one transaction)."""
    _check_amount(threshold, "low_balance_threshold")
    with database.atomic():
        if not (CreditBalance.update(low_balance_threshold=threshold, low_balance_armed=True)
                .where(CreditBalance.organization == organization_id).execute()):
            raise NotFound(f"organisation {organization_id} not found")
        after_available_change(read_state(organization_id), organization_id, now)


def set_spend_limits(organization_id: int, monthly: int, user_daily: int) -> None:
    _check_amount(monthly, "monthly_credits")
    _check_amount(user_daily, "user_daily_credits")
    if not (CreditBalance.update(monthly_credit_limit=monthly, user_daily_credit_limit=user_daily)
            .where(CreditBalance.organization == organization_id).execute()):
        raise NotFound(f"organisation {organization_id} not found")


def suspend(organization_id: int, reason: str, now: datetime.datetime) -> None:
    """Suspending again keeps the first time and reason, and sends nothing more. The
    suspension and its event are one transaction."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_SUSPENSION_REASON or "\x00" in reason:
        raise InvalidArgument(f"reason must be 1..{MAX_SUSPENSION_REASON} characters")
    _organization(organization_id)
    with database.atomic():
        if (Organization.update(suspended_at=now, suspension_reason=reason)
                .where((Organization.id == organization_id)
                       & Organization.suspended_at.is_null())
                .execute()):
            record_event("organization.suspended", organization_id,
                         {"reason": reason, "suspendedAt": now.isoformat() + "Z"}, now)


def resume(organization_id: int) -> None:
    _organization(organization_id)
    (Organization.update(suspended_at=None, suspension_reason="")
     .where(Organization.id == organization_id).execute())


def _organization(organization_id: int) -> Organization:
    row = Organization.get_or_none(Organization.id == organization_id)
    if row is None:
        raise NotFound(f"organisation {organization_id} not found")
    return row


def check_not_suspended(organization_id: int) -> None:
    suspended = (Organization.select(Organization.suspension_reason)
                 .where((Organization.id == organization_id)
                        & Organization.suspended_at.is_null(False)).scalar())
    if suspended is not None:
        raise OrganizationSuspended(suspended_message(organization_id, suspended))


def suspended_message(organization_id: int, reason: str) -> str:
    """The refusal's text, kept on a failed render job too (the console words it by its
    shape: admin_gateway/static/ui.js, jobError)."""
    return f"organisation {organization_id} is suspended: {reason}"


def spend_limit_message(user_id: int | None, limit: int) -> str:
    """The refusal's text when a reservation would pass a spend limit (as above)."""
    what = ("this month's spend limit" if user_id is None
            else f"user {user_id}'s daily spend limit")
    return f"{what} of {limit} credits would be passed"


# --- reads -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Controls:
    organization_id: int
    organization_name: str
    low_balance_threshold: int
    low_balance: bool
    monthly_credits: int
    user_daily_credits: int
    spent_this_month: int
    suspended_at: datetime.datetime | None
    suspension_reason: str
    available: int


def list_controls(now: datetime.datetime, organization_ids: list[int] | None = None,
                  low_balance_only: bool = False) -> list[Controls]:
    """One query for the rows and one grouped SUM for the month's spending."""
    query = (Organization.select(Organization.id, Organization.name, Organization.suspended_at,
                                 Organization.suspension_reason, CreditBalance.balance,
                                 CreditBalance.held, CreditBalance.low_balance_threshold,
                                 CreditBalance.monthly_credit_limit,
                                 CreditBalance.user_daily_credit_limit)
             .join(CreditBalance, on=(CreditBalance.organization == Organization.id))
             .order_by(Organization.id))
    if organization_ids is not None:
        query = query.where(Organization.id.in_(organization_ids))
    if low_balance_only:
        query = query.where((CreditBalance.low_balance_threshold > 0)
                            & ((CreditBalance.balance - CreditBalance.held)
                               < CreditBalance.low_balance_threshold))
    rows = list(tuples(query))
    ids = [row[0] for row in rows]
    spent: dict[int, int] = {}
    if ids:
        spent = dict(tuples(CreditHold.select(CreditHold.organization, fn.SUM(CreditHold.amount))
                            .where(CreditHold.organization.in_(ids)
                                   & (CreditHold.created_at >= month_start(now))
                                   & CreditHold.state.in_(SPENDING))
                            .group_by(CreditHold.organization)))
    return [Controls(organization_id=org_id, organization_name=name,
                     low_balance_threshold=threshold,
                     low_balance=bool(threshold) and balance - held < threshold,
                     monthly_credits=monthly, user_daily_credits=daily,
                     spent_this_month=int(spent.get(org_id) or 0), suspended_at=suspended_at,
                     suspension_reason=reason, available=balance - held)
            for (org_id, name, suspended_at, reason, balance, held, threshold, monthly, daily)
            in rows]


def get_controls(organization_id: int, now: datetime.datetime) -> Controls:
    found = list_controls(now, [organization_id])
    if not found:
        raise NotFound(f"organisation {organization_id} not found")
    return found[0]
