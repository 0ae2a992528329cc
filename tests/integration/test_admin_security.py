"""The gateway's security matrix: every kind of bad credential gets its exact code and is
audited; STAFF cannot call admin-only methods or read another organisation; the per-IP limit
is shared by replicas through Redis; on SQLite and PostgreSQL."""
import dataclasses
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from admin_gateway.app import build_server
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2
from protos.carpet.render.v1 import render_pb2
from tests.builders import create_org, expect_error
from tests.helpers import ADMIN, GATEWAY_TOKEN, JWT_SECRET, bearer

pytestmark = pytest.mark.usefixtures("engine")
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**overrides):
    values = {"sub": "carol", "role": "ADMIN", "exp": int(time.time()) + 300,
              "iat": int(time.time()),
              "aud": "carpet-admin", "iss": "carpet"}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def hs(**overrides):
    return jwt.encode(claims(**overrides), JWT_SECRET, algorithm="HS256")


def rs(kid="key-1", **overrides):
    return jwt.encode(claims(**overrides), RSA_KEY, algorithm="RS256", headers={"kid": kid})


def hs_signed_with_public_key():
    """The HS/RS confusion attack: HS256 'signed' with the RSA public key, naming its kid."""
    import base64
    import hashlib
    import hmac

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode())
    body = b64(json.dumps(claims()).encode())
    return (head + b"." + body + b"." + b64(hmac.new(public, head + b"." + body,
                                                     hashlib.sha256).digest())).decode()


@pytest.fixture
def secured_gateway(credit_server, render_server, render_settings, tmp_path):
    jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    jwk["kid"] = "key-1"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    # The render service checks the forwarded JWT again: it gets the same keys.
    from render_service.app import build_server as build_render_server

    render, render_port = build_render_server(
        dataclasses.replace(render_settings, jwt_jwks_file=str(jwks)), "127.0.0.1:0")
    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_port}",
                                   service_token=GATEWAY_TOKEN,
                                   jwt_jwks_file=str(jwks))
    running, port = build_server(settings, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield admin_pb2_grpc.AdminServiceStub(channel)
    channel.close()
    running.stop(grace=1)
    render.stop(grace=1)


# Credentials are minted when the test runs (factories), never when the module is imported:
# a slow machine reaching this test late must still see a live JWT where one is meant.
CASES = {
    "no credential": (lambda: (), "UNAUTHENTICATED"),
    "wrong admin token": (lambda: (("x-admin-token", "x" * 32),), "UNAUTHENTICATED"),
    "expired JWT": (lambda: bearer(hs(exp=int(time.time()) - 5)), "UNAUTHENTICATED"),
    "wrong audience": (lambda: bearer(hs(aud="elsewhere")), "UNAUTHENTICATED"),
    "wrong issuer": (lambda: bearer(hs(iss="mallory")), "UNAUTHENTICATED"),
    "alg none": (lambda: bearer(jwt.encode(claims(), None, algorithm="none")),
                 "UNAUTHENTICATED"),
    "unknown kid": (lambda: bearer(rs(kid="key-9")), "UNAUTHENTICATED"),
    "HS/RS confusion": (lambda: bearer(hs_signed_with_public_key()), "UNAUTHENTICATED"),
    "STAFF on an admin-only method": (lambda: bearer(hs(role="STAFF", org=1)),
                                      "PERMISSION_DENIED"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_credentials_get_their_code_and_an_audit_row(secured_gateway, credit_server,
                                                             case):
    mint, code = CASES[case]
    metadata = mint()
    org = create_org(credit_server, "Acme", 10)
    expect_error(lambda: secured_gateway.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=org.id, delta=5, reason="x"), metadata=metadata, timeout=10),
        getattr(grpc.StatusCode, code), code)
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.admin.v1.AdminService/AdjustCredits"), metadata=ADMIN,
        timeout=10).audit_logs
    assert [row.outcome for row in rows] == [f"denied:{code}"]
    assert credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=org.id), timeout=10).balance == 10


def test_rs256_by_kid_is_accepted(secured_gateway, credit_server):
    # Every service checks the forwarded JWT again, so each needs JWT_JWKS_FILE
    # (docs/operations.md); here the gateway and the render service have it.
    page = secured_gateway.ListRenders(render_pb2.ListRendersRequest(), metadata=bearer(rs()),
                                       timeout=10)
    assert list(page.renders) == []


def test_staff_reads_only_its_own_organisation(secured_gateway, credit_server):
    mine, theirs = create_org(credit_server, "Mine", 1), create_org(credit_server, "Theirs", 1)
    token = bearer(hs(role="STAFF", org=mine.id))
    for call in (
        lambda: secured_gateway.ListUsers(account_pb2.ListUsersRequest(
            organization_id=theirs.id), metadata=token, timeout=10),
        lambda: secured_gateway.ListRenders(render_pb2.ListRendersRequest(
            organization_id=theirs.id), metadata=token, timeout=10),
        lambda: secured_gateway.GetOverview(admin_pb2.GetOverviewRequest(
            organization_id=theirs.id), metadata=token, timeout=10),
        lambda: secured_gateway.ListOrganizations(account_pb2.ListOrganizationsRequest(),
                                                  metadata=token, timeout=10),
        lambda: secured_gateway.ListAuditLogs(audit_pb2.ListAuditLogsRequest(),
                                              metadata=token, timeout=10),
    ):
        expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
    assert secured_gateway.GetOverview(admin_pb2.GetOverviewRequest(), metadata=token,
                                       timeout=10).organizations == 1


def test_limit_is_shared_by_replicas_through_redis(credit_server, render_server,
                                                   render_settings):
    """Two gateway replicas with RATE_LIMIT_STORAGE on one Redis count one client together."""
    settings = dataclasses.replace(
        render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN,
        rate_limit_admin="4/minute", rate_limit_storage="redis://127.0.0.1:6379/15",
        trusted_proxies=("127.0.0.1",))
    replicas = [build_server(settings, "127.0.0.1:0") for _ in range(2)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _, port in replicas]
    stubs = [admin_pb2_grpc.AdminServiceStub(channel) for channel in channels]
    # A fresh client address per run (passed on as by a trusted proxy) keeps earlier runs'
    # counts in Redis out of this one.
    client = (("x-forwarded-for", f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.1"),)
    try:
        for index in range(4):
            stubs[index % 2].GetOverview(admin_pb2.GetOverviewRequest(),
                                         metadata=ADMIN + client, timeout=10)
        for stub in stubs:
            expect_error(lambda stub=stub: stub.GetOverview(
                admin_pb2.GetOverviewRequest(), metadata=ADMIN + client, timeout=10),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    finally:
        for channel in channels:
            channel.close()
        for running, _ in replicas:
            running.stop(grace=1)
