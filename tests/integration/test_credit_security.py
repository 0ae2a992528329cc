"""Authentication, the role guard and the audit trail of the credit service, through a real
server. Denied attempts are audited with the client IP; credentials never reach the log."""
import logging
import time

import grpc
import jwt
import pytest

from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import audit_pb2, credit_pb2
from tests.builders import adjust, create_org, expect_error, staff_token
from tests.helpers import (
    ADMIN,
    ADMIN_TOKEN,
    JWT_SECRET,
    SECOND_ADMIN_TOKEN,
    bearer,
    error_reason,
)

pytestmark = pytest.mark.usefixtures("engine")

ADJUST = "/carpet.credit.v1.CreditService/AdjustCredits"


def admin_jwt(**overrides):
    claims = {"sub": "carol", "role": "ADMIN", "exp": int(time.time()) + 600,
              "iat": int(time.time()),
              "aud": "carpet-admin", "iss": "carpet"}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, JWT_SECRET,
                      algorithm="HS256")


def audit_rows(stubs, **filters):
    return list(stubs.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(**filters),
                                          metadata=ADMIN, timeout=10).audit_logs)


def adjust_with(stubs, metadata, organization_id=1):
    """AdjustCredits with exactly `metadata` as the credential (no service identity)."""
    return stubs.anonymous.credits.AdjustCredits(
        credit_pb2.AdjustCreditsRequest(organization_id=organization_id, delta=1, reason="r"),
        metadata=metadata, timeout=10)


def test_adjustment_is_audited_with_actor_and_link(credit_server):
    org = create_org(credit_server, "Acme", 10)
    result = adjust(credit_server, org.id, 7, "goodwill")
    rows = audit_rows(credit_server, action=ADJUST)
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor, row.role, row.organization_id, row.outcome, row.target) == (
        "alice", "ADMIN", org.id, "ok", f"credit_log:{result.log.id}")
    assert row.peer == "127.0.0.1"
    assert '"reason": "goodwill"' in row.details
    assert ADMIN_TOKEN not in row.details
    # The second rotated token works and is its own actor.
    adjust_with(credit_server, (("x-admin-token", SECOND_ADMIN_TOKEN),), org.id)
    assert audit_rows(credit_server, action=ADJUST)[0].actor == "bob"
    # A JWT admin acts under its subject.
    adjust_with(credit_server, bearer(admin_jwt()), org.id)
    assert audit_rows(credit_server, action=ADJUST, actor="carol")[0].outcome == "ok"
    assert verify_credit() == []


@pytest.mark.parametrize("metadata, code", [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("x-admin-token", "wrong-token-wrong-token-wrong"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer not.a.jwt"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED),
])
def test_bad_credentials_are_refused_and_audited(credit_server, metadata, code):
    org = create_org(credit_server, "Acme", 10)
    error = expect_error(lambda: adjust_with(credit_server, metadata, org.id), code)
    assert error_reason(error) == "UNAUTHENTICATED"
    denied = audit_rows(credit_server, action=ADJUST)
    assert [(row.outcome, row.actor, row.peer) for row in denied] == [
        ("denied:UNAUTHENTICATED", "anonymous", "127.0.0.1")]
    assert credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10).balance == 10


@pytest.mark.parametrize("token_factory", [
    lambda: admin_jwt(exp=int(time.time()) - 10),  # expired
    lambda: admin_jwt(aud="someone-else"),  # wrong audience
    lambda: admin_jwt(iss="evil"),  # wrong issuer
    lambda: admin_jwt(role=None),  # role missing
    lambda: admin_jwt(role="ROOT"),  # unknown role
    lambda: jwt.encode({"sub": "x", "role": "ADMIN", "exp": int(time.time()) + 60,
                        "iat": int(time.time()),
                        "aud": "carpet-admin", "iss": "carpet"}, None, algorithm="none"),
    lambda: jwt.encode({"sub": "x", "role": "ADMIN", "exp": int(time.time()) + 60,
                        "iat": int(time.time()),
                        "aud": "carpet-admin", "iss": "carpet"}, "another-secret-" + "y" * 30,
                       algorithm="HS256"),  # wrong key
    lambda: jwt.encode({"sub": "x", "role": "ADMIN", "exp": int(time.time()) + 60,
                        "iat": int(time.time()),
                        "aud": "carpet-admin", "iss": "carpet"}, JWT_SECRET, algorithm="HS512"),
])
def test_bad_jwts_are_refused(credit_server, token_factory):
    org = create_org(credit_server, "Acme", 10)
    expect_error(lambda: adjust_with(credit_server, bearer(token_factory()), org.id),
                 grpc.StatusCode.UNAUTHENTICATED)
    assert audit_rows(credit_server, action=ADJUST)[0].outcome == "denied:UNAUTHENTICATED"


def test_staff_cannot_adjust_and_is_audited(credit_server):
    org = create_org(credit_server, "Acme", 10)
    expect_error(lambda: adjust_with(credit_server, bearer(staff_token(org.id)), org.id),
                 grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    row = audit_rows(credit_server, action=ADJUST)[0]
    assert (row.outcome, row.actor, row.role) == ("denied:PERMISSION_DENIED", "sam", "STAFF")


def test_failed_adjustment_is_audited_and_changes_nothing(credit_server):
    org = create_org(credit_server, "Acme", 3)
    expect_error(lambda: adjust(credit_server, org.id, -5), grpc.StatusCode.FAILED_PRECONDITION)
    row = audit_rows(credit_server, action=ADJUST)[0]
    assert row.outcome == "error:FAILED_PRECONDITION"
    assert verify_credit() == []


def test_forwarded_for_is_believed_only_from_trusted_proxies(credit_server):
    org = create_org(credit_server, "Acme", 3)
    spoofed = (("x-forwarded-for", "203.0.113.9"),)
    expect_error(lambda: adjust_with(credit_server, spoofed, org.id),
                 grpc.StatusCode.UNAUTHENTICATED)
    assert audit_rows(credit_server, action=ADJUST)[0].peer == "127.0.0.1"


def test_credentials_never_reach_the_log(credit_server, caplog):
    caplog.set_level(logging.DEBUG)
    org = create_org(credit_server, "Acme", 3)
    token = admin_jwt()
    adjust_with(credit_server, bearer(token), org.id)
    expect_error(lambda: adjust_with(credit_server, bearer(token + "tampered"), org.id),
                 grpc.StatusCode.UNAUTHENTICATED)
    expect_error(lambda: adjust_with(credit_server, (("x-admin-token", ADMIN_TOKEN + "x"),),
                                     org.id), grpc.StatusCode.UNAUTHENTICATED)
    text = caplog.text
    for secret in (ADMIN_TOKEN, SECOND_ADMIN_TOKEN, token, JWT_SECRET):
        assert secret not in text
    for row in audit_rows(credit_server):
        for secret in (ADMIN_TOKEN, token):
            assert secret not in row.details and secret not in row.actor


def test_the_hold_cycle_and_reads_need_an_identity(credit_server):
    """Loopback grants nothing: without an identity every call is refused; the render service
    may hold credits but not read the ledger's lists."""
    org = create_org(credit_server, "Acme", 3)
    anonymous = credit_server.anonymous
    expect_error(lambda: anonymous.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10),
        grpc.StatusCode.UNAUTHENTICATED)
    expect_error(lambda: anonymous.credits.ReserveCredits(credit_pb2.ReserveCreditsRequest(
        organization_id=org.id, amount=1, reference="r"), timeout=10),
        grpc.StatusCode.UNAUTHENTICATED)
    assert credit_server.credits.GetBalance(  # as the render service
        credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10).balance == 3
    expect_error(lambda: credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(), timeout=10), grpc.StatusCode.PERMISSION_DENIED)
    expect_error(lambda: credit_server.audit.ListAuditLogs(
        audit_pb2.ListAuditLogsRequest(), timeout=10), grpc.StatusCode.PERMISSION_DENIED)


def test_staff_of_one_shop_reaches_nothing_of_another_directly(credit_server):
    """Every credit-service method a STAFF may call, called directly (no gateway in between)
    with another shop's real ids: the other shop's rows do not exist for it, and its lists are
    refused; its own are answered."""
    from protos.carpet.credit.v1 import account_pb2, notification_pb2
    from tests.integration.test_credit_accounts import create_user

    mine, theirs = create_org(credit_server, "Mine", 10), create_org(credit_server, "Theirs", 10)
    their_user = create_user(credit_server, theirs.id, "them@example.com")
    my_user = create_user(credit_server, mine.id, "me@example.com")
    staff = bearer(staff_token(mine.id))
    stubs = credit_server.anonymous  # the person's credential alone
    calls = {
        "GetOrganization": (stubs.accounts.GetOrganization, account_pb2.GetOrganizationRequest,
                            "id", grpc.StatusCode.NOT_FOUND),
        "GetUser": (stubs.accounts.GetUser, account_pb2.GetUserRequest, "id",
                    grpc.StatusCode.NOT_FOUND),
        "ListUsers": (stubs.accounts.ListUsers, account_pb2.ListUsersRequest, "organization_id",
                      grpc.StatusCode.PERMISSION_DENIED),
        "GetBalance": (stubs.credits.GetBalance, credit_pb2.GetBalanceRequest,
                       "organization_id", grpc.StatusCode.NOT_FOUND),
        "ListCreditLogs": (stubs.credits.ListCreditLogs, credit_pb2.ListCreditLogsRequest,
                           "organization_id", grpc.StatusCode.PERMISSION_DENIED),
        "GetCreditUsage": (stubs.credits.GetCreditUsage, credit_pb2.GetCreditUsageRequest,
                           "organization_id", grpc.StatusCode.PERMISSION_DENIED),
        "GetOrganizationControls": (stubs.notifications.GetOrganizationControls,
                                    notification_pb2.GetOrganizationControlsRequest, "id",
                                    grpc.StatusCode.PERMISSION_DENIED),
    }
    ids = {"GetUser": (their_user.id, my_user.id)}
    extra = {"GetCreditUsage": {"from_date": "2025-12-20", "to_date": "2026-01-01"}}
    for name, (method, request_type, field, refused) in calls.items():
        theirs_id, mine_id = ids.get(name, (theirs.id, mine.id))
        more = extra.get(name, {})
        expect_error(lambda m=method, r=request_type, f=field, i=theirs_id, more=more: m(
            r(**{f: i}, **more), metadata=staff, timeout=10), refused)
        method(request_type(**{field: mine_id}, **more), metadata=staff, timeout=10)
