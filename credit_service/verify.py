"""`python -m credit_service verify`: checks the credit invariants of docs/data-rules.md.

1. balance = sum of the organisation's credit-log deltas; 2. held = sum of its `held` holds;
3. every `adjust` row has its audit row, every `seed` row its organisation's creation, and each
says what its row holds (organisation, amount, reference): the chain makes audit rows
unforgeable without AUDIT_HMAC_KEY, so books rewritten consistently (log, balance, grants,
roll-up) still disagree with their audit rows; 5. the audit hash chain is unbroken; 6. the
balance is made of its grants (credit_service.grants); and the daily roll-up of the usage chart
(credit_daily) equals a recount of the log.
Returns readable problem lines; the CLI exits non-zero when there are any.
"""
from __future__ import annotations

import json

from peewee import JOIN, Case, fn

from carpet_common.db import tuples
from credit_service.audit import broken_links
from credit_service.models import (
    AuditLog,
    CreditBalance,
    CreditDaily,
    CreditGrant,
    CreditHold,
    CreditHoldDraw,
    CreditLog,
    Organization,
)


def balance_mismatches() -> list[str]:
    ledger_sum = (CreditLog.select(CreditLog.organization.alias("org_id"),
                                   fn.SUM(CreditLog.delta).alias("total"))
                  .group_by(CreditLog.organization).alias("ledger"))
    rows = tuples(Organization.select(Organization.id, CreditBalance.balance,
                                      fn.COALESCE(ledger_sum.c.total, 0).alias("total"))
                  .join(CreditBalance, JOIN.LEFT_OUTER,
                        on=(CreditBalance.organization == Organization.id))
                  .join(ledger_sum, JOIN.LEFT_OUTER, on=(ledger_sum.c.org_id == Organization.id))
                  .order_by(Organization.id))
    problems = []
    for organization_id, balance, total in rows:
        if balance is None:
            problems.append(f"invariant 1: organisation {organization_id} has no balance row")
        elif balance != int(total):
            problems.append(f"invariant 1: organisation {organization_id} balance {balance} "
                            f"!= sum of credit-log deltas {int(total)}")
    return problems


def held_mismatches() -> list[str]:
    open_holds = (CreditHold.select(CreditHold.organization.alias("org_id"),
                                    fn.SUM(CreditHold.amount).alias("total"))
                  .where(CreditHold.state == "held")
                  .group_by(CreditHold.organization).alias("open_holds"))
    rows = tuples(CreditBalance.select(CreditBalance.organization, CreditBalance.held,
                                       fn.COALESCE(open_holds.c.total, 0))
                  .join(open_holds, JOIN.LEFT_OUTER,
                        on=(open_holds.c.org_id == CreditBalance.organization))
                  .order_by(CreditBalance.organization))
    return [f"invariant 2: organisation {organization_id} held {held} != sum of held holds "
            f"{int(total)}" for organization_id, held, total in rows if held != int(total)]


def unaudited_adjustments() -> list[str]:
    rows = tuples(CreditLog.select(CreditLog.id)
                  .join(AuditLog, JOIN.LEFT_OUTER, on=(AuditLog.credit_log == CreditLog.id))
                  .where((CreditLog.kind == "adjust") & AuditLog.id.is_null())
                  .order_by(CreditLog.id))
    return [f"invariant 3: adjust credit_log {log_id} has no audit row" for (log_id,) in rows]


ORGANIZATION_CREATED = ("/carpet.credit.v1.AccountService/CreateOrganization",
                        "seed.CreateOrganization")


def audit_disagreements() -> list[str]:
    """Invariant 3, what the rows say: each credit-log row an audit row names has the audit
    row's organisation, amount (`delta` of an adjustment, `amount` of a grant) and reference
    (its idempotency key); each `seed` row has its organisation's creation audited with
    those initial credits."""
    problems = []
    rows = tuples(AuditLog.select(AuditLog.id, AuditLog.organization_id, AuditLog.details,
                                  CreditLog.id, CreditLog.organization, CreditLog.delta,
                                  CreditLog.reference)
                  .join(CreditLog, on=(AuditLog.credit_log == CreditLog.id)))
    for audit_id, audit_org, details, log_id, log_org, delta, reference in rows:
        said = _details(details)
        amount = said.get("delta", said.get("amount"))
        if (audit_org, _int(amount), said.get("idempotency_key", "")[:200]) != (
                log_org, delta, reference):
            problems.append(f"invariant 3: credit_log {log_id} (organisation {log_org}, delta "
                            f"{delta}, reference {reference!r}) disagrees with its audit row "
                            f"{audit_id} (organisation {audit_org}, amount {amount})")
    created = {}
    creations = (AuditLog.select(AuditLog.organization_id, AuditLog.details)
                 .where(AuditLog.action.in_(ORGANIZATION_CREATED) & (AuditLog.outcome == "ok")))
    for organization_id, details in tuples(creations):
        created[organization_id] = _int(_details(details).get("initial_credits"))
    seeds = (CreditLog.select(CreditLog.id, CreditLog.organization, CreditLog.delta)
             .where(CreditLog.kind == "seed"))
    for log_id, organization_id, delta in tuples(seeds):
        if organization_id not in created:
            problems.append(f"invariant 3: seed credit_log {log_id} of organisation "
                            f"{organization_id} has no audited creation")
        elif created[organization_id] != delta:
            problems.append(f"invariant 3: seed credit_log {log_id} of organisation "
                            f"{organization_id} says {delta}; its audited creation says "
                            f"{created[organization_id]}")
    return problems


def _details(text: str) -> dict:
    try:
        said = json.loads(text or "{}")
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def daily_mismatches() -> list[str]:
    """credit_daily (the usage chart's roll-up) equals a recount of credit_log."""
    day = fn.date(CreditLog.created_at).coerce(False)  # a function on both engines
    spent = fn.SUM(Case(None, [(CreditLog.kind == "render", 0 - CreditLog.delta)], 0))
    added = fn.SUM(Case(None, [((CreditLog.delta > 0) & CreditLog.kind.in_(("seed", "adjust")),
                                CreditLog.delta)], 0))
    recount = {(org, str(when)): (int(s), int(a)) for org, when, s, a in
               tuples(CreditLog.select(CreditLog.organization, day, spent, added)
                      .group_by(CreditLog.organization, day))}
    kept = {(org, str(when)): (int(s), int(a)) for org, when, s, a in
            tuples(CreditDaily.select(CreditDaily.organization_id, CreditDaily.day,
                                      CreditDaily.spent, CreditDaily.added))}
    problems = []
    for key in sorted(recount.keys() | kept.keys()):
        counted, rolled_up = recount.get(key, (0, 0)), kept.get(key, (0, 0))
        if counted != rolled_up:
            problems.append(f"credit daily: organisation {key[0]} on {key[1]}: the log says "
                            f"spent {counted[0]}, added {counted[1]}; credit_daily says "
                            f"spent {rolled_up[0]}, added {rolled_up[1]}")
    return problems


def grant_mismatches() -> list[str]:
    """Invariant 6 (`docs/data-rules.md`): the balance is the sum of the grants' `remaining`
    (unexpired grants' whole remainder, expired ones' only what open holds drew from them), `held`
    the sum of their `held`, and each grant's `held` is what its open holds drew from it. No grant
    below zero or above what it was is enforced by CHECKs."""
    by_grant = (CreditGrant.select(CreditGrant.organization.alias("org_id"),
                                   fn.SUM(CreditGrant.remaining).alias("remaining"),
                                   fn.SUM(CreditGrant.held).alias("held"))
                .group_by(CreditGrant.organization).alias("by_grant"))
    rows = tuples(CreditBalance.select(CreditBalance.organization, CreditBalance.balance,
                                       CreditBalance.held, fn.COALESCE(by_grant.c.remaining, 0),
                                       fn.COALESCE(by_grant.c.held, 0))
                  .join(by_grant, JOIN.LEFT_OUTER,
                        on=(by_grant.c.org_id == CreditBalance.organization))
                  .order_by(CreditBalance.organization))
    problems = []
    for organization_id, balance, held, remaining, grants_held in rows:
        if (balance, held) != (int(remaining), int(grants_held)):
            problems.append(f"invariant 6: organisation {organization_id} balance {balance}, "
                            f"held {held} != its grants' remaining {int(remaining)}, held "
                            f"{int(grants_held)}")
    drawn = (CreditHoldDraw.select(CreditHoldDraw.grant.alias("grant_id"),
                                   fn.SUM(CreditHoldDraw.amount).alias("total"))
             .join(CreditHold).where(CreditHold.state == "held")
             .group_by(CreditHoldDraw.grant).alias("drawn"))
    for grant_id, held, total in tuples(CreditGrant.select(CreditGrant.id, CreditGrant.held,
                                                           fn.COALESCE(drawn.c.total, 0))
                                        .join(drawn, JOIN.LEFT_OUTER,
                                              on=(drawn.c.grant_id == CreditGrant.id))
                                        .order_by(CreditGrant.id)):
        if held != int(total):
            problems.append(f"invariant 6: grant {grant_id} held {held} != what open holds "
                            f"drew from it {int(total)}")
    return problems


def verify_credit() -> list[str]:
    return [*balance_mismatches(), *held_mismatches(), *unaudited_adjustments(),
            *audit_disagreements(),
            *(f"invariant 5: {problem}" for problem in broken_links()), *grant_mismatches(),
            *daily_mismatches()]
