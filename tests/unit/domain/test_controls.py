"""Spend controls and alerts as plain functions (credit_service.controls, through the ledger
that calls them): the low-balance alert, the monthly and per-user daily limits, suspension.
The wiring through gRPC (and the forty concurrent reservations against one limit on both
engines) is tests/integration/test_spend_controls.py."""
import json

import pytest

from carpet_common import errors
from credit_service import accounts, controls, ledger
from credit_service.models import SpendLimitNotice, WebhookEndpoint, WebhookEvent
from tests.unit.domain.test_ledger import org

EVERY_EVENT = "credit.low_balance,credit.spend_limit_reached,organization.suspended"


@pytest.fixture
def acme(credit_db, clock):
    """An organisation with 10 credits, and an endpoint that wants its alerts (an event is
    written only when some endpoint wants it)."""
    acme = org(credits=10, now=clock())
    WebhookEndpoint.create(organization_id=acme, url="https://hooks.example/in",
                           events=EVERY_EVENT, secret_salt="s")
    return acme


def events(kind):
    return [json.loads(row.body)["data"] for row in
            WebhookEvent.select().where(WebhookEvent.type == kind).order_by(WebhookEvent.id)]


def reserve(organization_id, amount, reference, clock, user_id=None):
    return ledger.reserve_credits(organization_id, amount, reference, 600, user_id=user_id,
                                  now=clock())


def test_the_low_balance_alert_fires_once_per_crossing_and_re_arms(acme, clock):
    controls.set_low_balance_threshold(acme, 5, clock())
    assert events("credit.low_balance") == []  # 10 available: above it
    reserve(acme, 4, "job-1", clock)  # 6 left
    reserve(acme, 2, "job-2", clock)  # 4 left: crossed
    reserve(acme, 1, "job-3", clock)  # 3 left: still below, no second alert
    assert events("credit.low_balance") == [
        {"organizationId": acme, "available": 4, "threshold": 5, "balance": 10, "held": 6}]
    ledger.adjust_credits(acme, 10, "top-up", actor="alice", now=clock())  # 13: re-armed
    reserve(acme, 9, "job-4", clock)  # 4 again: a new crossing
    assert [alert["available"] for alert in events("credit.low_balance")] == [4, 4]
    # A negative adjustment is a fall too; released holds re-arm it.
    for reference in ("job-1", "job-2", "job-3", "job-4"):
        ledger.release_hold_by_reference(acme, reference, reason="failed", now=clock())
    ledger.adjust_credits(acme, -17, "correction", actor="alice", now=clock())  # 20 -> 3
    assert [alert["available"] for alert in events("credit.low_balance")] == [4, 4, 3]


def test_a_threshold_set_above_the_available_credit_fires_at_once(acme, clock):
    controls.set_low_balance_threshold(acme, 50, clock())
    assert events("credit.low_balance") == [
        {"organizationId": acme, "available": 10, "threshold": 50, "balance": 10, "held": 0}]
    with pytest.raises(errors.InvalidArgument):
        controls.set_low_balance_threshold(acme, -1, clock())
    with pytest.raises(errors.NotFound):
        controls.set_low_balance_threshold(999, 5, clock())


def test_the_monthly_limit_refuses_what_would_pass_it_and_says_so_once(acme, clock):
    controls.set_spend_limits(acme, monthly=5, user_daily=0)
    reserve(acme, 3, "job-1", clock)
    with pytest.raises(errors.SpendLimitReached) as refused:
        reserve(acme, 3, "job-2", clock)
    assert refused.value.message == "this month's spend limit of 5 credits would be passed"
    with pytest.raises(errors.SpendLimitReached):
        reserve(acme, 4, "job-3", clock)
    # Nothing held by the refusals; one notice and one event for the month.
    assert ledger.get_balance(acme, clock()).held == 3
    assert events("credit.spend_limit_reached") == [
        {"organizationId": acme, "limit": "monthly", "limitCredits": 5, "period": "2026-11",
         "spentWithThisRequest": 6}]
    assert SpendLimitNotice.select().count() == 1
    # A released hold is not spending; a new month starts again at zero.
    ledger.release_hold_by_reference(acme, "job-1", reason="canceled", now=clock())
    assert reserve(acme, 5, "job-4", clock).state == "held"
    clock.advance(days=6)  # 1 December
    assert reserve(acme, 5, "job-5", clock).state == "held"


def test_the_daily_limit_is_per_user_and_per_day(acme, clock):
    controls.set_spend_limits(acme, monthly=0, user_daily=2)
    alice, bob = (accounts.create_user(acme, name, f"{name}@acme.example", "STAFF",
                                       now=clock()).id for name in ("alice", "bob"))
    reserve(acme, 2, "a-1", clock, user_id=alice)
    with pytest.raises(errors.SpendLimitReached) as refused:
        reserve(acme, 1, "a-2", clock, user_id=alice)
    assert refused.value.message == f"user {alice}'s daily spend limit of 2 credits would be passed"
    assert reserve(acme, 2, "b-1", clock, user_id=bob).state == "held"  # bob's own day
    assert reserve(acme, 1, "backend", clock).state == "held"  # no user: no daily limit
    clock.advance(days=1)
    assert reserve(acme, 2, "a-3", clock, user_id=alice).state == "held"
    assert [(event["limit"], event["userId"]) for event in
            events("credit.spend_limit_reached")] == [("user_daily", alice)]


def test_a_suspended_organisation_holds_nothing_until_it_is_resumed(acme, clock):
    suspended_at = clock()
    controls.suspend(acme, "  unpaid invoice ", suspended_at)
    with pytest.raises(errors.OrganizationSuspended) as refused:
        reserve(acme, 1, "job-1", clock)
    assert refused.value.message == f"organisation {acme} is suspended: unpaid invoice"
    clock.advance(60)
    controls.suspend(acme, "another reason", clock())  # again: the first stays, no event
    view = controls.get_controls(acme, clock())
    assert (view.suspension_reason, view.suspended_at) == ("unpaid invoice", suspended_at)
    assert [event["reason"] for event in events("organization.suspended")] == ["unpaid invoice"]
    controls.resume(acme)
    assert reserve(acme, 1, "job-2", clock).state == "held"
    for reason in ("", " ", "x" * 501, "a\x00b"):
        with pytest.raises(errors.InvalidArgument):
            controls.suspend(acme, reason, clock())
    with pytest.raises(errors.NotFound):
        controls.suspend(999, "gone", clock())


def test_the_controls_list_counts_the_months_spending(acme, clock):
    other = org("Other", credits=3, now=clock())
    controls.set_low_balance_threshold(other, 5, clock())
    captured = reserve(acme, 2, "job-1", clock)
    ledger.capture_hold(captured.id, now=clock())
    reserve(acme, 3, "job-2", clock)
    reserve(acme, 4, "job-3", clock)
    ledger.release_hold_by_reference(acme, "job-3", reason="failed", now=clock())
    views = {view.organization_id: view for view in controls.list_controls(clock())}
    assert (views[acme].spent_this_month, views[acme].available, views[acme].low_balance) == (
        5, 5, False)
    assert (views[other].spent_this_month, views[other].low_balance) == (0, True)
    assert [view.organization_id for view in
            controls.list_controls(clock(), low_balance_only=True)] == [other]
