"""The gateway's HTTP JSON API (docs/architecture.md) over real HTTP, with the services behind
it, on SQLite and PostgreSQL: the original plan's paths, the error body and status mapping,
Retry-After."""
import json
import urllib.error
import urllib.request

import pytest

from tests.builders import TOKEN, call, create_org, create_user, staff, staff_token
from tests.helpers import ADMIN_TOKEN, GATEWAY_TOKEN

pytestmark = pytest.mark.usefixtures("engine")


def test_read_endpoints(http_gateway, credit_server):
    acme = create_org(credit_server, "Acme", 40)
    create_user(credit_server, acme.id, "ada@example.com", name="Ada")
    status, overview, _ = call(http_gateway, "/admin/overview", headers=TOKEN)
    assert status == 200
    assert (overview["organizations"], overview["totalUsers"],
            overview["totalRemainingCredit"]) == ("1", "1", "40")
    status, users, _ = call(http_gateway, "/admin/users?page_size=10", headers=TOKEN)
    assert status == 200 and [(u["name"], u["organizationName"], u["credit"])
                              for u in users["users"]] == [("Ada", "Acme", "40")]
    status, organizations, _ = call(http_gateway, "/admin/organizations", headers=TOKEN)
    assert [o["name"] for o in organizations["organizations"]] == ["Acme"]
    status, renders, _ = call(http_gateway, f"/admin/renders?organizationId={acme.id}",
                              headers=TOKEN)
    # No renders yet: an empty page, its fields written out although empty.
    assert status == 200 and renders == {"renders": [], "nextPageToken": ""}


def test_adjust_and_create_user_are_audited(http_gateway, credit_server):
    acme = create_org(credit_server, "Acme", 10)
    status, adjusted, _ = call(http_gateway, "/admin/credits/adjust", method="POST",
                               body={"organizationId": acme.id, "delta": 15,
                                     "reason": "welcome bonus"}, headers=TOKEN)
    assert status == 200 and adjusted["balance"]["balance"] == "25"
    status, user, _ = call(http_gateway, "/admin/users", method="POST", headers=TOKEN,
                           body={"organization_id": acme.id, "name": "Bo",
                                 "email": "bo@example.com", "role": "ROLE_STAFF"})
    assert status == 200 and user["email"] == "bo@example.com"
    status, audit, _ = call(http_gateway, "/admin/audit?actor=alice", headers=TOKEN)
    assert [(row["action"], row["outcome"]) for row in audit["auditLogs"]] == [
        ("/carpet.credit.v1.AccountService/CreateUser", "ok"),
        ("/carpet.credit.v1.CreditService/AdjustCredits", "ok"),
        ("/carpet.credit.v1.AccountService/CreateOrganization", "ok")]


def test_error_mapping(http_gateway, credit_server):
    acme = create_org(credit_server, "Acme", 10)
    create_user(credit_server, acme.id, "ada@example.com")
    cases = [
        (call(http_gateway, "/admin/overview"), 401, "UNAUTHENTICATED"),
        (call(http_gateway, "/admin/overview", headers={"Authorization": "Bearer nope"}), 401,
         "UNAUTHENTICATED"),
        (call(http_gateway, "/admin/credits/adjust", method="POST", headers=dict(staff(acme.id)),
              body={"organizationId": acme.id, "delta": 1, "reason": "x"}), 403,
         "PERMISSION_DENIED"),
        (call(http_gateway, "/admin/renders?pageSize=900", headers=TOKEN), 400,
         "INVALID_ARGUMENT"),
        (call(http_gateway, "/admin/credits/adjust", method="POST", headers=TOKEN,
              body={"organizationId": acme.id, "delta": 0, "reason": "x"}), 400,
         "INVALID_ARGUMENT"),
        (call(http_gateway, "/admin/credits/adjust", method="POST", headers=TOKEN,
              body={"organizationId": acme.id, "delta": -50, "reason": "x"}), 412,
         "INSUFFICIENT_CREDITS"),
        (call(http_gateway, "/admin/credits/adjust", method="POST", headers=TOKEN,
              body={"organizationId": 999, "delta": 5, "reason": "x"}), 404, "NOT_FOUND"),
        (call(http_gateway, "/admin/users", method="POST", headers=TOKEN,
              body={"organizationId": acme.id, "name": "A", "email": "ADA@example.com",
                    "role": "ROLE_STAFF"}), 409, "ALREADY_EXISTS"),
        (call(http_gateway, "/admin/users", method="POST", headers=TOKEN, raw=b"{not json"),
         400, "INVALID_ARGUMENT"),
        (call(http_gateway, "/admin/users", method="POST", headers=TOKEN,
              body={"organizationId": "many"}), 400, "INVALID_ARGUMENT"),
        (call(http_gateway, "/admin/nothing-here", headers=TOKEN), 404, "NOT_FOUND"),
    ]
    for (status, body, _), expected_status, expected_code in cases:
        assert (status, body["code"]) == (expected_status, expected_code), body
        assert body["message"]
    status, audit, _ = call(http_gateway, "/admin/audit?action=/carpet.admin.v1.AdminService/"
                                          "GetOverview", headers=TOKEN)
    assert [(row["outcome"], row["peer"]) for row in audit["auditLogs"]] == [
        ("denied:UNAUTHENTICATED", "127.0.0.1")] * 2


def test_rate_limit_answers_429_with_retry_after(credit_server, render_server,
                                                 render_settings):
    import dataclasses

    from admin_gateway.app import start_gateway

    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN,
                                   rate_limit_admin="2/minute")
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    base = f"http://127.0.0.1:{gateway.http.port}"
    try:
        assert [call(base, "/admin/overview", headers=TOKEN)[0] for _ in range(2)] == [200, 200]
        status, body, headers = call(base, "/admin/overview", headers=TOKEN)
        assert (status, body["code"]) == (429, "RATE_LIMITED")
        assert 1 <= int(headers["Retry-After"]) <= 60
    finally:
        gateway.stop()


def test_rate_limit_recovers_after_the_window(credit_server, render_server, render_settings):
    import dataclasses
    import time

    from admin_gateway.app import start_gateway

    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN,
                                   rate_limit_admin="2/second")
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    base = f"http://127.0.0.1:{gateway.http.port}"
    try:
        statuses = [call(base, "/admin/overview", headers=TOKEN)[0] for _ in range(4)]
        assert statuses[:2] == [200, 200] and 429 in statuses[2:]
        time.sleep(1.2)  # the one-second window moves on
        assert call(base, "/admin/overview", headers=TOKEN)[0] == 200
    finally:
        gateway.stop()


def fetch(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), dict(error.headers)


def test_image_healthz_metrics_and_openapi(http_gateway, credit_server, render_server,
                                           start_workers):
    from tests.integration.test_admin_gateway import staff
    from tests.integration.test_render_service import create_carpet, submit, wait_final

    acme = create_org(credit_server, "Acme", 10)
    other = create_org(credit_server, "Other", 10)
    job = submit(render_server, acme.id, create_carpet(render_server).id)
    start_workers()
    wait_final(render_server, job.id)
    status, picture, headers = fetch(f"{http_gateway}/admin/renders/{job.id}/image", TOKEN)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert picture.startswith(b"\x89PNG")
    assert fetch(f"{http_gateway}/admin/renders/{job.id}/image")[0] == 401
    # Another organisation's render does not exist for STAFF (the render service says so).
    assert fetch(f"{http_gateway}/admin/renders/{job.id}/image", dict(staff(other.id)))[0] == 404
    assert fetch(f"{http_gateway}/admin/renders/999/image", TOKEN)[0] == 404

    status, body, _ = fetch(f"{http_gateway}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})

    # The public port serves metrics to an ADMIN or a service (a scraper's token) only: they
    # name every credential.
    assert fetch(f"{http_gateway}/metrics")[0] == 401
    assert fetch(f"{http_gateway}/metrics", {"x-admin-token": "not-a-token-" + "x" * 20})[0] == 401
    assert fetch(f"{http_gateway}/metrics", {"Authorization": f"Bearer {staff_token(1)}"})[0] == 403
    assert fetch(f"{http_gateway}/metrics", {"x-service-token": GATEWAY_TOKEN})[0] == 200
    status, body, headers = fetch(f"{http_gateway}/metrics", TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert ('carpet_rpc_requests_total{code="OK",method="/carpet.admin.v1.AdminService/'
            'GetRenderImage"}') in text
    assert 'carpet_rpc_requests_total{code="UNAUTHENTICATED"' in text
    assert 'carpet_http_requests_total{route="/admin/renders/{id}/image",status="404"}' in text
    assert ADMIN_TOKEN not in text

    status, body, _ = fetch(f"{http_gateway}/admin/openapi.json")
    document = json.loads(body)
    assert status == 200 and document["openapi"].startswith("3.")
    from openapi_spec_validator import validate

    validate(document)  # raises on anything that is not valid OpenAPI 3
    from admin_gateway.surface import OPERATIONS

    json_routes = [operation.http for operation in OPERATIONS if operation.http
                   and not (operation.picture or operation.export or operation.upload)]
    assert len(json_routes) > 50  # every JSON route of the protos
    for route in json_routes:
        operation = document["paths"][route.template][route.verb.lower()]
        reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert reference.split("/")[-1] in document["components"]["schemas"]
        assert set(operation["responses"]) >= {"200", "400", "401", "403", "429"}
    adjust = document["components"]["schemas"]["carpet_credit_v1_AdjustCreditsRequest"]
    assert set(adjust["properties"]) == {"organizationId", "delta", "reason", "idempotencyKey"}


def test_healthz_is_unready_when_a_service_is_down(credit_server, render_settings):
    import dataclasses

    from admin_gateway.app import start_gateway
    from tests.conftest import free_port

    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{free_port()}",
                                   service_token=GATEWAY_TOKEN)
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    try:
        status, body, _ = fetch(f"http://127.0.0.1:{gateway.http.port}/healthz")
        assert (status, json.loads(body)) == (503, {"status": "unavailable", "down": ["render"]})
    finally:
        gateway.stop()


@pytest.mark.parametrize("header", ["x-admin-token", "Authorization"])
def test_a_credential_grpc_cannot_carry_is_refused_and_audited(http_gateway, credit_server,
                                                               header):
    """HTTP allows header bytes gRPC metadata does not (found by schemathesis): such a
    credential is a 401 like any bad one, and the denial is audited."""
    import http.client
    from urllib.parse import urlsplit

    from protos.carpet.credit.v1 import audit_pb2
    from tests.helpers import ADMIN

    address = urlsplit(http_gateway)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=15)
    connection.putrequest("GET", "/admin/overview")
    connection.putheader(header, "t\u00f6ken-\u00e9".encode("latin-1"))
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["code"]) == (401, "UNAUTHENTICATED")
    connection.close()
    audit = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(), metadata=ADMIN,
                                              timeout=10)
    assert [(row.action, row.outcome) for row in audit.audit_logs] == [
        ("/carpet.admin.v1.AdminService/GetOverview", "denied:UNAUTHENTICATED")]


def test_zero_values_are_written_out(http_gateway, credit_server):
    """A field whose value is zero is in the JSON (`"totalHeld": "0"`), not left out."""
    acme = create_org(credit_server, "Acme", 0)
    status, overview, _ = call(http_gateway, "/admin/overview", headers=TOKEN)
    assert status == 200
    assert overview["totalHeld"] == "0" and overview["totalRenders"] == "0"
    status, organizations, _ = call(http_gateway, "/admin/organizations", headers=TOKEN)
    assert status == 200
    assert [(row["id"], row["balance"], row["held"]) for row in
            organizations["organizations"]] == [(str(acme.id), "0", "0")]


def test_edge_details(http_gateway, credit_server, render_settings, render_server, caplog):
    """Every X-Forwarded-For line is read; unknown paths share one metrics label; every
    response says nosniff; control characters of a request line are escaped in the log."""
    import dataclasses
    import http.client
    import logging
    import socket

    from admin_gateway.app import start_gateway
    from tests.helpers import GATEWAY_TOKEN

    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN, trusted_proxies=("127.0.0.1",))
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    port = gateway.http.port
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("GET", "/admin/overview")
        connection.putheader("X-Forwarded-For", "203.0.113.1")  # the client's own claim
        connection.putheader("X-Forwarded-For", "198.51.100.2, 127.0.0.1")  # added by proxies
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 401 and response.headers["X-Content-Type-Options"] == "nosniff"
        response.read()
        connection.close()
        status, audit, _ = call(f"http://127.0.0.1:{port}", "/admin/audit?action=/carpet.admin."
                                "v1.AdminService/GetOverview", headers=TOKEN)
        assert [row["peer"] for row in audit["auditLogs"]] == ["198.51.100.2"]

        base = f"http://127.0.0.1:{port}"
        for index in range(40):
            assert call(base, f"/admin/bogus-{index}", headers=TOKEN)[0] == 404
        status, _, headers = call(base, "/admin/overview/", method="POST", body={},
                                  headers=TOKEN)
        assert (status, headers["Allow"]) == (405, "GET")
        status, _, headers = call(base, "/admin/renders.csv", method="POST", body={},
                                  headers=TOKEN)  # an export's path: only GET
        assert (status, headers["Allow"]) == (405, "GET")
        metrics = fetch(base + "/metrics", TOKEN)[1].decode()
        assert "bogus" not in metrics and "overview/" not in metrics
        assert 'route="unknown",status="404"' in metrics
        assert 'route="/admin/overview",status="405"' in metrics

        caplog.set_level(logging.INFO, logger="admin_gateway.http")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"GET /admin/\x1b[31mred HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"nosniff" in raw.recv(4096)
        lines = [record.getMessage() for record in caplog.records
                 if "[31mred" in record.getMessage()]
        assert lines and all("\x1b" not in line and "\\x1b" in line for line in lines), lines
    finally:
        gateway.stop()


def test_a_request_trickling_in_is_cut_off(render_settings, render_server, credit_server,
                                           monkeypatch):
    """A client that keeps a request arriving a byte at a time is never idle, so the HTTP
    server's idle timeout would keep it forever: the read timeout closes it; a whole request
    on another connection is served meanwhile."""
    import dataclasses
    import socket

    from admin_gateway import hosting
    from admin_gateway.app import start_gateway
    from tests.helpers import GATEWAY_TOKEN

    monkeypatch.setattr(hosting, "REQUEST_READ_TIMEOUT_S", 1.0)
    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN)
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    try:
        slow = socket.create_connection(("127.0.0.1", gateway.http.port), timeout=10)
        slow.sendall(b"GET /admin/overview HTTP/1.1\r\n")
        closed = False
        for _ in range(60):  # a header line every 0.2 s: never idle, never complete
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            slow.settimeout(0.2)
            try:
                if slow.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "the trickling request was never cut off"
        status, _, _ = call(f"http://127.0.0.1:{gateway.http.port}", "/admin/overview",
                            headers=TOKEN)
        assert status == 200
        slow.close()
    finally:
        gateway.stop()
