"""AdminService over gRPC, with the credit and render services running for real behind it,
on SQLite and PostgreSQL: totals, listings with batched user look-ups, mutations audited with
the actor's name, the role guard, denials in the audit log, the per-IP limit."""
import dataclasses
import os
import subprocess
import sys

import grpc
import jwt
import pytest

from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2
from protos.carpet.render.v1 import render_pb2
from tests.builders import (
    create_carpet,
    create_org,
    create_user,
    expect_error,
    staff,
    submit,
    wait_final,
)
from tests.helpers import ADMIN, GATEWAY_TOKEN, JWT_SECRET, bearer

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def world(gateway, credit_server, render_server, start_workers):
    """Two organisations with users; renders in several states."""
    admin, _ = gateway
    acme = create_org(credit_server, "Acme", 20)
    other = create_org(credit_server, "Other", 3)
    ada = create_user(credit_server, acme.id, "ada@example.com", name="Ada")
    create_user(credit_server, other.id, "olga@example.com", name="Olga")
    carpet = create_carpet(render_server)
    done = submit(render_server, acme.id, carpet.id, user_id=ada.id)
    start_workers()
    wait_final(render_server, done.id)
    expect_error(lambda: submit(render_server, other.id, carpet.id, mode="hd"),
                 grpc.StatusCode.FAILED_PRECONDITION)  # a failed job: 3 credits < 4
    return admin, acme, other, ada, done


def test_overview_matches_the_services(world):
    admin, acme, other, ada, done = world
    overview = admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=ADMIN, timeout=10)
    assert (overview.organizations, overview.total_users) == (2, 2)
    assert overview.total_renders == 2
    assert dict(overview.renders_by_status) == {"queued": 0, "processing": 0, "success": 1,
                                                "failed": 1}
    assert overview.total_remaining_credit == 20 - 1 + 3
    mine = admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=staff(acme.id),
                             timeout=10)
    assert (mine.organizations, mine.total_users, mine.total_renders) == (1, 1, 1)
    expect_error(lambda: admin.GetOverview(admin_pb2.GetOverviewRequest(
        organization_id=other.id), metadata=staff(acme.id), timeout=10),
        grpc.StatusCode.PERMISSION_DENIED)


def test_lists_through_the_gateway(world):
    admin, acme, other, ada, done = world
    users = admin.ListUsers(account_pb2.ListUsersRequest(), metadata=ADMIN, timeout=10).users
    assert [(u.name, u.organization_name, u.credit) for u in users] == [
        ("Olga", "Other", 3), ("Ada", "Acme", 19)]
    renders = admin.ListRenders(render_pb2.ListRendersRequest(), metadata=ADMIN,
                                timeout=10).renders
    assert [(r.render.status, r.organization_name, r.user_name, r.user_email, r.image_path)
            for r in renders] == [
        (render_pb2.RENDER_STATUS_FAILED, "Other", "", "", ""),  # no user: named all the same
        (render_pb2.RENDER_STATUS_SUCCESS, "Acme", "Ada", "ada@example.com",
         f"/admin/renders/{done.id}/image")]
    assert renders[0].render.error_text == "insufficient credits"
    assert [row.carpet_name for row in renders] == ["Kilim", "Kilim"]  # by name, not number
    organizations = admin.ListOrganizations(account_pb2.ListOrganizationsRequest(),
                                            metadata=ADMIN, timeout=10).organizations
    assert [(o.name, o.balance) for o in organizations] == [("Other", 3), ("Acme", 19)]
    logs = admin.ListCreditLogs(credit_pb2.ListCreditLogsRequest(organization_id=acme.id),
                                metadata=ADMIN, timeout=10).logs
    assert [log.kind for log in logs] == [credit_pb2.CREDIT_LOG_KIND_RENDER,
                                          credit_pb2.CREDIT_LOG_KIND_SEED]
    # STAFF sees its own organisation only.
    mine = admin.ListRenders(render_pb2.ListRendersRequest(), metadata=staff(acme.id),
                             timeout=10).renders
    assert [r.render.id for r in mine] == [done.id]
    assert [u.name for u in admin.ListUsers(account_pb2.ListUsersRequest(),
                                            metadata=staff(other.id), timeout=10).users] == [
        "Olga"]
    expect_error(lambda: admin.ListRenders(render_pb2.ListRendersRequest(
        organization_id=other.id), metadata=staff(acme.id), timeout=10),
        grpc.StatusCode.PERMISSION_DENIED)
    expect_error(lambda: admin.ListRenders(render_pb2.ListRendersRequest(page_size=900),
                                           metadata=ADMIN, timeout=10),
                 grpc.StatusCode.INVALID_ARGUMENT)


def test_mutations_are_audited_with_the_actor(world):
    admin, acme, other, ada, done = world
    result = admin.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=-5, reason="refund by phone"), metadata=ADMIN,
        timeout=10)
    assert result.balance.balance == 14
    user = admin.CreateUser(account_pb2.CreateUserRequest(
        organization_id=other.id, name="Oz", email="oz@example.com",
        role=account_pb2.ROLE_STAFF), metadata=ADMIN, timeout=10)
    assert user.organization_name == "Other"
    rows = admin.ListAuditLogs(audit_pb2.ListAuditLogsRequest(actor="alice"), metadata=ADMIN,
                               timeout=10).audit_logs
    assert [(r.action, r.outcome, r.target) for r in rows[:2]] == [
        ("/carpet.credit.v1.AccountService/CreateUser", "ok", f"user:{user.id}"),
        ("/carpet.credit.v1.CreditService/AdjustCredits", "ok", f"credit_log:{result.log.id}")]
    expect_error(lambda: admin.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=-100, reason="too much"), metadata=ADMIN, timeout=10),
        grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")
    expect_error(lambda: admin.CreateUser(account_pb2.CreateUserRequest(
        organization_id=other.id, name="Oz", email="OZ@example.com",
        role=account_pb2.ROLE_STAFF), metadata=ADMIN, timeout=10),
        grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize("metadata, code", [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("x-admin-token", "not-a-valid-token-not-a-valid"),), grpc.StatusCode.UNAUTHENTICATED),
    ("staff", grpc.StatusCode.PERMISSION_DENIED),
])
def test_refusals_are_audited(world, metadata, code):
    admin, acme, *_ = world
    metadata = staff(acme.id) if metadata == "staff" else metadata
    expect_error(lambda: admin.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=5, reason="x"), metadata=metadata, timeout=10), code)
    rows = admin.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.admin.v1.AdminService/AdjustCredits"), metadata=ADMIN,
        timeout=10).audit_logs
    assert [(r.outcome, r.peer) for r in rows] == [(f"denied:{code.name}", "127.0.0.1")]


def test_admin_limit_per_client_ip(credit_server, render_server, render_settings):
    from admin_gateway.app import build_server

    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN,
                                   rate_limit_admin="3/minute")
    running, port = build_server(settings, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    try:
        for _ in range(3):
            admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=ADMIN, timeout=10)
        error = expect_error(lambda: admin.GetOverview(admin_pb2.GetOverviewRequest(),
                                                       metadata=ADMIN, timeout=10),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert int(dict(error.trailing_metadata())["retry-after"]) >= 1
    finally:
        channel.close()
        running.stop(grace=1)


def test_token_command_mints_a_jwt_the_gateway_accepts(world):
    admin, acme, *_ = world
    env = dict(os.environ, JWT_SECRET=JWT_SECRET)
    minted = subprocess.run([sys.executable, "-m", "admin_gateway", "token", "--sub", "dana",
                             "--role", "ADMIN", "--ttl", "15m"], env=env, capture_output=True,
                            text=True, timeout=30)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="carpet-admin")
    assert claims["sub"] == "dana" and 890 <= claims["exp"] - claims["iat"] <= 900
    overview = admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=bearer(token),
                                 timeout=10)
    assert overview.organizations == 2
    refused = subprocess.run([sys.executable, "-m", "admin_gateway", "token", "--sub", "x",
                              "--role", "STAFF"], env=env, capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode == 2 and "--org" in refused.stderr
