"""The reference model and the invariants checked after every step.

The model learns only from what the simulated network saw committed (`on_committed`: every
answer of the credit service, whether or not its reply reached the caller) and from what the
operations did; it never copies the balances it checks. What it predicts:

- credit conserved: each organisation's balance is its seed, plus every adjustment and grant,
  minus every capture, minus what its grants' expiry took (the `expire` rows, whose amounts
  depend on the order grants were spent in); every balance equals its grants' remainders;
- nothing negative: balance >= held >= 0; every grant's remainder >= its held part >= 0;
  held equals the sum of the holds still held;
- a hold resolved at most once: a captured, released or expired hold never changes again, a
  hold expires only once it is overdue, and every hold in the database is one the network
  saw made;
- every finished job has exactly one credit outcome: a success charged by the capture of its
  own hold for its cost (or an uncharged fallback), a failure never captured; a finished job
  never changes again;
- no spend beyond a limit: after every reservation, the month's holds and captures of the
  organisation are within the monthly limit the model knows was set;
- an idempotent replay returns the first answer: the same submission key the same job, the
  same adjustment key the same credit-log row, the same reference the same hold, a capture
  again the same row;
- a spent refresh token never signs in again, and reusing one ends its session;
- and, every CHECK_EVERY steps and at the end: `verify` (which also verifies the audit chain),
  the render counts, one webhook event per change; after draining the background work at the
  end of a run, `reconcile` across both databases.
"""
from __future__ import annotations

import datetime
import json
from collections import defaultdict

from peewee import fn

from carpet_common.errors import Unauthenticated
from credit_service import verify as credit_verify
from credit_service.models import (
    CreditBalance,
    CreditHold,
    CreditLog,
    WebhookEvent,
)
from ops.reconcile import problems as reconcile_problems
from protos.carpet.credit.v1 import credit_pb2
from render_service import verify as render_verify
from render_service.models import RenderJob
from render_service.renderers import FALLBACK_RENDERER

from . import world as sim_world

TERMINAL_HOLD = ("captured", "released", "expired")
CHECK_EVERY = 50
REFRESH_TTL = datetime.timedelta(seconds=sim_world.REFRESH_TTL_S)


# The per-step checks in plain SQL (they run after every step: built once, not per query).
_NEW_EXPIRE_ROWS = ("SELECT organization_id, delta FROM credit_log WHERE id > %s "
                    "AND kind = 'expire'")
_LAST_LOG_ROW = "SELECT MAX(id) FROM credit_log"
_BALANCES = """
    SELECT b.organization_id, b.balance, b.held,
           COALESCE(g.remaining, 0), COALESCE(g.held, 0), COALESCE(g.bad, 0),
           COALESCE(h.held, 0)
    FROM credit_balance b
    LEFT JOIN (SELECT organization_id, SUM(remaining) AS remaining, SUM(held) AS held,
                      SUM(CASE WHEN held < 0 OR remaining < held THEN 1 ELSE 0 END) AS bad
               FROM credit_grant GROUP BY organization_id) g
           ON g.organization_id = b.organization_id
    LEFT JOIN (SELECT organization_id, SUM(amount) AS held FROM credit_hold
               WHERE state = 'held' GROUP BY organization_id) h
           ON h.organization_id = b.organization_id"""
_CHANGED_HOLDS = ("SELECT id, state, CASE WHEN updated_at >= expires_at THEN 1 ELSE 0 END "
                  "FROM credit_hold WHERE updated_at >= %s")
_CHANGED_JOBS = ("SELECT id, status, credits_charged, credit_log_id, hold_id, cost, renderer "
                 "FROM render_job WHERE updated_at >= %s")


def _stored(field, moment):
    """A time as the column keeps it (SQLite: text)."""
    return field.db_value(moment)


class Model:
    def __init__(self):
        self.violations: list[str] = []
        self.expected_balance: dict[int, int] = {}
        self.applied_logs: set[int] = set()
        self.keyed_logs: dict[str, int] = {}  # idempotency key -> the credit log it made
        self.holds: dict[int, dict] = {}  # hold id -> state, amount, organisation, expires_at
        self.references: dict[tuple[int, str], int] = {}
        self.captures: dict[int, int] = {}  # hold id -> its render log row
        self.jobs_final: dict[int, tuple] = {}
        self.submissions: dict[tuple[int, str], int] = {}
        self.limits: dict[int, int] = defaultdict(int)
        self.tokens: dict[str, str] = {}  # refresh token -> session id
        self.token_expiry: dict[str, datetime.datetime] = {}
        self.now = lambda: sim_world.EPOCH
        self.spent: set[str] = set()
        self.ended_sessions: set[str] = set()
        self.steps = 0
        self.uncharged_holds: dict[int, int] = {}  # hold id -> its job, ended without charge
        self._checked_at = sim_world.EPOCH
        self._last_expire_row = 0

    def start(self, world) -> None:
        self.now = world.now
        for organization_id, (_, credits) in enumerate(sim_world.ORGANIZATIONS, start=1):
            self.expected_balance[organization_id] = credits

    # --- what the network saw committed ----------------------------------------------------
    def on_committed(self, kind: str, answer, key: str = "") -> None:
        if kind in ("adjust", "grant", "capture"):
            self._apply_log(answer.log)
        if key:
            first = self.keyed_logs.setdefault(key, answer.log.id)
            if first != answer.log.id:
                self.fail(f"idempotency: key {key} answered log {answer.log.id}, first {first}")
        if kind in ("reserve", "release", "capture"):
            self._hold_answer(kind, answer.hold if kind == "capture" else answer)
        if kind == "capture":
            if answer.hold.id in self.uncharged_holds:
                self.fail(f"one credit outcome: the hold of job "
                          f"{self.uncharged_holds[answer.hold.id]}, ended uncharged, was "
                          f"captured")
            first = self.captures.setdefault(answer.hold.id, answer.log.id)
            if first != answer.log.id:
                self.fail(f"idempotency: capture of hold {answer.hold.id} answered log "
                          f"{answer.log.id}, first {first}")
        if kind in ("sign_in", "refresh"):
            self.tokens[answer.refresh_token] = answer.session_id
            self.token_expiry[answer.refresh_token] = self.now() + REFRESH_TTL

    def organization_made(self, organization_id: int, initial_credits: int) -> None:
        """Committed (its answer may still be lost); made again by a replay: the same one."""
        self.expected_balance.setdefault(organization_id, initial_credits)

    def _apply_log(self, log) -> None:
        if log.id not in self.applied_logs:
            self.applied_logs.add(log.id)
            self.expected_balance[log.organization_id] += log.delta

    def _hold_answer(self, kind: str, hold) -> None:
        known = self.holds.get(hold.id)
        state = credit_pb2.HoldState.Name(hold.state).removeprefix("HOLD_STATE_").lower()
        if known is None:
            if kind != "reserve":
                self.fail(f"hold {hold.id}: {kind} answered a hold never reserved")
                return
            self.holds[hold.id] = {"state": state, "amount": hold.amount,
                                   "organization_id": hold.organization_id,
                                   "expires_at": hold.expires_at.ToDatetime()}
            known = self.holds[hold.id]
            self.check_limit(hold.organization_id, self.now())
        key = (hold.organization_id, hold.reference)
        if self.references.setdefault(key, hold.id) != hold.id:
            self.fail(f"idempotency: reference {hold.reference} made holds "
                      f"{self.references[key]} and {hold.id}")
        if known["state"] in TERMINAL_HOLD and state != known["state"]:
            self.fail(f"hold resolved twice: hold {hold.id} was {known['state']}, a {kind} "
                      f"answered {state}")
        known["state"] = state

    def submitted(self, organization_id: int, key: str, job_id: int) -> None:
        first = self.submissions.setdefault((organization_id, key), job_id)
        if first != job_id:
            self.fail(f"idempotency: submission key {key} answered job {job_id}, first {first}")

    def refresh_refused(self, token: str, error: Exception) -> None:
        if not isinstance(error, Unauthenticated):
            return  # a suspended organisation or a deactivated user: refused as it should be
        session = self.tokens.get(token)
        if session is not None and token not in self.spent and \
                session not in self.ended_sessions and self.now() < self.token_expiry[token]:
            self.fail(f"sign-in: a live refresh token of session {session} was refused")

    def refresh_presented(self, token: str, answered: bool) -> None:
        session = self.tokens.get(token)
        expired = self.now() >= self.token_expiry.get(token, self.now())
        if token in self.spent:
            if answered:
                self.fail(f"sign-in: a spent refresh token of session {session} signed in")
            if not expired:
                self.ended_sessions.add(session)  # a copy in other hands: the session ends
        elif answered and (session in self.ended_sessions or expired):
            self.fail(f"sign-in: session {session} refreshed after it ended or expired")
        if answered:
            self.spent.add(token)

    def fail(self, text: str) -> None:
        self.violations.append(text)

    # --- after every step ----------------------------------------------------------------
    def check(self, world) -> None:
        """The step's invariants, on what changed since the last check (a row's updated_at is
        the clock of the change that wrote it; the clock never goes back)."""
        self.steps += 1
        since = self._checked_at
        self._checked_at = world.now()
        self._check_money()
        self._check_holds(since, self._checked_at)
        self._check_jobs(since)
        if self.steps % CHECK_EVERY == 0:
            self.check_thoroughly()

    def _rows(self, database, sql: str, *params) -> list[tuple]:
        return list(database.execute_sql(sql.replace("%s", database.param), params).fetchall())

    def _check_money(self) -> None:
        database = CreditBalance._meta.database
        for org, delta in self._rows(database, _NEW_EXPIRE_ROWS, self._last_expire_row):
            self.expected_balance[org] += delta
        self._last_expire_row = self._rows(database, _LAST_LOG_ROW)[0][0] or 0
        for org, balance, held, remaining, grants_held, bad_grants, holds in self._rows(
                database, _BALANCES):
            expected = self.expected_balance.get(org, 0)
            if balance != expected:
                self.fail(f"credit conserved: organisation {org} has {balance}, the model "
                          f"expects {expected}")
            if not balance >= held >= 0 or bad_grants:
                self.fail(f"nothing negative: organisation {org} balance {balance} held {held}, "
                          f"{bad_grants} grants holding more than they have or below zero")
            if (remaining, grants_held) != (balance, held):
                self.fail(f"credit conserved: organisation {org} balance/held {balance}/{held}, "
                          f"its grants {remaining}/{grants_held}")
            if held != holds:
                self.fail(f"nothing negative: organisation {org} held {held}, its held holds "
                          f"{holds}")

    def _check_holds(self, since, now) -> None:
        database = CreditHold._meta.database
        for hold_id, state, overdue in self._rows(database, _CHANGED_HOLDS,
                                                  _stored(CreditHold.updated_at, since)):
            known = self.holds.get(hold_id)
            if known is None:
                self.fail(f"hold {hold_id} exists but no reservation of it was ever committed")
                continue
            if state == known["state"]:
                continue
            if known["state"] == "held" and state == "expired" and overdue \
                    and now >= known["expires_at"]:
                known["state"] = "expired"  # the sweeper or a reservation expired it
            else:
                self.fail(f"hold resolved twice: hold {hold_id} is {state}, the model has "
                          f"{known['state']}")
                known["state"] = state

    def _check_jobs(self, since) -> None:
        database = RenderJob._meta.database
        for job in self._rows(database, _CHANGED_JOBS, _stored(RenderJob.updated_at, since)):
            job_id, status, charged, log_id, hold_id, cost, renderer = job
            first = self.jobs_final.get(job_id)
            if first is not None:
                if first[:3] != job[:3]:
                    self.fail(f"finished job changed: job {job_id} was {first[1]}/{first[2]}, "
                              f"now {status}/{charged}")
                continue
            if status not in ("success", "failed"):
                continue
            self.jobs_final[job_id] = job
            captured = self.captures.get(hold_id) if hold_id else None
            if status == "success" and charged:
                if captured is None or captured != log_id or charged != cost:
                    self.fail(f"one credit outcome: success job {job_id} charged {charged} by "
                              f"log {log_id}; its hold {hold_id} captured by {captured}")
            elif status == "success" and renderer != FALLBACK_RENDERER:
                self.fail(f"one credit outcome: job {job_id} succeeded uncharged")
            elif captured is not None:
                self.fail(f"one credit outcome: {status} job {job_id} was charged "
                          f"(its hold {hold_id} captured)")
            elif hold_id:
                self.uncharged_holds[hold_id] = job_id  # its hold must never be captured now

    def check_limit(self, organization_id: int, now) -> None:
        """After a new hold was committed: the month's holds within the known limit."""
        limit = self.limits[organization_id]
        if not limit:
            return
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = (CreditHold.select(fn.SUM(CreditHold.amount))
                 .where((CreditHold.organization == organization_id)
                        & (CreditHold.created_at >= month)
                        & CreditHold.state.in_(("held", "captured"))).scalar() or 0)
        if spent > limit:
            self.fail(f"spend limit: organisation {organization_id} holds {spent} this month, "
                      f"its limit is {limit}")

    def check_thoroughly(self) -> None:
        for problem in [*credit_verify.verify_credit(), *render_verify.count_problems()]:
            self.fail(f"verify: {problem}")
        self._check_webhooks()

    def _check_webhooks(self) -> None:
        """One credit.adjusted event per adjustment or grant (the endpoint takes every event
        of every organisation), each with its own id."""
        changes = {log_id for (log_id,) in CreditLog.select(CreditLog.id).where(
            CreditLog.kind == "adjust").tuples()}
        named = [json.loads(body)["data"]["creditLogId"] for (body,) in WebhookEvent.select(
            WebhookEvent.body).where(WebhookEvent.type == "credit.adjusted").tuples()]
        if sorted(named) != sorted(changes):
            extra = len(named) - len(set(named))
            self.fail(f"webhook: {len(named)} credit.adjusted events ({extra} repeated) for "
                      f"{len(changes)} adjustments")

    def check_at_rest(self) -> None:
        """After the run's background work has drained: every ledger agrees across both."""
        self.check_thoroughly()
        for problem in reconcile_problems():
            self.fail(f"reconcile: {problem}")
        open_holds = CreditHold.select().where(CreditHold.state == "held").count()
        if open_holds:
            self.fail(f"at rest: {open_holds} holds still held after every hold expired")
