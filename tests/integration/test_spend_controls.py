"""Low-balance alerts, spend limits and suspension (`docs/webhooks.md`) through the real services,
on both engines: 40 concurrent reservations cross a threshold or a limit and exactly one alert or
limit event is written, exactly as many pass as the limit allows; refused submissions are kept as
failed jobs; a suspended organisation cannot submit or sign in until resumed."""
import concurrent.futures

import grpc
import pytest

from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import (
    account_pb2,
    audit_pb2,
    auth_pb2,
    auth_pb2_grpc,
    credit_pb2,
    notification_pb2,
)
from protos.carpet.render.v1 import render_pb2
from tests.builders import (
    add_endpoint,
    adjust,
    balance,
    create_carpet,
    create_org,
    deliveries,
    release,
    reserve,
    submit,
)
from tests.helpers import ADMIN, error_reason, identified_channel

pytestmark = pytest.mark.usefixtures("engine")
THREADS = 40
PASSWORD = "kilim-desen-2026-uzun"


def outcome(call):
    try:
        return call()
    except grpc.RpcError as error:
        return (error.code(), error_reason(error))


def run_all(calls):
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(outcome, calls))


def controls(credit_server, method, request):
    return getattr(credit_server.notifications, method)(request, metadata=ADMIN, timeout=10)


def events_of(credit_server, endpoint_id):
    return [delivery.event_type for delivery in deliveries(credit_server, endpoint_id)]


def test_forty_reservations_cross_the_low_balance_threshold_once(credit_server):
    org = create_org(credit_server, "Acme", 100)
    hook = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["credit.low_balance"])
    controls(credit_server, "SetLowBalanceAlert", notification_pb2.SetLowBalanceAlertRequest(
        id=org.id, low_balance_threshold=50))
    # 40 reservations of 2 at once: available goes 100 -> 20, crossing 50 once.
    holds = run_all([lambda i=i: reserve(credit_server, org.id, 2, f"job-{i}")
                     for i in range(THREADS)])
    assert all(isinstance(hold, credit_pb2.Hold) for hold in holds)
    assert events_of(credit_server, hook.id) == ["credit.low_balance"]
    overview = controls(credit_server, "ListOrganizationControls",
                        notification_pb2.ListOrganizationControlsRequest(low_balance_only=True))
    assert [(row.organization_id, row.available, row.low_balance)
            for row in overview.organizations] == [(org.id, 20, True)]
    # Re-arming and the crossings after it: tests/unit/domain/test_controls.py.
    assert verify_credit() == []


def test_a_threshold_set_above_the_available_credit_fires_at_once(credit_server):
    org = create_org(credit_server, "Acme", 10)
    hook = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["credit.low_balance"])
    set_alert = notification_pb2.SetLowBalanceAlertRequest(id=org.id, low_balance_threshold=20,
                                                           idempotency_key="alert-1")
    shown = controls(credit_server, "SetLowBalanceAlert", set_alert)
    assert (shown.low_balance_threshold, shown.low_balance, shown.available) == (20, True, 10)
    assert controls(credit_server, "SetLowBalanceAlert", set_alert) == shown  # a retry
    assert events_of(credit_server, hook.id) == ["credit.low_balance"]


def test_forty_reservations_never_pass_the_monthly_limit_together(credit_server):
    org = create_org(credit_server, "Acme", 1000)
    hook = add_endpoint(credit_server, "http://127.0.0.1:9/hooks",
                        ["credit.spend_limit_reached"])
    limits = controls(credit_server, "SetSpendLimits", notification_pb2.SetSpendLimitsRequest(
        id=org.id, monthly_credits=10))
    assert (limits.monthly_credits, limits.spent_this_month) == (10, 0)
    results = run_all([lambda i=i: reserve(credit_server, org.id, 1, f"job-{i}")
                       for i in range(THREADS)])
    passed = [result for result in results if isinstance(result, credit_pb2.Hold)]
    assert len(passed) == 10
    assert [result for result in results if not isinstance(result, credit_pb2.Hold)] == [
        (grpc.StatusCode.FAILED_PRECONDITION, "SPEND_LIMIT_REACHED")] * (THREADS - 10)
    assert balance(credit_server, org.id).held == 10
    assert events_of(credit_server, hook.id) == ["credit.spend_limit_reached"]
    # Captured or held, it is spent this month; a released hold gives its share back.
    release(credit_server, passed[0].id)
    shown = controls(credit_server, "GetOrganizationControls",
                     notification_pb2.GetOrganizationControlsRequest(id=org.id))
    assert shown.spent_this_month == 9
    reserve(credit_server, org.id, 1, "fits-again")
    assert verify_credit() == []


def test_the_user_daily_limit_keeps_a_refused_submission_as_a_failed_job(
        credit_server, render_server):
    org = create_org(credit_server, "Acme", 100)
    user = credit_server.accounts.CreateUser(account_pb2.CreateUserRequest(
        organization_id=org.id, name="Ada", email="ada@example.com",
        role=account_pb2.ROLE_STAFF), metadata=ADMIN, timeout=10)
    carpet = create_carpet(render_server)
    controls(credit_server, "SetSpendLimits", notification_pb2.SetSpendLimitsRequest(
        id=org.id, user_daily_credits=5))
    submit(render_server, org.id, carpet.id, mode="hd", user_id=user.id)  # 4 of 5
    with pytest.raises(grpc.RpcError) as refused:
        submit(render_server, org.id, carpet.id, mode="standard", user_id=user.id)
    assert (refused.value.code(), error_reason(refused.value)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "SPEND_LIMIT_REACHED")
    submit(render_server, org.id, carpet.id, mode="standard")  # no user: the organisation's
    submit(render_server, org.id, carpet.id, mode="preview", user_id=user.id)  # 5 of 5
    jobs = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=org.id, status=render_pb2.RENDER_STATUS_FAILED), timeout=10).renders
    assert [(job.mode, job.error_text) for job in jobs] == [
        ("standard", f"user {user.id}'s daily spend limit of 5 credits would be passed")]


def test_a_suspended_organisation_cannot_submit_or_sign_in(credit_server, render_server):
    org = create_org(credit_server, "Acme", 100)
    credit_server.accounts.CreateUser(account_pb2.CreateUserRequest(
        organization_id=org.id, name="Ada", email="ada@example.com",
        role=account_pb2.ROLE_STAFF, password=PASSWORD), metadata=ADMIN, timeout=10)
    hook = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["organization.suspended"])
    carpet = create_carpet(render_server)
    channel = identified_channel(credit_server.port, "admin-gateway")
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    login = auth_pb2.LoginRequest(email="ada@example.com", password=PASSWORD,
                                  client_ip="192.0.2.1")

    def refused(call):
        with pytest.raises(grpc.RpcError) as error:
            call()
        return error.value.code(), error_reason(error.value)

    with pytest.raises(grpc.RpcError) as missing:
        controls(credit_server, "SuspendOrganization",
                 notification_pb2.SuspendOrganizationRequest(id=org.id, reason="  "))
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    session = auth.Login(login, timeout=10)
    suspended = controls(credit_server, "SuspendOrganization",
                         notification_pb2.SuspendOrganizationRequest(id=org.id,
                                                                     reason="unpaid invoice"))
    assert (suspended.suspended, suspended.suspension_reason) == (True, "unpaid invoice")
    controls(credit_server, "SuspendOrganization", notification_pb2.SuspendOrganizationRequest(
        id=org.id, reason="again"))  # no second event, the first reason stays
    expected = (grpc.StatusCode.FAILED_PRECONDITION, "ORGANIZATION_SUSPENDED")
    assert refused(lambda: submit(render_server, org.id, carpet.id)) == expected
    assert refused(lambda: auth.Login(login, timeout=10)) == expected
    assert refused(lambda: auth.Refresh(auth_pb2.RefreshRequest(
        refresh_token=session.refresh_token, client_ip="192.0.2.1"), timeout=10)) == expected
    adjust(credit_server, org.id, 5, "adjustments still work")
    (job,) = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=org.id), timeout=10).renders
    assert (job.status, job.error_text) == (
        render_pb2.RENDER_STATUS_FAILED, f"organisation {org.id} is suspended: unpaid invoice")
    assert events_of(credit_server, hook.id) == ["organization.suspended"]

    resumed = controls(credit_server, "ResumeOrganization",
                       notification_pb2.ResumeOrganizationRequest(id=org.id))
    assert (resumed.suspended, resumed.suspension_reason) == (False, "")
    assert auth.Login(login, timeout=10).access_token
    assert submit(render_server, org.id, carpet.id).status == render_pb2.RENDER_STATUS_QUEUED
    audited = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        organization_id=org.id), metadata=ADMIN, timeout=10).audit_logs
    actions = [(row.action.rsplit("/", 1)[1], row.outcome) for row in audited]
    assert ("SuspendOrganization", "ok") in actions and ("ResumeOrganization", "ok") in actions
    assert ("Login", "denied:FAILED_PRECONDITION") in actions
    channel.close()
