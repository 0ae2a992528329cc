"""Balances, adjustments and the hold cycle (reserve -> capture | release | expire).

Every balance change is a single conditional UPDATE whose row count says whether it happened,
in one transaction with its credit-log row. No read-modify-write in Python, so concurrent
callers (threads or replicas) cannot overspend.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from peewee import JOIN, IntegrityError

from carpet_common.db import Statement, is_postgres
from carpet_common.errors import FailedPrecondition, InsufficientCredits, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from credit_service.models import (
    CreditBalance,
    CreditHold,
    CreditLog,
    Organization,
    User,
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


_BALANCE_NOW = Statement("""
    SELECT b.balance, b.held - COALESCE((
        SELECT SUM(h.amount) FROM credit_hold h
        WHERE h.organization_id = {p} AND h.state = 'held' AND h.expires_at <= {p}), 0)
    FROM credit_balance b WHERE b.organization_id = {p}""")


def get_balance(organization_id: int, now: datetime.datetime) -> BalanceView:
    """Holds past their expiry no longer count as held, even before the sweeper runs."""
    found = _BALANCE_NOW.row(database, organization_id, now, organization_id)
    if found is None:
        raise NotFound(f"organisation {organization_id} not found")
    return BalanceView(organization_id, found[0], int(found[1]))


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


# The reserve and capture statements (see carpet_common.db.Statement for why they are SQL).
# Each transaction touches the organisation's balance row last, so its row lock is held only
# from that UPDATE to COMMIT: hot organisations serialise on as little work as possible.
_INSERT_HOLD = Statement("""
    INSERT INTO credit_hold (organization_id, user_id, amount, state, reference, expires_at,
                             created_at, updated_at)
    VALUES ({p}, {p}, {p}, 'held', {p}, {p}, {p}, {p})
    ON CONFLICT (organization_id, reference) DO NOTHING
    RETURNING id""")
_HOLD_CREDITS = Statement("""
    UPDATE credit_balance SET held = held + {p}, updated_at = {p}
    WHERE organization_id = {p} AND balance - held >= {p}""")
_CAPTURE_HOLD = Statement("""
    UPDATE credit_hold SET state = 'captured', updated_at = {p}
    WHERE id = {p} AND state = 'held' AND expires_at > {p}
    RETURNING organization_id, amount, reference, user_id, expires_at, created_at""")
_CHARGE_HELD = Statement("""
    UPDATE credit_balance SET balance = balance - {p}, held = held - {p}, updated_at = {p}
    WHERE organization_id = {p}
    RETURNING balance""")
_INSERT_RENDER_LOG = Statement("""
    INSERT INTO credit_log (organization_id, user_id, hold_id, delta, balance_after, kind,
                            reason, reference, actor, created_at)
    VALUES ({p}, {p}, {p}, {p}, {p}, 'render', 'render charge', {p}, {p}, {p})
    RETURNING id""")
# PostgreSQL runs each of the two transactions as one statement (data-modifying CTEs), so the
# balance row is locked for a single round trip before COMMIT. SQLite has no such CTEs; its
# writers are serialised by the IMMEDIATE lock anyway, so it runs the statements above.
_RESERVE_PG = Statement("""
    WITH hold AS (
        INSERT INTO credit_hold (organization_id, user_id, amount, state, reference,
                                 expires_at, created_at, updated_at)
        VALUES ({p}, {p}, {p}, 'held', {p}, {p}, {p}, {p})
        ON CONFLICT (organization_id, reference) DO NOTHING
        RETURNING id),
    reserved AS (
        UPDATE credit_balance SET held = held + {p}, updated_at = {p}
        WHERE organization_id = {p} AND balance - held >= {p} AND EXISTS (SELECT 1 FROM hold)
        RETURNING organization_id)
    SELECT (SELECT id FROM hold), EXISTS (SELECT 1 FROM reserved)""")
_CAPTURE_PG = Statement("""
    WITH captured AS (
        UPDATE credit_hold SET state = 'captured', updated_at = {p}
        WHERE id = {p} AND state = 'held' AND expires_at > {p}
        RETURNING id, organization_id, amount, reference, user_id, expires_at, created_at),
    charged AS (
        UPDATE credit_balance b
        SET balance = b.balance - c.amount, held = b.held - c.amount, updated_at = {p}
        FROM captured c WHERE b.organization_id = c.organization_id
        RETURNING b.balance),
    logged AS (
        INSERT INTO credit_log (organization_id, user_id, hold_id, delta, balance_after, kind,
                                reason, reference, actor, created_at)
        SELECT c.organization_id, c.user_id, c.id, -c.amount, charged.balance, 'render',
               'render charge', c.reference, {p}, {p}
        FROM captured c, charged
        RETURNING id, balance_after)
    SELECT c.organization_id, c.amount, c.reference, c.user_id, c.expires_at, c.created_at,
           logged.id, logged.balance_after
    FROM captured c, logged""")
_RELEASE_HOLD = Statement("""
    UPDATE credit_hold SET state = 'released', updated_at = {p}
    WHERE id = {p} AND state = 'held'
    RETURNING organization_id, amount""")
_UNHOLD_CREDITS = Statement("""
    UPDATE credit_balance SET held = held - {p}, updated_at = {p} WHERE organization_id = {p}""")


class _NotReserved(Exception):
    """Rolls the reserve transaction back: the balance did not cover the amount."""


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
    expires_at = now + datetime.timedelta(seconds=ttl)

    def insert_and_hold() -> tuple[int | None, bool]:
        """(new hold id or None when the reference has one, whether credits were held)"""
        hold_row = (organization_id, user_id or None, amount, reference, expires_at, now, now)
        if is_postgres(database.obj):
            return _RESERVE_PG.row(database, *hold_row, amount, now, organization_id, amount)
        inserted = _INSERT_HOLD.row(database, *hold_row)
        if inserted is None:
            return None, False
        return inserted[0], bool(_HOLD_CREDITS.count(database, amount, now, organization_id,
                                                     amount))

    def attempt() -> CreditHold:
        with database.atomic():
            hold_id, held = insert_and_hold()
            if hold_id is None:  # this reference already has its hold: a repeat
                return _hold_by_reference(organization_id, reference)
            if not held:
                raise _NotReserved
        hold = CreditHold(id=hold_id, organization=organization_id, user=user_id or None,
                          amount=amount, state="held", reference=reference,
                          expires_at=expires_at, created_at=now, updated_at=now)
        hold.credit_log_id = None
        return hold

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
        raise InsufficientCredits("not enough available credit") from None
    except IntegrityError:
        # A foreign key of the hold: there is no such organisation or user.
        if not _organization_exists(organization_id):
            raise NotFound(f"organisation {organization_id} not found") from None
        if user_id and not User.select().where(User.id == user_id).exists():
            raise NotFound(f"user {user_id} not found") from None
        raise


def _holds():
    """Holds with `credit_log_id`: the id of the `render` row that captured them, or None."""
    return (CreditHold.select(CreditHold, CreditLog.id.alias("credit_log_id"))
            .join(CreditLog, JOIN.LEFT_OUTER, on=(CreditLog.hold == CreditHold.id))
            .objects())


def _hold_by_reference(organization_id: int, reference: str) -> CreditHold | None:
    return _holds().where((CreditHold.organization == organization_id)
                          & (CreditHold.reference == reference)).first()


def _get_hold(hold_id: int) -> CreditHold:
    hold = _holds().where(CreditHold.id == hold_id).first()
    if hold is None:
        raise NotFound(f"hold {hold_id} not found")
    return hold


def _not_held(hold: CreditHold, now: datetime.datetime) -> FailedPrecondition:
    if hold.state == "expired" or (hold.state == "held" and hold.expires_at <= now):
        return FailedPrecondition(f"hold {hold.id} has expired", reason="HOLD_EXPIRED")
    return FailedPrecondition(f"hold {hold.id} is {hold.state}, not held", reason="HOLD_NOT_HELD")


def _capture_writes(hold_id: int, now: datetime.datetime, actor: str) -> tuple | None:
    """The capture's writes, in the caller's transaction. The conditional UPDATE of the hold
    decides between racing capture, release and expiry: None when the hold was not held."""
    if is_postgres(database.obj):
        return _CAPTURE_PG.row(database, now, hold_id, now, now, actor, now)
    won = _CAPTURE_HOLD.row(database, now, hold_id, now)
    if won is None:
        return None
    organization_id, amount, reference, user_id, _expires_at, _created_at = won
    (balance_after,) = _CHARGE_HELD.row(database, amount, amount, now, organization_id)
    (log_id,) = _INSERT_RENDER_LOG.row(database, organization_id, user_id, hold_id, -amount,
                                       balance_after, reference, actor, now)
    return (*won, log_id, balance_after)


def capture_hold(hold_id: int, *, now: datetime.datetime,
                 actor: str = "render-service") -> tuple[CreditHold, CreditLog]:
    """held -> captured: balance and held drop by the amount, one `render` log row.
    Capturing again returns the same row."""
    with database.atomic():
        captured = _capture_writes(hold_id, now, actor)
        if captured is None:
            hold = _get_hold(hold_id)
            if hold.state == "captured":
                return hold, CreditLog.get(CreditLog.hold == hold_id)
            raise _not_held(hold, now)
    (organization_id, amount, reference, user_id, expires_at, created_at, log_id,
     balance_after) = captured
    hold = CreditHold(id=hold_id, organization=organization_id, user=user_id, amount=amount,
                      state="captured", reference=reference,
                      expires_at=CreditHold.expires_at.python_value(expires_at),
                      created_at=CreditHold.created_at.python_value(created_at),
                      updated_at=now)
    hold.credit_log_id = log_id
    log = CreditLog(id=log_id, organization=organization_id, user=user_id, hold=hold_id,
                    delta=-amount, balance_after=balance_after, kind="render",
                    reason="render charge", reference=reference, actor=actor, created_at=now)
    return hold, log


def release_hold(hold_id: int, *, now: datetime.datetime) -> CreditHold:
    """held -> released. Releasing again, or releasing an expired hold, changes nothing;
    a captured hold cannot be released."""
    with database.atomic():
        won = _RELEASE_HOLD.row(database, now, hold_id)
        if won is not None:
            organization_id, amount = won
            _UNHOLD_CREDITS.count(database, amount, now, organization_id)
        hold = _get_hold(hold_id)
        if won is None and hold.state == "captured":
            raise FailedPrecondition(f"hold {hold_id} is captured and cannot be released",
                                     reason="HOLD_NOT_HELD")
    return hold


def list_credit_logs(page_size: int, page_token: str, *, organization_id: int = 0,
                     kind: str = "", user_id: int = 0) -> Page:
    query = CreditLog.select()
    if organization_id:
        query = query.where(CreditLog.organization == organization_id)
    if kind:  # already one of CREDIT_LOG_KINDS: the servicer maps the enum
        query = query.where(CreditLog.kind == kind)
    if user_id:
        query = query.where(CreditLog.user == user_id)
    return paginate(query, CreditLog.created_at, CreditLog.id, page_size, page_token)
