"""CreditService through a real server: balances, adjustments and the hold cycle, with an
injected clock for expiry. On SQLite and PostgreSQL."""
import grpc
import pytest

from credit_service import ledger
from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import credit_pb2
from tests.builders import (
    adjust,
    amounts,
    balance,
    capture,
    create_org,
    expect_error,
    release,
    reserve,
)
from tests.helpers import ADMIN

pytestmark = pytest.mark.usefixtures("engine")


def test_adjust_credits_writes_log_and_balance(credit_server):
    org = create_org(credit_server, "Acme", 10)
    result = adjust(credit_server, org.id, 5, "bonus")
    assert (result.log.delta, result.log.balance_after, result.log.kind, result.log.reason,
            result.log.actor) == (5, 15, credit_pb2.CREDIT_LOG_KIND_ADJUST, "bonus", "alice")
    assert (result.balance.balance, result.balance.held, result.balance.available) == (15, 0, 15)
    result = adjust(credit_server, org.id, -15, "refund")
    assert result.balance.balance == 0
    assert balance(credit_server, org.id) == credit_pb2.Balance(organization_id=org.id)
    assert verify_credit() == []


def test_adjust_credits_errors(credit_server):
    org = create_org(credit_server, "Acme", 10)
    expect_error(lambda: adjust(credit_server, org.id, 0), grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: adjust(credit_server, org.id, 1, "   "),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: adjust(credit_server, org.id, 1, "x" * 501),
                 grpc.StatusCode.INVALID_ARGUMENT)
    assert adjust(credit_server, org.id, 1, "x" * 500).balance.balance == 11
    expect_error(lambda: adjust(credit_server, org.id, -12), grpc.StatusCode.FAILED_PRECONDITION,
                 "INSUFFICIENT_CREDITS")
    expect_error(lambda: adjust(credit_server, 999, 5), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: adjust(credit_server, org.id, 2**62), grpc.StatusCode.INVALID_ARGUMENT)
    # Credits held for renders cannot be adjusted away.
    reserve(credit_server, org.id, 8, "job-1")
    expect_error(lambda: adjust(credit_server, org.id, -4), grpc.StatusCode.FAILED_PRECONDITION,
                 "INSUFFICIENT_CREDITS")
    assert balance(credit_server, org.id).balance == 11
    assert verify_credit() == []


def test_reserve_capture_cycle(credit_server):
    org = create_org(credit_server, "Acme", 10)
    hold = reserve(credit_server, org.id, 4, "job-1")
    assert (hold.amount, hold.state, hold.reference) == (4, credit_pb2.HOLD_STATE_HELD, "job-1")
    assert balance(credit_server, org.id).available == 6
    assert reserve(credit_server, org.id, 4, "job-1") == hold  # a repeat: the same hold
    assert balance(credit_server, org.id).held == 4

    captured = capture(credit_server, hold.id)
    assert captured.hold.state == credit_pb2.HOLD_STATE_CAPTURED
    assert (captured.log.delta, captured.log.balance_after, captured.log.kind,
            captured.log.reference) == (-4, 6, credit_pb2.CREDIT_LOG_KIND_RENDER, "job-1")
    assert captured.hold.credit_log_id == captured.log.id
    again = capture(credit_server, hold.id)
    assert again.log == captured.log  # a repeat returns the same row, charges nothing more
    shown = balance(credit_server, org.id)
    assert (shown.organization_id, shown.balance, shown.held, shown.available) == (
        org.id, 6, 0, 6)
    assert [(grant.amount, grant.remaining, grant.held) for grant in shown.grants] == [(10, 6, 0)]
    expect_error(lambda: release(credit_server, hold.id), grpc.StatusCode.FAILED_PRECONDITION,
                 "HOLD_NOT_HELD")
    assert verify_credit() == []


def test_reserve_errors(credit_server):
    org = create_org(credit_server, "Acme", 3)
    expect_error(lambda: reserve(credit_server, org.id, 4, "big"),
                 grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")
    expect_error(lambda: reserve(credit_server, org.id, 0, "zero"),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: reserve(credit_server, org.id, 1, ""), grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: reserve(credit_server, org.id, 1, "ttl", ttl=86401),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: reserve(credit_server, org.id, 1, "ttl", ttl=-5),
                 grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: reserve(credit_server, 999, 1, "ghost"), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: capture(credit_server, 999), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: release(credit_server, 999), grpc.StatusCode.NOT_FOUND)
    assert balance(credit_server, org.id).held == 0


def test_release_is_idempotent_and_blocks_capture(credit_server):
    org = create_org(credit_server, "Acme", 5)
    hold = reserve(credit_server, org.id, 5, "job-1")
    released = release(credit_server, hold.id)
    assert released.state == credit_pb2.HOLD_STATE_RELEASED
    assert release(credit_server, hold.id) == released
    assert balance(credit_server, org.id).available == 5
    expect_error(lambda: capture(credit_server, hold.id), grpc.StatusCode.FAILED_PRECONDITION,
                 "HOLD_NOT_HELD")
    assert verify_credit() == []


def test_release_keeps_its_reason_and_finds_a_hold_by_reference(credit_server):
    org = create_org(credit_server, "Acme", 5)
    hold = reserve(credit_server, org.id, 3, "render-job:7")
    released = credit_server.credits.ReleaseHold(credit_pb2.ReleaseHoldRequest(
        organization_id=org.id, reference="render-job:7", reason="render failed: timeout"),
        timeout=10)
    assert (released.id, released.state, released.release_reason) == (
        hold.id, credit_pb2.HOLD_STATE_RELEASED, "render failed: timeout")
    assert balance(credit_server, org.id).held == 0
    # A repeat changes nothing, not even the reason.
    again = credit_server.credits.ReleaseHold(credit_pb2.ReleaseHoldRequest(
        hold_id=hold.id, reason="another reason"), timeout=10)
    assert again.release_reason == "render failed: timeout"
    expect_error(lambda: credit_server.credits.ReleaseHold(credit_pb2.ReleaseHoldRequest(
        organization_id=org.id, reference="render-job:8", reason="x"), timeout=10),
        grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: credit_server.credits.ReleaseHold(credit_pb2.ReleaseHoldRequest(
        reason="x"), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    assert verify_credit() == []


def test_expired_holds_stop_counting(credit_server, clock):
    org = create_org(credit_server, "Acme", 10)
    hold = reserve(credit_server, org.id, 6, "job-1", ttl=60)
    assert hold.expires_at.ToDatetime() == clock.now.replace(microsecond=0) + \
        __import__("datetime").timedelta(seconds=60)
    clock.advance(seconds=59)
    assert balance(credit_server, org.id).held == 6
    clock.advance(seconds=1)
    # Past its expiry the hold no longer counts, before any sweeper has run.
    assert balance(credit_server, org.id).held == 0
    expect_error(lambda: capture(credit_server, hold.id), grpc.StatusCode.FAILED_PRECONDITION,
                 "HOLD_EXPIRED")
    # A new reservation may use the expired credits: it expires the old hold in its transaction.
    second = reserve(credit_server, org.id, 10, "job-2")
    assert second.state == credit_pb2.HOLD_STATE_HELD
    assert verify_credit() == []
    assert balance(credit_server, org.id).held == 10

    clock.advance(minutes=15)
    assert ledger.expire_holds(clock()) == 10  # the sweeper
    assert ledger.expire_holds(clock()) == 0
    assert amounts(balance(credit_server, org.id)) == (10, 0, 10)
    expect_error(lambda: capture(credit_server, second.id), grpc.StatusCode.FAILED_PRECONDITION,
                 "HOLD_EXPIRED")
    assert release(credit_server, second.id).state == credit_pb2.HOLD_STATE_EXPIRED
    assert verify_credit() == []


def test_list_credit_logs_with_filters(credit_server):
    acme = create_org(credit_server, "Acme", 10)
    other = create_org(credit_server, "Other", 3)
    adjust(credit_server, acme.id, 2)
    hold = reserve(credit_server, acme.id, 1, "job-1")
    capture(credit_server, hold.id)
    everything = credit_server.credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(),
                                                      metadata=ADMIN, timeout=10)
    assert [(log.organization_id, log.kind) for log in everything.logs] == [
        (acme.id, credit_pb2.CREDIT_LOG_KIND_RENDER), (acme.id, credit_pb2.CREDIT_LOG_KIND_ADJUST),
        (other.id, credit_pb2.CREDIT_LOG_KIND_SEED), (acme.id, credit_pb2.CREDIT_LOG_KIND_SEED)]
    adjusts = credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(organization_id=acme.id,
                                         kind=credit_pb2.CREDIT_LOG_KIND_ADJUST),
        metadata=ADMIN, timeout=10)
    assert [log.delta for log in adjusts.logs] == [2]
    expect_error(lambda: credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(kind=17), metadata=ADMIN, timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)
