"""verify (credit_service.verify) as plain functions on books of two organisations: healthy books
pass, and each kind of tampering with one organisation's rows gives exactly its problem lines,
naming that organisation and row and never the other. Written from the mutants that survived
the end-to-end verify tests (`make mutate`, docs/testing.md)."""
import datetime
import json

import pytest

from credit_service import grants, ledger
from credit_service.audit import AuditEntry, append_audit
from credit_service.models import (
    AuditLog,
    CreditBalance,
    CreditDaily,
    CreditGrant,
    CreditHold,
    CreditLog,
)
from credit_service.verify import ORGANIZATION_CREATED, audit_disagreements, verify_credit
from tests.unit.domain.test_ledger import org

ADJUST = "/carpet.credit.v1.CreditService/AdjustCredits"


def audited_adjustment(organization_id, delta, key, clock, terms=None):
    """An adjustment with the audit row its RPC writes (the amount and key in its details)."""
    log, _ = ledger.adjust_credits(organization_id, delta, "bonus", actor="ops", reference=key,
                                   now=clock(), terms=terms)
    said = {"delta": delta} if terms is None else {"amount": delta}
    append_audit(AuditEntry(actor="ops", role="ADMIN", action=ADJUST, outcome="ok",
                            organization_id=organization_id, target=f"credit_log:{log.id}",
                            details=json.dumps({**said, "idempotency_key": key}),
                            credit_log_id=log.id))
    return log


@pytest.fixture
def books(credit_db, clock):
    """Acme and Other, each with its initial credit, an adjustment, a promotional grant, an
    open hold and a captured render. Other's ids come second."""
    made = {}
    for name, initial in (("Acme", 10), ("Other", 7)):
        organization_id = org(name, credits=initial, now=clock())
        adjustment = audited_adjustment(organization_id, 5, f"key-{name}", clock)
        audited_adjustment(organization_id, 3, f"promo-{name}", clock, grants.GrantTerms(
            kind="promotional", expires_at=clock() + datetime.timedelta(days=60)))
        held = ledger.reserve_credits(organization_id, 2, "job-1", 600, user_id=None,
                                      now=clock())
        charged = ledger.reserve_credits(organization_id, 1, "job-2", 600, user_id=None,
                                         now=clock())
        ledger.capture_hold(charged.id, now=clock())
        made[name] = (organization_id, adjustment, held)
    assert verify_credit() == []
    return made


def test_healthy_books_pass(books):
    acme, other = books["Acme"][0], books["Other"][0]
    assert [ledger.get_balance(o, datetime.datetime(2026, 11, 25, 12)).balance
            for o in (acme, other)] == [10 + 5 + 3 - 1, 7 + 5 + 3 - 1]


def test_a_balance_that_is_not_its_log(books):
    other = books["Other"][0]
    CreditBalance.update(balance=CreditBalance.balance + 1).where(
        CreditBalance.organization == other).execute()
    assert verify_credit() == [
        f"invariant 1: organisation {other} balance 15 != sum of credit-log deltas 14",
        f"invariant 6: organisation {other} balance 15, held 2 != its grants' remaining 14, "
        f"held 2"]


def test_held_credit_that_is_not_its_holds(books):
    acme, _, held = books["Acme"]
    CreditHold.update(state="released").where(CreditHold.id == held.id).execute()
    assert verify_credit() == [
        f"invariant 2: organisation {acme} held 2 != sum of held holds 0",
        *[f"invariant 6: grant {grant.id} held {grant.held} != what open holds drew from it 0"
          for grant in CreditGrant.select().where((CreditGrant.organization == acme)
                                                  & (CreditGrant.held > 0))]]


def test_an_adjustment_without_its_audit_row(books, clock):
    other = books["Other"][0]
    log, _ = ledger.adjust_credits(other, 4, "quiet", actor="ops", now=clock())
    assert verify_credit() == [f"invariant 3: adjust credit_log {log.id} has no audit row"]


def test_a_log_row_that_disagrees_with_its_audit_row(books):
    other, adjustment, _ = books["Other"]
    CreditLog.update(reference="forged").where(CreditLog.id == adjustment.id).execute()
    (audit_id,) = AuditLog.select(AuditLog.id).where(
        AuditLog.credit_log == adjustment.id).tuples()
    assert verify_credit() == [
        f"invariant 3: credit_log {adjustment.id} (organisation {other}, delta 5, reference "
        f"'forged') disagrees with its audit row {audit_id[0]} (organisation {other}, amount 5)"]


@pytest.mark.parametrize("details", ["not json", "[1, 2]", '{"delta": "five"}'])
def test_unreadable_audit_details_disagree(credit_db, clock, details):
    acme = org("Acme", credits=0, now=clock())
    log, _ = ledger.adjust_credits(acme, 5, "bonus", actor="ops", reference="k", now=clock())
    append_audit(AuditEntry(actor="ops", role="ADMIN", action=ADJUST, outcome="ok",
                            organization_id=acme, details=details, credit_log_id=log.id))
    (problem,) = verify_credit()
    assert problem.startswith(f"invariant 3: credit_log {log.id} (organisation {acme}, delta 5")


def test_seed_rows_need_their_audited_creation(books, clock):
    acme, other = books["Acme"][0], books["Other"][0]
    AuditLog.update(details=json.dumps({"initial_credits": 9})).where(
        (AuditLog.organization_id == other) & AuditLog.action.in_(ORGANIZATION_CREATED)
    ).execute()  # a rewritten audit row also breaks the chain
    (seed_log,) = CreditLog.select(CreditLog.id).where(
        (CreditLog.organization == other) & (CreditLog.kind == "seed")).tuples()
    problems = audit_disagreements()
    assert problems == [f"invariant 3: seed credit_log {seed_log[0]} of organisation {other} "
                        f"says 7; its audited creation says 9"]
    AuditLog.update(outcome="denied:PERMISSION_DENIED").where(
        (AuditLog.organization_id == acme) & AuditLog.action.in_(ORGANIZATION_CREATED)
    ).execute()
    (acme_seed,) = CreditLog.select(CreditLog.id).where(
        (CreditLog.organization == acme) & (CreditLog.kind == "seed")).tuples()
    assert audit_disagreements()[0] == (f"invariant 3: seed credit_log {acme_seed[0]} of "
                                        f"organisation {acme} has no audited creation")


def test_a_daily_roll_up_that_is_not_its_log(books):
    other = books["Other"][0]
    CreditDaily.update(spent=CreditDaily.spent + 4).where(
        CreditDaily.organization_id == other).execute()
    (day,) = CreditDaily.select(CreditDaily.day).where(
        CreditDaily.organization_id == other).tuples()
    assert verify_credit() == [
        f"credit daily: organisation {other} on {day[0]}: the log says spent 1, added 15; "
        f"credit_daily says spent 5, added 15"]


def test_a_grant_that_is_not_its_draws(books):
    acme = books["Acme"][0]
    grant = CreditGrant.select().where((CreditGrant.organization == acme)
                                       & (CreditGrant.remaining > CreditGrant.held)).first()
    CreditGrant.update(remaining=CreditGrant.remaining - 1).where(
        CreditGrant.id == grant.id).execute()
    assert verify_credit() == [
        f"invariant 6: organisation {acme} balance 17, held 2 != its grants' remaining 16, "
        f"held 2"]
