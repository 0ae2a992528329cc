"""Grants as plain functions (credit_service.grants): the terms at their limits, and the sweeper
and the "expiring soon" figures with a second organisation and grants of every state beside
the one that matters, so a query that took too much shows it. Written from the mutants that
survived the end-to-end grant tests (`make mutate`, docs/testing.md)."""
import datetime

import pytest

from carpet_common import errors
from credit_service import grants, ledger
from credit_service.models import CreditBalance, CreditGrant, CreditLog
from tests.unit.domain.test_ledger import org

DAY = datetime.timedelta(days=1)


def grant(organization_id, amount, clock, **terms):
    log, _ = ledger.adjust_credits(organization_id, amount, "grant", actor="test", now=clock(),
                                   terms=grants.GrantTerms(**terms))
    return CreditGrant.get_by_id(log.grant_id)


def test_terms_at_their_limits(credit_db, clock):
    top = grants.MAX_PRIORITY
    assert top == 2**31 - 1
    for priority in (top, -top):
        assert grants.check_terms(grants.GrantTerms(priority=priority), clock()).priority == \
            priority
    for priority in (top + 1, -top - 1):
        with pytest.raises(errors.InvalidArgument):
            grants.check_terms(grants.GrantTerms(priority=priority), clock())
    for past in (clock() + DAY * 0, clock() - DAY):  # equal (not the same object), before
        with pytest.raises(errors.InvalidArgument) as refused:
            grants.check_terms(grants.GrantTerms(expires_at=past), clock())
        assert str(refused.value) == "expires_at must be in the future"
    with pytest.raises(errors.InvalidArgument) as refused:
        grants.check_terms(grants.GrantTerms(effective_at=clock() + DAY,
                                             expires_at=clock() + DAY), clock())
    assert str(refused.value) == "expires_at must be after effective_at"
    checked = grants.check_terms(grants.GrantTerms(), clock())
    assert checked == grants.GrantTerms("paid", 0, clock(), None)
    acme = org(credits=0, now=clock())
    assert grant(acme, 5, clock).priority == 0


def test_expiring_soon_counts_what_is_spendable_up_to_thirty_days(credit_db, clock):
    acme, other = org("Acme", credits=0, now=clock()), org("Other", credits=0, now=clock())
    second = datetime.timedelta(seconds=1)
    soon = clock() + second  # when the figures are read
    grant(acme, 5, clock, expires_at=soon + 30 * DAY)  # exactly 30 days then: counts
    grant(acme, 7, clock, expires_at=soon + 30 * DAY + second)  # a second too late
    grant(acme, 11, clock)  # never expires
    held = grant(acme, 3, clock, expires_at=soon + DAY)
    ledger.reserve_credits(acme, 5 + 3, "job", 60, user_id=None, now=clock())  # holds 5 + 3
    grant(other, 13, clock, expires_at=soon + DAY)
    gone = grant(other, 17, clock, expires_at=soon)
    clock.advance(1)
    assert grants.expire_grants(clock()) == 17
    assert CreditGrant.get_by_id(gone.id).expired_at == clock()
    # Acme: the 5 and the 3 are all held, the 7 is a second too late, the 11 never expires.
    assert grants.expiring_soon(clock()) == {other: 13}
    assert grants.expiring_soon(clock(), [acme]) == {}
    ledger.release_hold_by_reference(acme, "job", now=clock())
    assert grants.expiring_soon(clock()) == {acme: 5 + 3, other: 13}
    assert grants.expiring_soon(clock(), [other]) == {other: 13}
    assert CreditGrant.get_by_id(held.id).held == 0


def test_the_sweeper_expires_what_is_due_and_nothing_else(credit_db, clock):
    acme, other = org("Acme", credits=0, now=clock()), org("Other", credits=0, now=clock())
    first = grant(acme, 2, clock, expires_at=clock() + DAY)
    clock.advance(DAY.total_seconds())
    assert grants.expire_grants(clock()) == 2
    expired_at = clock()
    grant(acme, 4, clock, expires_at=clock() + 3 * DAY)  # not due
    lasting = grant(acme, 8, clock)
    due = grant(other, 16, clock, expires_at=clock() + DAY)
    grant(other, 32, clock, expires_at=clock() + 5 * DAY)  # not due
    acme_touched = CreditBalance.get(CreditBalance.organization == acme).updated_at
    clock.advance(DAY.total_seconds())  # `due` expires exactly now
    # One organisation a pass: Acme, with an old expired grant and a grant not yet due, is
    # not picked before Other, whose grant is due.
    assert grants.expire_grants(clock(), limit=1) == 16
    assert CreditGrant.get_by_id(due.id).expired_at == clock()
    assert CreditGrant.get_by_id(first.id).expired_at == expired_at  # expired once, not again
    assert [view.amount for view in grants.live_grants(acme)] == [4, 8]
    assert [view.amount for view in grants.live_grants(other)] == [32]
    assert ledger.get_balance(acme, clock()).balance == 12
    assert ledger.get_balance(other, clock()).balance == 32
    assert CreditBalance.get(CreditBalance.organization == acme).updated_at == acme_touched
    assert CreditGrant.get_by_id(lasting.id).remaining == 8


def test_partly_held_grants_count_what_is_left_to_spend(credit_db, clock):
    acme = org("Acme", credits=0, now=clock())
    grant(acme, 5, clock, expires_at=clock() + DAY)
    ledger.reserve_credits(acme, 2, "job", 60, user_id=None, now=clock())
    assert grants.expiring_soon(clock()) == {acme: 3}


def test_one_sweep_expires_each_organisations_own_grants(credit_db, clock):
    acme, other = org("Acme", credits=0, now=clock()), org("Other", credits=0, now=clock())
    held_whole = grant(acme, 2, clock, expires_at=clock() + DAY)
    grant(acme, 1, clock, expires_at=clock() + DAY)  # one credit: expired like any amount
    ledger.reserve_credits(acme, 2, "job", 24 * 3600, user_id=None, now=clock())
    assert CreditGrant.get_by_id(held_whole.id).held == 2  # nothing of it left to expire
    grant(other, 6, clock, expires_at=clock() + DAY)
    grant(other, 4, clock)
    clock.advance(DAY.total_seconds())
    assert grants.expire_grants(clock()) == 1 + 6
    assert (ledger.get_balance(acme, clock()).balance,
            ledger.get_balance(other, clock()).balance) == (2, 4)
    expired = [(row.organization_id, row.delta) for row in CreditLog.select()
               .where(CreditLog.kind == "expire").order_by(CreditLog.id)]
    assert expired == [(acme, -1), (other, -6)]


def test_sweeping_one_organisation_leaves_the_others_rows_alone(credit_db, clock):
    acme, other = org("Acme", credits=0, now=clock()), org("Other", credits=0, now=clock())
    grant(acme, 3, clock, expires_at=clock() + DAY)
    grant(other, 3, clock)
    other_touched = CreditBalance.get(CreditBalance.organization == other).updated_at
    clock.advance(DAY.total_seconds())
    assert grants.expire_grants(clock()) == 3
    assert CreditBalance.get(CreditBalance.organization == other).updated_at == other_touched


def test_expiring_an_organisations_grants_touches_no_other(credit_db, clock):
    acme, other = org("Acme", credits=0, now=clock()), org("Other", credits=0, now=clock())
    theirs = grant(acme, 3, clock, expires_at=clock() + DAY)
    grant(other, 5, clock, expires_at=clock() + DAY)
    clock.advance(DAY.total_seconds())
    with grants.database.atomic():
        assert grants._expire_due(other, clock()) == 5
    assert CreditGrant.get_by_id(theirs.id).expired_at is None  # Acme's wait for their turn
    assert ledger.get_balance(acme, clock()).balance == 3


def test_a_fully_held_grant_far_from_expiry_is_not_expiring_soon(credit_db, clock):
    acme = org("Acme", credits=0, now=clock())
    grant(acme, 4, clock, expires_at=clock() + 60 * DAY)
    ledger.reserve_credits(acme, 4, "job", 60, user_id=None, now=clock())
    assert grants.expiring_soon(clock()) == {}


def test_the_sweeper_takes_500_organisations_a_pass(credit_db, clock):
    for number in range(501):
        grant(org(f"Shop {number}", credits=0, now=clock()), 1, clock,
              expires_at=clock() + DAY)
    clock.advance(DAY.total_seconds())
    assert grants.expire_grants(clock()) == 500
    assert grants.expire_grants(clock()) == 1


def test_what_must_run_in_its_callers_transaction_says_so(credit_db, clock):
    """grants.add_grant writes the grant a balance change is made of: outside the change's
    transaction it is refused at once, before writing anything."""
    acme = org("Acme", credits=0, now=clock())
    with pytest.raises(RuntimeError) as outside:
        grants.add_grant(acme, 5, grants.GrantTerms(), reason="loose", reference="", now=clock())
    assert str(outside.value) == "this must run inside its caller's transaction"
    assert grants.live_grants(acme) == []
