"""Concurrency, with 32+ threads against a real server: no overspending, exactly one winner
per hold, and the invariants hold afterwards. On SQLite and PostgreSQL."""
import concurrent.futures

import grpc
import pytest

from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import credit_pb2
from tests.builders import adjust, balance, capture, create_org, release, reserve
from tests.helpers import error_reason

pytestmark = pytest.mark.usefixtures("engine")
THREADS = 40


def outcome(call):
    try:
        return call()
    except grpc.RpcError as error:
        return (error.code(), error_reason(error))


def run_all(calls):
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(outcome, calls))


def test_reserves_against_a_balance_that_fits_k(credit_server):
    k, amount = 7, 3
    org = create_org(credit_server, "Acme", k * amount + amount - 1)  # fits exactly k
    results = run_all([lambda i=i: reserve(credit_server, org.id, amount, f"job-{i}")
                       for i in range(THREADS)])
    holds = [r for r in results if isinstance(r, credit_pb2.Hold)]
    refused = [r for r in results if not isinstance(r, credit_pb2.Hold)]
    assert len(holds) == k
    assert refused == [(grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")] * (
        THREADS - k)
    assert balance(credit_server, org.id).held == k * amount
    assert verify_credit() == []


def test_capture_and_release_of_one_hold_have_one_winner(credit_server):
    org = create_org(credit_server, "Acme", 100)
    for round_number in range(5):
        hold = reserve(credit_server, org.id, 2, f"job-{round_number}")
        calls = [(lambda h=hold.id: capture(credit_server, h)) if i % 2 == 0 else
                 (lambda h=hold.id: release(credit_server, h)) for i in range(32)]
        results = run_all(calls)
        captures = [r for r in results if isinstance(r, credit_pb2.CaptureHoldResponse)]
        releases = [r for r in results if isinstance(r, credit_pb2.Hold)]
        errors = [r for r in results if isinstance(r, tuple)]
        if captures:  # capture won: every capture returns the same row, every release refused
            assert len({c.log.id for c in captures}) == 1 and len(captures) == 16
            assert releases == []
            assert set(errors) == {(grpc.StatusCode.FAILED_PRECONDITION, "HOLD_NOT_HELD")}
        else:  # release won: every release agrees, every capture refused
            assert len(releases) == 16
            assert {r.state for r in releases} == {credit_pb2.HOLD_STATE_RELEASED}
            assert set(errors) == {(grpc.StatusCode.FAILED_PRECONDITION, "HOLD_NOT_HELD")}
    logs = credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(organization_id=org.id,
                                         kind=credit_pb2.CREDIT_LOG_KIND_RENDER),
        metadata=(("x-admin-token", "admin-token-for-tests-0123456789"),), timeout=10).logs
    current = balance(credit_server, org.id)
    assert current.balance == 100 - 2 * len(logs) and current.held == 0
    assert verify_credit() == []


def test_concurrent_negative_adjustments_never_go_below_zero(credit_server):
    org = create_org(credit_server, "Acme", 50)
    results = run_all([lambda: adjust(credit_server, org.id, -3, "drain")
                       for _ in range(THREADS)])
    applied = [r for r in results if isinstance(r, credit_pb2.AdjustCreditsResponse)]
    assert len(applied) == 16  # 16 * 3 = 48 <= 50 < 17 * 3
    assert all(r == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")
               for r in results if isinstance(r, tuple))
    assert sorted(r.balance.balance for r in applied) == list(range(2, 50, 3))
    assert balance(credit_server, org.id).balance == 2
    assert verify_credit() == []


def test_mixed_traffic_keeps_invariants(credit_server):
    """Reserves, captures, releases and adjustments of three organisations at once: the only
    refusal is a lack of credit (anything else fails the test, INTERNAL included), and each
    balance is what the acknowledged calls add up to."""
    orgs = [create_org(credit_server, f"Org {i}", 20) for i in range(3)]
    insufficient = (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")

    def work(i):
        """(organisation id, credits this worker's acknowledged calls took, unexpected)"""
        org, taken, unexpected = orgs[i % 3], 0, []
        amount = 1 + i % 4
        hold = outcome(lambda: reserve(credit_server, org.id, amount, f"mix-{i}"))
        if isinstance(hold, credit_pb2.Hold):
            if i % 3 == 0:
                released = outcome(lambda: release(credit_server, hold.id))
                if not isinstance(released, credit_pb2.Hold):
                    unexpected.append(("release", released))
            else:
                captured = outcome(lambda: capture(credit_server, hold.id))
                if isinstance(captured, credit_pb2.CaptureHoldResponse):
                    taken += amount
                else:
                    unexpected.append(("capture", captured))
        elif hold != insufficient:
            unexpected.append(("reserve", hold))
        delta = -2 if i % 2 else 2
        adjusted = outcome(lambda: adjust(credit_server, org.id, delta, "mix"))
        if isinstance(adjusted, credit_pb2.AdjustCreditsResponse):
            taken -= delta
        elif adjusted != insufficient:
            unexpected.append(("adjust", adjusted))
        return org.id, taken, unexpected

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(120)))
    assert [problem for _, _, problems in results for problem in problems] == []
    for org in orgs:
        taken = sum(amount for org_id, amount, _ in results if org_id == org.id)
        current = balance(credit_server, org.id)
        assert (current.balance, current.held) == (20 - taken, 0)
    assert verify_credit() == []
