"""The ledger and the hold cycle as plain functions (credit_service.ledger)."""
import json

import pytest

from carpet_common import errors
from credit_service import accounts, ledger
from credit_service.audit import AuditEntry, append_audit
from credit_service.verify import ORGANIZATION_CREATED, verify_credit


def org(name="Acme", credits=10, now=None):
    """An organisation, its creation audited as every entry point audits it (verify checks
    that its initial credit has an audited creation)."""
    created = accounts.create_organization(name, credits, actor="test", now=now)
    append_audit(AuditEntry(actor="test", role="ADMIN", action=ORGANIZATION_CREATED[0],
                            outcome="ok", organization_id=created.id,
                            target=f"organization:{created.id}",
                            details=json.dumps({"initial_credits": credits})))
    return created.id


def test_adjust_moves_the_balance_and_logs_it(credit_db, clock):
    acme = org(now=clock())
    log, after = ledger.adjust_credits(acme, 5, " bonus ", actor="alice", reference="k1",
                                       now=clock())
    assert (log.delta, log.balance_after, log.kind, log.reason, log.actor) == (
        5, 15, "adjust", "bonus", "alice")
    assert (after.balance, after.held, after.available) == (15, 0, 15)
    with pytest.raises(errors.InsufficientCredits):
        ledger.adjust_credits(acme, -16, "too much", actor="alice", now=clock())
    with pytest.raises(errors.InvalidArgument):
        ledger.adjust_credits(acme, 0, "nothing", actor="alice", now=clock())
    with pytest.raises(errors.InvalidArgument):
        ledger.adjust_credits(acme, 1, "  ", actor="alice", now=clock())
    with pytest.raises(errors.NotFound):
        ledger.adjust_credits(999, 1, "ghost", actor="alice", now=clock())
    assert ledger.get_balance(acme, clock()).balance == 15


def test_a_negative_adjustment_cannot_take_held_credits(credit_db, clock):
    acme = org(credits=10, now=clock())
    ledger.reserve_credits(acme, 8, "job-1", 60, user_id=None, now=clock())
    with pytest.raises(errors.InsufficientCredits):
        ledger.adjust_credits(acme, -3, "take", actor="alice", now=clock())
    _, after = ledger.adjust_credits(acme, -2, "take", actor="alice", now=clock())
    assert (after.balance, after.held, after.available) == (8, 8, 0)


def test_reserve_capture_release_cycle(credit_db, clock):
    acme = org(credits=10, now=clock())
    first = ledger.reserve_credits(acme, 4, "job-1", 60, user_id=None, now=clock())
    assert (first.state, first.amount) == ("held", 4)
    assert ledger.reserve_credits(acme, 4, "job-1", 60, user_id=None, now=clock()).id == \
        first.id  # the same reference is the same hold
    with pytest.raises(errors.InsufficientCredits):
        ledger.reserve_credits(acme, 7, "job-2", 60, user_id=None, now=clock())
    hold, log = ledger.capture_hold(first.id, now=clock())
    assert (hold.state, hold.credit_log_id, log.delta, log.balance_after, log.kind) == (
        "captured", log.id, -4, 6, "render")
    assert ledger.capture_hold(first.id, now=clock())[1].id == log.id  # idempotent
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.release_hold(first.id, now=clock())
    assert refused.value.reason == "HOLD_NOT_HELD"

    second = ledger.reserve_credits(acme, 6, "job-2", 60, user_id=None, now=clock())
    released = ledger.release_hold(second.id, reason="render failed", now=clock())
    assert (released.state, released.release_reason) == ("released", "render failed")
    assert ledger.release_hold(second.id, reason="again", now=clock()).release_reason == \
        "render failed"
    with pytest.raises(errors.FailedPrecondition):
        ledger.capture_hold(second.id, now=clock())
    assert ledger.get_balance(acme, clock()).available == 6
    assert verify_credit() == []


def test_expired_holds_are_not_spendable_and_are_swept_once(credit_db, clock):
    acme = org(credits=5, now=clock())
    hold = ledger.reserve_credits(acme, 5, "job-1", 10, user_id=None, now=clock())
    clock.advance(11)
    assert ledger.get_balance(acme, clock()).held == 0  # before any sweep
    with pytest.raises(errors.FailedPrecondition) as refused:
        ledger.capture_hold(hold.id, now=clock())
    assert refused.value.reason == "HOLD_EXPIRED"
    assert ledger.expire_holds(clock()) == 5
    assert ledger.expire_holds(clock()) == 0
    # An overdue hold not yet swept does not block a new reservation either.
    ledger.reserve_credits(acme, 5, "job-2", 10, user_id=None, now=clock())
    clock.advance(11)
    assert ledger.reserve_credits(acme, 5, "job-3", 10, user_id=None, now=clock()).state == \
        "held"
    assert verify_credit() == []


def test_release_by_reference(credit_db, clock):
    acme = org(now=clock())
    hold = ledger.reserve_credits(acme, 2, "render-job:1", 60, user_id=None, now=clock())
    assert ledger.release_hold_by_reference(acme, "render-job:1", reason="lost answer",
                                            now=clock()).id == hold.id
    with pytest.raises(errors.NotFound):
        ledger.release_hold_by_reference(acme, "render-job:2", now=clock())


def test_bad_reservations_are_refused(credit_db, clock):
    acme = org(now=clock())
    for amount, reference, ttl in ((0, "r", 60), (1, "", 60), (1, "r", 86401),
                                   (1, "x" * 201, 60)):
        with pytest.raises(errors.InvalidArgument):
            ledger.reserve_credits(acme, amount, reference, ttl, user_id=None, now=clock())
    with pytest.raises(errors.NotFound):
        ledger.reserve_credits(999, 1, "r", 60, user_id=None, now=clock())
    with pytest.raises(errors.NotFound):
        ledger.reserve_credits(acme, 1, "r", 60, user_id=999, now=clock())
