"""verify (credit_service.verify) as plain functions on books of three organisations: healthy
books pass, and each kind of tampering with one organisation's rows gives exactly its problem
lines, naming that organisation and row and never another. The books hold what verify must not
trip over: amounts above 256 (Python keeps small ints as shared objects, so an identity test
would pass on small ones), an organisation with no rows at all, a negative adjustment, a
refused call's audit row, a 200-character idempotency key. Written from the mutants that
survived the end-to-end verify tests (`make mutate`, docs/testing.md)."""
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
LONG_KEY = "k" * 200  # the longest reference a credit-log row keeps


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
    """Acme (1000 initial credits) and Other (700), each with an adjustment of 500, a
    promotional grant of 300, a negative adjustment of 5, an open hold of 300 and a captured
    render of 260; and Empty, with nothing. Acme also has a refused adjustment's audit row."""
    made = {}
    for name, initial in (("Acme", 1000), ("Other", 700)):
        organization_id = org(name, credits=initial, now=clock())
        adjustment = audited_adjustment(organization_id, 500, LONG_KEY if name == "Acme"
                                        else f"key-{name}", clock)
        audited_adjustment(organization_id, 300, f"promo-{name}", clock, grants.GrantTerms(
            kind="promotional", expires_at=clock() + datetime.timedelta(days=60)))
        audited_adjustment(organization_id, -5, f"take-{name}", clock)
        held = ledger.reserve_credits(organization_id, 300, "job-1", 600, user_id=None,
                                      now=clock())
        charged = ledger.reserve_credits(organization_id, 260, "job-2", 600, user_id=None,
                                         now=clock())
        ledger.capture_hold(charged.id, now=clock())
        made[name] = (organization_id, adjustment, held)
    append_audit(AuditEntry(actor="clerk", role="STAFF", action=ADJUST,
                            outcome="denied:PERMISSION_DENIED",
                            organization_id=made["Acme"][0], details="{}"))
    made["Empty"] = org("Empty", credits=0, now=clock())
    assert verify_credit() == []
    return made


def balance_of(organization_id):
    return CreditBalance.get(CreditBalance.organization == organization_id)


def test_healthy_books_pass(books, clock):
    acme, other = books["Acme"][0], books["Other"][0]
    assert [(ledger.get_balance(o, clock()).balance, ledger.get_balance(o, clock()).held)
            for o in (acme, other, books["Empty"])] == [
        (1000 + 500 + 300 - 5 - 260, 300), (700 + 500 + 300 - 5 - 260, 300), (0, 0)]


@pytest.mark.parametrize("change", [1, -1])
def test_a_balance_that_is_not_its_log(books, change):
    other = books["Other"][0]
    CreditBalance.update(balance=CreditBalance.balance + change).where(
        CreditBalance.organization == other).execute()
    balance = 1235 + change
    assert verify_credit() == [
        f"invariant 1: organisation {other} balance {balance} != sum of credit-log deltas 1235",
        f"invariant 6: organisation {other} balance {balance}, held 300 != its grants' "
        f"remaining 1235, held 300"]


def test_held_credit_that_is_not_its_holds(books):
    acme, _, held = books["Acme"]
    CreditHold.update(state="released").where(CreditHold.id == held.id).execute()
    drawn = [grant for grant in CreditGrant.select().order_by(CreditGrant.id)
             if grant.organization_id == acme and grant.held > 0]
    assert sum(grant.held for grant in drawn) == 300
    assert verify_credit() == [
        f"invariant 2: organisation {acme} held 300 != sum of held holds 0",
        *[f"invariant 6: grant {grant.id} held {grant.held} != what open holds drew from it 0"
          for grant in drawn]]


def test_a_grant_holding_less_than_its_draws(books):
    acme = books["Acme"][0]
    grant = CreditGrant.select().where((CreditGrant.organization == acme)
                                       & (CreditGrant.held > 0)).order_by(CreditGrant.id).first()
    CreditGrant.update(held=CreditGrant.held - 1).where(CreditGrant.id == grant.id).execute()
    assert verify_credit() == [
        f"invariant 6: organisation {acme} balance 1535, held 300 != its grants' remaining "
        f"1535, held 299",
        f"invariant 6: grant {grant.id} held {grant.held - 1} != what open holds drew from it "
        f"{grant.held}"]


def test_an_adjustment_without_its_audit_row(books, clock):
    other = books["Other"][0]
    quiet, _ = ledger.adjust_credits(other, 4, "quiet", actor="ops", now=clock())
    audited_adjustment(other, 6, "loud", clock)  # a later row with its audit row
    assert verify_credit() == [f"invariant 3: adjust credit_log {quiet.id} has no audit row"]


def test_a_log_row_that_disagrees_with_its_audit_row(books):
    other, adjustment, _ = books["Other"]
    CreditLog.update(reference="forged").where(CreditLog.id == adjustment.id).execute()
    (audit_id,) = AuditLog.select(AuditLog.id).where(
        AuditLog.credit_log == adjustment.id).tuples()
    assert verify_credit() == [
        f"invariant 3: credit_log {adjustment.id} (organisation {other}, delta 500, reference "
        f"'forged') disagrees with its audit row {audit_id[0]} (organisation {other}, amount "
        f"500)"]


@pytest.mark.parametrize("details", ["not json", "[1, 2]", '{"delta": "five"}'])
def test_unreadable_audit_details_disagree(credit_db, clock, details):
    acme = org("Acme", credits=0, now=clock())
    log, _ = ledger.adjust_credits(acme, 5, "bonus", actor="ops", reference="k", now=clock())
    append_audit(AuditEntry(actor="ops", role="ADMIN", action=ADJUST, outcome="ok",
                            organization_id=acme, details=details, credit_log_id=log.id))
    (problem,) = verify_credit()
    assert problem.startswith(f"invariant 3: credit_log {log.id} (organisation {acme}, delta 5")


def test_seed_rows_need_their_audited_creation(books):
    acme, other = books["Acme"][0], books["Other"][0]
    AuditLog.update(details=json.dumps({"initial_credits": 900})).where(
        (AuditLog.organization_id == other) & AuditLog.action.in_(ORGANIZATION_CREATED)
    ).execute()  # a rewritten audit row also breaks the chain
    (seed_log,) = CreditLog.select(CreditLog.id).where(
        (CreditLog.organization == other) & (CreditLog.kind == "seed")).tuples()
    assert audit_disagreements() == [
        f"invariant 3: seed credit_log {seed_log[0]} of organisation {other} says 700; its "
        f"audited creation says 900"]
    AuditLog.update(outcome="denied:PERMISSION_DENIED").where(
        (AuditLog.organization_id == acme) & AuditLog.action.in_(ORGANIZATION_CREATED)
    ).execute()
    (acme_seed,) = CreditLog.select(CreditLog.id).where(
        (CreditLog.organization == acme) & (CreditLog.kind == "seed")).tuples()
    assert audit_disagreements()[0] == (f"invariant 3: seed credit_log {acme_seed[0]} of "
                                        f"organisation {acme} has no audited creation")


def roll_up_day(organization_id):
    (day,) = CreditDaily.select(CreditDaily.day).where(
        CreditDaily.organization_id == organization_id).tuples()
    return day[0]


@pytest.mark.parametrize("spent, said", [(4, 264), (-4, 256)])
def test_a_daily_roll_up_that_is_not_its_log(books, spent, said):
    other = books["Other"][0]
    CreditDaily.update(spent=CreditDaily.spent + spent).where(
        CreditDaily.organization_id == other).execute()
    assert verify_credit() == [
        f"credit daily: organisation {other} on {roll_up_day(other)}: the log says spent 260, "
        f"added 1500; credit_daily says spent {said}, added 1500"]


def test_a_roll_up_row_missing_or_made_up(books):
    acme, other = books["Acme"][0], books["Other"][0]
    day = roll_up_day(other)
    CreditDaily.delete().where(CreditDaily.organization_id == other).execute()
    CreditDaily.create(organization_id=acme, day=datetime.date(2026, 1, 2), spent=7, added=9)
    assert verify_credit() == [
        f"credit daily: organisation {acme} on 2026-01-02: the log says spent 0, added 0; "
        f"credit_daily says spent 7, added 9",
        f"credit daily: organisation {other} on {day}: the log says spent 260, added 1500; "
        f"credit_daily says spent 0, added 0"]


def test_a_grant_that_is_not_its_draws(books):
    acme = books["Acme"][0]
    grant = CreditGrant.select().where((CreditGrant.organization == acme)
                                       & (CreditGrant.remaining > CreditGrant.held)).first()
    CreditGrant.update(remaining=CreditGrant.remaining - 1).where(
        CreditGrant.id == grant.id).execute()
    assert verify_credit() == [
        f"invariant 6: organisation {acme} balance 1535, held 300 != its grants' remaining "
        f"1534, held 300"]
