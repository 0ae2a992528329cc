"""Forged addresses under `make run`: the launcher's own settings, real processes. Anything on
the machine reaches the ports over loopback, so an `X-Forwarded-For` from a loopback client is
its own claim: rotating it neither resets the sign-in lockout per address nor lifts the render
rate limit. The gateway's forwarded address is still believed by the services, because of the
gateway's service identity: an admin change made through the HTTP API over IPv6 is audited by
the credit service with the browser's `::1`, not the gateway's IPv4 connection."""
import json
import urllib.error
import urllib.request

import grpc
import pytest

from protos.carpet.admin.v1 import admin_pb2_grpc
from protos.carpet.credit.v1 import audit_pb2, audit_pb2_grpc, auth_pb2
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.e2e.test_processes import base_env
from tests.processes import make_run


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("make-run")
    env = {**base_env(tmp), "ADMIN_HTTP_ADDR": f"[::1]:{free_port()}",
           "RATE_LIMIT_RENDER": "5/minute"}
    with make_run(tmp, env) as (env, _launcher):
        yield env, {name: (tmp / "var" / name).read_text().strip()
                    for name in ("admin_token", "web_token")}


def http(env, path, body=None, headers=None):
    request = urllib.request.Request(
        f"http://{env['ADMIN_HTTP_ADDR']}{path}", method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_an_admin_change_is_audited_with_the_browsers_address(launched):
    env, tokens = launched
    status, _ = http(env, "/admin/credits/adjust",
                     {"organizationId": 1, "delta": 5, "reason": "top-up"},
                     {"x-admin-token": tokens["admin_token"], "X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    with grpc.insecure_channel(env["CREDIT_ADDR"]) as channel:
        rows = audit_pb2_grpc.AuditServiceStub(channel).ListAuditLogs(
            audit_pb2.ListAuditLogsRequest(action="/carpet.credit.v1.CreditService/AdjustCredits"),
            metadata=(("x-admin-token", tokens["admin_token"]),
                      ("x-forwarded-for", "198.51.100.7")), timeout=10).audit_logs
    # The browser came over IPv6 loopback; its forged header is ignored, and the gateway's
    # IPv4 connection to the credit service is not what the row names.
    assert [row.peer for row in rows] == ["::1"]


def code_of(call) -> grpc.StatusCode:
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


def test_rotating_forwarded_addresses_do_not_reset_the_sign_in_lockout(launched):
    env, _ = launched
    with grpc.insecure_channel(env["ADMIN_GRPC_ADDR"]) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        codes = [code_of(lambda i=index: admin.Login(
            auth_pb2.LoginRequest(email=f"nobody{i}@example.com", password="wrong-password-123"),
            metadata=(("x-forwarded-for", f"203.0.113.{i}"),), timeout=30))
            for index in range(7)]
    # Five failures from one address lock it, whatever each call claimed to come from.
    assert codes == ([grpc.StatusCode.UNAUTHENTICATED] * 5
                     + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2)


def test_rotating_forwarded_addresses_do_not_lift_the_render_rate_limit(launched):
    env, tokens = launched
    with grpc.insecure_channel(env["RENDER_ADDR"]) as channel:
        renders = render_pb2_grpc.RenderServiceStub(channel)
        codes = [code_of(lambda i=index: renders.SubmitRender(
            render_pb2.SubmitRenderRequest(organization_id=1, carpet_id=10**6, mode="preview"),
            metadata=(("x-service-token", tokens["web_token"]),
                      ("x-forwarded-for", f"198.51.100.{i}")), timeout=10))
            for index in range(8)]
    # RATE_LIMIT_RENDER=5/minute: the sixth call from this machine is over, forged or not.
    assert codes == [grpc.StatusCode.NOT_FOUND] * 5 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
