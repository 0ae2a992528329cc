"""The ledger's hot statements, written once as SQL, and the plain frozen views they return.

Peewee builds a query's SQL anew on every call (~0.3 ms of CPU each); on the reserve and capture
path that costs more than the database work itself, so these few statements are prepared text
(see carpet_common.db.Statement). Each transaction touches the organisation's balance row last,
so its row lock is held only from that UPDATE to COMMIT. PostgreSQL runs the reserve and the
capture as one statement each (data-modifying CTEs), so the balance row is locked for a single
round trip; SQLite has no such CTEs, and its writers are serialised by the IMMEDIATE lock anyway,
so it runs the statements one by one. Every function here runs inside its caller's transaction.
"""
from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carpet_common.db import Statement, is_postgres, require_transaction
from credit_service.controls import BalanceState
from credit_service.models import CreditHold, database

# driver value -> naive UTC datetime
_as_time: Callable[[object], datetime.datetime] = CreditHold.expires_at.python_value


@dataclass(frozen=True)
class HoldView:
    id: int
    organization_id: int
    user_id: int | None
    amount: int
    state: str
    reference: str
    expires_at: datetime.datetime
    credit_log_id: int | None = None  # the `render` row that captured it
    release_reason: str = ""


@dataclass(frozen=True)
class CreditLogView:
    id: int
    organization_id: int
    user_id: int | None
    delta: int
    balance_after: int
    kind: str
    reason: str
    reference: str
    actor: str
    created_at: datetime.datetime
    grant_id: int | None = None  # the grant it added or expired


# The `render` row's reason; the capture statements below spell it in their SQL.
RENDER_CHARGE = "render charge"

_BALANCE_NOW = Statement("""
    SELECT b.balance, b.held - COALESCE((
        SELECT SUM(h.amount) FROM credit_hold h
        WHERE h.organization_id = {organization_id} AND h.state = 'held'
          AND h.expires_at <= {now}), 0) AS held_now
    FROM credit_balance b WHERE b.organization_id = {organization_id}""")
_HOLD_VALUES = """({organization_id}, {user_id}, {amount}, 'held', {reference}, {expires_at},
                   {now}, {now}, '')"""
_INSERT_HOLD = Statement(f"""
    INSERT INTO credit_hold (organization_id, user_id, amount, state, reference, expires_at,
                             created_at, updated_at, release_reason)
    VALUES {_HOLD_VALUES}
    ON CONFLICT (organization_id, reference) DO NOTHING
    RETURNING id""")
# What the reservation's balance UPDATE returns: the row after it, for the alert and the
# limits (credit_service.controls); a suspended organisation's row is not updated.
_STATE = ("balance, held, low_balance_threshold, low_balance_armed, monthly_credit_limit, "
          "user_daily_credit_limit")
_NOT_SUSPENDED = ("NOT EXISTS (SELECT 1 FROM organization o WHERE o.id = {organization_id} "
                  "AND o.suspended_at IS NOT NULL)")
_HOLD_CREDITS_SET = f"""
    UPDATE credit_balance SET held = held + {{amount}}, updated_at = {{now}}
    WHERE organization_id = {{organization_id}} AND balance - held >= {{amount}}
      AND {_NOT_SUSPENDED}"""
_HOLD_CREDITS = Statement(f"{_HOLD_CREDITS_SET} RETURNING {_STATE}")
_RESERVE_PG = Statement(f"""
    WITH hold AS (
        INSERT INTO credit_hold (organization_id, user_id, amount, state, reference,
                                 expires_at, created_at, updated_at, release_reason)
        VALUES {_HOLD_VALUES}
        ON CONFLICT (organization_id, reference) DO NOTHING
        RETURNING id),
    reserved AS ({_HOLD_CREDITS_SET} AND EXISTS (SELECT 1 FROM hold) RETURNING {_STATE})
    SELECT (SELECT id FROM hold) AS hold_id, reserved.*
    FROM (SELECT 1) one LEFT JOIN reserved ON true""")
_CAPTURE_HOLD = Statement("""
    UPDATE credit_hold SET state = 'captured', updated_at = {now}
    WHERE id = {hold_id} AND state = 'held' AND expires_at > {now}
    RETURNING organization_id, amount, reference, user_id, expires_at""")
_CHARGE_HELD = Statement("""
    UPDATE credit_balance SET balance = balance - {amount}, held = held - {amount},
                              updated_at = {now}
    WHERE organization_id = {organization_id}
    RETURNING balance""")
_INSERT_RENDER_LOG = Statement("""
    INSERT INTO credit_log (organization_id, user_id, hold_id, delta, balance_after, kind,
                            reason, reference, actor, created_at)
    VALUES ({organization_id}, {user_id}, {hold_id}, {delta}, {balance_after}, 'render',
            'render charge', {reference}, {actor}, {now})
    RETURNING id""")
# `spent`: the hold's draws leave their grants. It is joined with `charged`, so no grant row is
# locked before the balance row (the order every ledger transaction keeps: no deadlocks).
_CAPTURE_PG = Statement("""
    WITH captured AS (
        UPDATE credit_hold SET state = 'captured', updated_at = {now}
        WHERE id = {hold_id} AND state = 'held' AND expires_at > {now}
        RETURNING id, organization_id, amount, reference, user_id, expires_at),
    charged AS (
        UPDATE credit_balance b
        SET balance = b.balance - c.amount, held = b.held - c.amount, updated_at = {now}
        FROM captured c WHERE b.organization_id = c.organization_id
        RETURNING b.balance),
    logged AS (
        INSERT INTO credit_log (organization_id, user_id, hold_id, delta, balance_after, kind,
                                reason, reference, actor, created_at)
        SELECT c.organization_id, c.user_id, c.id, -c.amount, charged.balance, 'render',
               'render charge', c.reference, {actor}, {now}
        FROM captured c, charged
        RETURNING id, balance_after),
    spent AS (
        UPDATE credit_grant g SET remaining = g.remaining - d.amount, held = g.held - d.amount
        FROM credit_hold_draw d, captured c, charged
        WHERE d.hold_id = c.id AND g.id = d.grant_id)
    SELECT c.organization_id, c.amount, c.reference, c.user_id, c.expires_at,
           logged.id AS log_id, logged.balance_after
    FROM captured c, logged""")
_RELEASE_HOLD = Statement("""
    UPDATE credit_hold SET state = 'released', release_reason = {reason}, updated_at = {now}
    WHERE id = {hold_id} AND state = 'held'
    RETURNING organization_id, amount""")
# Giving credit back re-arms the low-balance alert once the available credit is back at or
# above its threshold (credit_service.controls); {amount}: what is given back.
REARM = "low_balance_armed OR balance - (held - {amount}) >= low_balance_threshold"
_UNHOLD_CREDITS = Statement(f"""
    UPDATE credit_balance SET held = held - {{amount}}, low_balance_armed = ({REARM}),
                              updated_at = {{now}}
    WHERE organization_id = {{organization_id}}""")


# Grants (`docs/data-rules.md`). Spendable: effective, not expired (whether or not the sweeper has
# run), with something not held; spent in this order. Every statement below runs after its
# transaction has locked the organisation's balance row (the reservation's or capture's balance
# UPDATE comes first), so one organisation's grants change one transaction at a time and each
# statement reads them as the previous transaction committed them.
SPEND_ORDER = "priority, expires_at IS NULL, expires_at, created_at, id"
_SPENDABLE = f"""
    SELECT id, remaining - held AS spendable,
           SUM(remaining - held) OVER (ORDER BY {SPEND_ORDER}
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               - (remaining - held) AS before
    FROM credit_grant
    WHERE organization_id = {{organization_id}} AND remaining > held AND expired_at IS NULL
      AND effective_at <= {{now}} AND (expires_at IS NULL OR expires_at > {{now}})"""
# How much of {amount} each spendable grant gives, in order.
_TAKE = f"""
    WITH ordered AS ({_SPENDABLE})
    SELECT id, CASE WHEN spendable < {{amount}} - before THEN spendable
                    ELSE {{amount}} - before END
    FROM ordered WHERE before < {{amount}}"""
_DRAW = Statement(f"""
    INSERT INTO credit_hold_draw (hold_id, grant_id, amount)
    SELECT {{hold_id}}, taken.* FROM ({_TAKE}) taken""")
_HOLD_DRAWS = Statement("""
    UPDATE credit_grant SET held = held + d.amount
    FROM credit_hold_draw d WHERE d.hold_id = {hold_id} AND credit_grant.id = d.grant_id""")
# The grants are updated before the draws that reference them are inserted: the foreign key's
# check then finds the rows already locked by this transaction, instead of share-locking them
# first and updating them after (a MultiXact on every reservation of a hot grant).
_DRAW_PG = Statement(f"""
    WITH taken(id, amount) AS ({_TAKE}),
    held AS (
        UPDATE credit_grant g SET held = g.held + taken.amount
        FROM taken WHERE g.id = taken.id
        RETURNING g.id, taken.amount),
    drawn AS (
        INSERT INTO credit_hold_draw (hold_id, grant_id, amount)
        SELECT {{hold_id}}, id, amount FROM held
        RETURNING amount)
    SELECT COALESCE(SUM(amount), 0) AS drawn FROM drawn""")
_DRAWN = Statement("""
    SELECT COALESCE(SUM(amount), 0) AS drawn FROM credit_hold_draw WHERE hold_id = {hold_id}""")
_SPEND_DRAWS = Statement("""
    UPDATE credit_grant SET remaining = remaining - d.amount, held = held - d.amount
    FROM credit_hold_draw d WHERE d.hold_id = {hold_id} AND credit_grant.id = d.grant_id""")
# A hold that ends uncaptured gives back to its grants; to an expired one, what it gives back
# expires with it (its `expire` rows are written by the caller, from _LAPSING read first).
_LAPSING = Statement("""
    SELECT d.grant_id, d.amount FROM credit_hold_draw d
    JOIN credit_grant g ON g.id = d.grant_id
    WHERE d.hold_id = {hold_id} AND g.expired_at IS NOT NULL ORDER BY d.grant_id""")
_RETURN_DRAWS = Statement("""
    UPDATE credit_grant
    SET held = held - d.amount,
        remaining = remaining - CASE WHEN expired_at IS NULL THEN 0 ELSE d.amount END
    FROM credit_hold_draw d WHERE d.hold_id = {hold_id} AND credit_grant.id = d.grant_id""")
# A negative adjustment spends from the grants in the same order, without a hold.
_CONSUME = Statement(f"""
    WITH taken(id, amount) AS ({_TAKE})
    UPDATE credit_grant SET remaining = remaining - (
        SELECT taken.amount FROM taken WHERE taken.id = credit_grant.id)
    WHERE id IN (SELECT id FROM taken)""")
_SPENDABLE_TOTAL = Statement(f"""
    SELECT COALESCE(SUM(spendable), 0) AS spendable FROM ({_SPENDABLE}) ordered""")


# The ledger's statements by name, for the bench's ceilings (bench/credit_workloads.py,
# bench/render_workloads.py), which run these very statements with nothing around them.
STATEMENTS = {
    "reserve_pg": _RESERVE_PG, "draw_pg": _DRAW_PG, "capture_pg": _CAPTURE_PG,
    "insert_hold": _INSERT_HOLD, "hold_credits": _HOLD_CREDITS, "draw": _DRAW,
    "hold_draws": _HOLD_DRAWS, "drawn": _DRAWN, "capture_hold": _CAPTURE_HOLD,
    "charge_held": _CHARGE_HELD, "insert_render_log": _INSERT_RENDER_LOG,
    "spend_draws": _SPEND_DRAWS,
}


def balance_now(organization_id: int, now: datetime.datetime) -> tuple[int, int] | None:
    """(balance, held not counting holds past their expiry), or None for no organisation."""
    found = _BALANCE_NOW.row(database, organization_id=organization_id, now=now)
    return None if found is None else (found.balance, int(found.held_now))


def _state(row: Any) -> BalanceState:
    return BalanceState(row.balance, row.held, row.low_balance_threshold,
                        row.low_balance_armed, row.monthly_credit_limit,
                        row.user_daily_credit_limit)


def insert_and_hold(organization_id: int, user_id: int | None, amount: int, reference: str,
                    expires_at: datetime.datetime, now: datetime.datetime
                    ) -> tuple[int | None, BalanceState | None]:
    """(new hold id, or None when the reference already has one; the balance row after holding
    the credits, or None when they were not held). The balance is raised by a conditional
    UPDATE: it holds only what is available, and nothing for a suspended organisation."""
    require_transaction(database)
    hold = dict(organization_id=organization_id, user_id=user_id, amount=amount,
                reference=reference, expires_at=expires_at, now=now)
    if is_postgres(database.obj):
        reserved = _RESERVE_PG.row(database, **hold)
        return reserved.hold_id, (_state(reserved) if reserved.balance is not None else None)
    inserted = _INSERT_HOLD.row(database, **hold)
    if inserted is None:
        return None, None
    state = _HOLD_CREDITS.row(database, amount=amount, now=now, organization_id=organization_id)
    return inserted.id, (_state(state) if state is not None else None)


def capture(hold_id: int, now: datetime.datetime, actor: str
            ) -> tuple[HoldView, CreditLogView] | None:
    """held -> captured with its `render` log row; None when the hold was not held (the
    conditional UPDATE decides between racing capture, release and expiry)."""
    require_transaction(database)
    if is_postgres(database.obj):
        won = _CAPTURE_PG.row(database, now=now, hold_id=hold_id, actor=actor)
        if won is None:
            return None
        log_id, balance_after = won.log_id, won.balance_after
    else:
        won = _CAPTURE_HOLD.row(database, now=now, hold_id=hold_id)
        if won is None:
            return None
        balance_after = _CHARGE_HELD.row(database, amount=won.amount, now=now,
                                         organization_id=won.organization_id).balance
        log_id = _INSERT_RENDER_LOG.row(
            database, organization_id=won.organization_id, user_id=won.user_id,
            hold_id=hold_id, delta=-won.amount, balance_after=balance_after,
            reference=won.reference, actor=actor, now=now).id
        spend_draws(hold_id)
    hold = HoldView(id=hold_id, organization_id=won.organization_id, user_id=won.user_id,
                    amount=won.amount, state="captured", reference=won.reference,
                    expires_at=_as_time(won.expires_at), credit_log_id=log_id)
    log = CreditLogView(id=log_id, organization_id=won.organization_id, user_id=won.user_id,
                        delta=-won.amount, balance_after=balance_after, kind="render",
                        reason=RENDER_CHARGE, reference=won.reference, actor=actor,
                        created_at=now)
    return hold, log


def release(hold_id: int, reason: str, now: datetime.datetime) -> bool:
    """held -> released (keeping why), its amount no longer held; False when not held."""
    require_transaction(database)
    won = _RELEASE_HOLD.row(database, reason=reason, now=now, hold_id=hold_id)
    if won is None:
        return False
    _UNHOLD_CREDITS.count(database, amount=won.amount, now=now,
                          organization_id=won.organization_id)
    return True


def draw(hold_id: int, organization_id: int, amount: int, now: datetime.datetime) -> int:
    """Reserve `amount` for the hold from the organisation's spendable grants, in order; what
    was drawn (less than `amount` when they do not cover it: the caller rolls back)."""
    require_transaction(database)
    take = dict(organization_id=organization_id, now=now, amount=amount, hold_id=hold_id)
    if is_postgres(database.obj):
        return int(_DRAW_PG.row(database, **take).drawn)
    _DRAW.count(database, **take)
    _HOLD_DRAWS.count(database, hold_id=hold_id)
    return int(_DRAWN.row(database, hold_id=hold_id).drawn)


def spend_draws(hold_id: int) -> None:
    """The hold was captured: what it reserved leaves its grants."""
    require_transaction(database)
    _SPEND_DRAWS.count(database, hold_id=hold_id)


def return_draws(hold_id: int) -> list[tuple[int, int]]:
    """The hold ended uncaptured: give back to its grants; (grant, amount) that expired with
    an expired grant, for the caller's `expire` rows and balance."""
    require_transaction(database)
    lapsing = [(row.grant_id, int(row.amount))
               for row in _LAPSING.rows(database, hold_id=hold_id)]
    _RETURN_DRAWS.count(database, hold_id=hold_id)
    return lapsing


def consume(organization_id: int, amount: int, now: datetime.datetime) -> bool:
    """Spend `amount` from the spendable grants in order (a negative adjustment); False when
    they do not cover it (nothing is changed)."""
    require_transaction(database)
    spendable = _SPENDABLE_TOTAL.row(database, organization_id=organization_id, now=now).spendable
    if spendable < amount:
        return False
    _CONSUME.count(database, organization_id=organization_id, now=now, amount=amount)
    return True

