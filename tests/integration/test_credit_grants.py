"""Credit grants (`docs/data-rules.md`) through the real credit service, on both engines: the
spending order (priority, soonest expiry, age), grants not yet in effect or expired never spendable,
40 reservations at once across several grants, a hold that outlives its grant, expiry during a
release, idempotency, and `verify` (invariant 6) after each."""
import concurrent.futures
import datetime
import json

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from credit_service import grants
from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import credit_pb2
from tests.builders import adjust, balance, capture, create_org, get, release, reserve, staff
from tests.helpers import ADMIN, error_reason

pytestmark = pytest.mark.usefixtures("engine")
THREADS = 40
PROMO = credit_pb2.GRANT_KIND_PROMOTIONAL


def stamp(moment: datetime.datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def grant(stubs, organization_id, amount, *, kind=credit_pb2.GRANT_KIND_PAID, expires=None,
          effective=None, priority=0, key="", reason="package"):
    request = credit_pb2.GrantCreditsRequest(organization_id=organization_id, amount=amount,
                                             kind=kind, priority=priority, reason=reason,
                                             idempotency_key=key)
    if expires is not None:
        request.expires_at.CopyFrom(stamp(expires))
    if effective is not None:
        request.effective_at.CopyFrom(stamp(effective))
    return stubs.credits.GrantCredits(request, metadata=ADMIN, timeout=10)


def remaining(stubs, organization_id):
    """{grant id: (remaining, held)} of the live grants."""
    return {row.id: (row.remaining, row.held)
            for row in balance(stubs, organization_id).grants}


def test_grants_are_spent_by_priority_then_soonest_expiry_then_age(credit_server, clock):
    now = clock()
    org = create_org(credit_server, "Acme", 0)
    oldest = grant(credit_server, org.id, 10).grant  # paid, never expires
    clock.advance(seconds=1)  # its age, not only its id, must put it first
    later = grant(credit_server, org.id, 10).grant  # the same, granted after
    in_ten_days = grant(credit_server, org.id, 5, kind=PROMO,
                        expires=now + datetime.timedelta(days=10)).grant
    in_five_days = grant(credit_server, org.id, 5, kind=PROMO,
                         expires=now + datetime.timedelta(days=5)).grant
    first = grant(credit_server, org.id, 5, priority=-1).grant  # a lower priority number
    future = grant(credit_server, org.id, 100,
                   effective=now + datetime.timedelta(days=1)).grant
    shown = balance(credit_server, org.id)
    assert (shown.balance, shown.held, shown.expiring_within_30_days) == (135, 0, 10)
    assert [row.id for row in shown.grants] == [first.id, in_five_days.id, in_ten_days.id,
                                                oldest.id, later.id, future.id]
    assert shown.grants[1].kind == PROMO

    hold = reserve(credit_server, org.id, 7, "job-1")
    assert remaining(credit_server, org.id)[first.id] == (5, 5)
    assert remaining(credit_server, org.id)[in_five_days.id] == (5, 2)
    capture(credit_server, hold.id)
    left = remaining(credit_server, org.id)
    assert first.id not in left and left[in_five_days.id] == (3, 0)
    reserve(credit_server, org.id, 10, "job-2")
    left = remaining(credit_server, org.id)
    assert (left[in_five_days.id], left[in_ten_days.id], left[oldest.id], left[later.id]) == (
        (3, 3), (5, 5), (10, 2), (10, 0))
    # 18 spendable are left of a balance of 128: the grant not yet in effect is not spendable.
    with pytest.raises(grpc.RpcError) as refused:
        reserve(credit_server, org.id, 19, "job-3")
    assert error_reason(refused.value) == "INSUFFICIENT_CREDITS"
    reserve(credit_server, org.id, 18, "job-4")
    # A negative adjustment spends in the same order; none is left to spend now.
    with pytest.raises(grpc.RpcError) as refused:
        adjust(credit_server, org.id, -1, "correction")
    assert error_reason(refused.value) == "INSUFFICIENT_CREDITS"
    clock.advance(days=1)  # the future grant takes effect
    adjust(credit_server, org.id, -30, "correction")
    assert remaining(credit_server, org.id)[future.id] == (70, 0)
    assert verify_credit() == []


def test_a_negative_adjustment_spends_across_grants_in_order(credit_server, clock):
    """-12 over three grants: the lowest priority number first, then the oldest; the newest
    grant is untouched."""
    org = create_org(credit_server, "Acme", 0)
    oldest = grant(credit_server, org.id, 10).grant
    clock.advance(minutes=1)
    newest = grant(credit_server, org.id, 10).grant
    first = grant(credit_server, org.id, 5, priority=-1).grant
    adjust(credit_server, org.id, -12, "correction")
    left = remaining(credit_server, org.id)
    assert first.id not in left
    assert (left[oldest.id], left[newest.id]) == ((3, 0), (10, 0))
    assert verify_credit() == []


def test_forty_reservations_across_several_grants(credit_server, clock):
    org = create_org(credit_server, "Acme", 0)
    for amount, expires in ((7, 3), (9, 5), (11, None), (13, 7)):  # 40 credits in four grants
        grant(credit_server, org.id, amount, kind=PROMO,
              expires=clock() + datetime.timedelta(days=expires) if expires else None)
    calls = [lambda i=i: reserve(credit_server, org.id, 1 + i % 2, f"job-{i}")
             for i in range(THREADS)]

    def outcome(call):
        try:
            return call().amount
        except grpc.RpcError as error:
            return error_reason(error)

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(outcome, calls))
    reserved = sum(result for result in results if isinstance(result, int))
    assert 39 <= reserved <= 40  # amounts of 1 and 2: all but at most one credit is taken
    assert set(result for result in results if not isinstance(result, int)) <= {
        "INSUFFICIENT_CREDITS"}
    shown = balance(credit_server, org.id)
    assert (shown.balance, shown.held) == (40, reserved)
    assert sum(row.held for row in shown.grants) == reserved
    assert all(0 <= row.held <= row.remaining for row in shown.grants)
    assert verify_credit() == []


def test_a_hold_keeps_what_it_reserved_when_its_grant_expires(credit_server, clock):
    org = create_org(credit_server, "Acme", 0)
    promo = grant(credit_server, org.id, 10, kind=PROMO,
                  expires=clock() + datetime.timedelta(seconds=60)).grant
    hold = reserve(credit_server, org.id, 6, "job-1", ttl=600)
    clock.advance(seconds=61)
    assert grants.expire_grants(clock()) == 4  # the part not held
    assert grants.expire_grants(clock()) == 0  # once
    shown = balance(credit_server, org.id)
    assert (shown.balance, shown.held, [row.id for row in shown.grants]) == (6, 6, [])
    charged = capture(credit_server, hold.id)
    assert (charged.log.delta, charged.log.balance_after) == (-6, 0)
    logs = credit_server.credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(
        organization_id=org.id, kind=credit_pb2.CREDIT_LOG_KIND_EXPIRE), metadata=ADMIN,
        timeout=10).logs
    assert [(log.delta, log.grant_id, log.reference) for log in logs] == [
        (-4, promo.id, f"grant:{promo.id}")]
    # Each row says which kind of grant it touched and until when it was spendable; a row
    # without a grant (the render charge) says nothing of one.
    every = credit_server.credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(
        organization_id=org.id), metadata=ADMIN, timeout=10).logs
    assert [(log.kind, log.grant_kind, log.grant_expires_at.ToDatetime()
             if log.HasField("grant_expires_at") else None) for log in every] == [
        (credit_pb2.CREDIT_LOG_KIND_RENDER, credit_pb2.GRANT_KIND_UNSPECIFIED, None),
        (credit_pb2.CREDIT_LOG_KIND_EXPIRE, PROMO, promo.expires_at.ToDatetime()),
        (credit_pb2.CREDIT_LOG_KIND_ADJUST, PROMO, promo.expires_at.ToDatetime())]
    assert verify_credit() == []


def test_what_a_release_gives_back_to_an_expired_grant_expires(credit_server, clock):
    org = create_org(credit_server, "Acme", 0)
    paid = grant(credit_server, org.id, 5).grant
    promo = grant(credit_server, org.id, 10, kind=PROMO, priority=-1,
                  expires=clock() + datetime.timedelta(seconds=60)).grant
    hold = reserve(credit_server, org.id, 12, "job-1", ttl=600)  # 10 promo + 2 paid
    clock.advance(seconds=61)
    grants.expire_grants(clock())
    assert balance(credit_server, org.id).balance == 15  # nothing spendable was left in it
    release(credit_server, hold.id)
    shown = balance(credit_server, org.id)
    assert (shown.balance, shown.held) == (5, 0)  # the promo's 10 expired on the way back
    assert remaining(credit_server, org.id) == {paid.id: (5, 0)}
    logs = credit_server.credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(
        organization_id=org.id, kind=credit_pb2.CREDIT_LOG_KIND_EXPIRE), metadata=ADMIN,
        timeout=10).logs
    assert [(log.delta, log.grant_id, log.balance_after) for log in logs] == [
        (-10, promo.id, 5)]
    assert verify_credit() == []


def test_a_grant_is_idempotent_audited_and_checked(credit_server, clock):
    org = create_org(credit_server, "Acme", 0)
    first = grant(credit_server, org.id, 20, kind=PROMO, key="promo-1",
                  expires=clock() + datetime.timedelta(days=30))
    assert grant(credit_server, org.id, 20, kind=PROMO, key="promo-1",
                 expires=clock() + datetime.timedelta(days=30)) == first
    with pytest.raises(grpc.RpcError) as reused:
        grant(credit_server, org.id, 21, key="promo-1")
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (first.grant.remaining, first.log.delta, first.log.grant_id, first.balance.balance) == (
        20, 20, first.grant.id, 20)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for bad in (dict(amount=0), dict(amount=5, expires=clock() - datetime.timedelta(seconds=1)),
                dict(amount=5, effective=clock() + datetime.timedelta(days=2),
                     expires=clock() + datetime.timedelta(days=1)),
                dict(amount=5, reason=" ")):
        amount = bad.pop("amount")
        with pytest.raises(grpc.RpcError) as refused:
            grant(credit_server, org.id, amount, **bad)
        assert refused.value.code() == invalid, bad
    with pytest.raises(grpc.RpcError) as denied:
        credit_server.credits.GrantCredits(credit_pb2.GrantCreditsRequest(
            organization_id=org.id, amount=5, reason="x"), timeout=10)  # the render service
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert verify_credit() == []


def test_grants_over_http(http_gateway, credit_server, clock):
    """POST /admin/credits/grants, and what expires soon on the overview and the list."""
    org = create_org(credit_server, "Acme", 10)
    expires = (clock() + datetime.timedelta(days=20)).isoformat() + "Z"
    status, _, body = get(http_gateway, "/admin/credits/grants", method="POST", body={
        "organizationId": str(org.id), "amount": "20", "kind": "GRANT_KIND_PROMOTIONAL",
        "expiresAt": expires, "reason": "20 free renders", "idempotencyKey": "promo-http"})
    assert status == 200, body
    created = json.loads(body)
    assert (created["grant"]["remaining"], created["grant"]["kind"], created["log"]["kind"]) == (
        "20", "GRANT_KIND_PROMOTIONAL", "CREDIT_LOG_KIND_ADJUST")
    assert created["balance"]["balance"] == "30"
    status, _, body = get(http_gateway, "/admin/overview")
    assert json.loads(body)["totalExpiringWithin30Days"] == "20"
    status, _, body = get(http_gateway, "/admin/organizations")
    (listed,) = json.loads(body)["organizations"]
    assert listed["expiringWithin30Days"] == "20"
    status, _, body = get(http_gateway, "/admin/credits/grants", method="POST", body={
        "organizationId": str(org.id), "amount": "5", "reason": "x"},
        headers=dict(staff(org.id)))
    assert status == 403
    status, _, body = get(http_gateway, "/admin/credits/grants", method="POST", body={
        "organizationId": str(org.id), "amount": "0", "reason": "x"})
    assert (status, json.loads(body)["code"]) == (400, "INVALID_ARGUMENT")
