"""An ordinary credential against the real three processes: what it must not get.

- A stolen access token cannot try passwords on `/auth/password`: its failures count toward the
  account's lockout like sign-in failures.
- `/metrics` on the public port names every credential: only ADMIN or a service reads it.
- A sign-in name built to run as a formula in a spreadsheet that splits on `;` (Turkish Excel)
  is defused in `audit.csv` at every delimiter, not only at its start.
- Idempotency keys are the caller's own: another ADMIN sending the same key gets its own
  answer, never the first caller's (a webhook's signing secret is shown once).
- A STAFF JWT whose `org` is beyond int64 is refused like any bad token, not an HTTP 500."""
import csv
import io
import json
import urllib.error
import urllib.request

import grpc
import pytest

from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import account_pb2, notification_pb2, notification_pb2_grpc
from tests.helpers import ADMIN_TOKEN, SECOND_ADMIN_TOKEN, SERVICE_TOKEN
from tests.security.stack import Deployment, staff_jwt

PASSWORD = "a-long-enough-password-1"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = Deployment(tmp_path_factory.mktemp("gateway"), RATE_LIMIT_ADMIN="off",
                         WEBHOOK_ALLOW_PRIVATE="1",
                         ADMIN_TOKENS=f"ops:{ADMIN_TOKEN},eve:{SECOND_ADMIN_TOKEN}").start()
    yield running
    running.stop()


def http(deployment, path, body=None, headers=None):
    request = urllib.request.Request(
        deployment.http + path, method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_metrics_are_not_for_everyone(deployment):
    shop = deployment.organization("Metrics", 0)
    assert http(deployment, "/metrics")[0] == 401
    assert http(deployment, "/metrics",
                headers={"Authorization": f"Bearer {staff_jwt(shop.id)}"})[0] == 403
    for reader in ({"x-admin-token": ADMIN_TOKEN}, {"x-service-token": SERVICE_TOKEN["web"]}):
        status, body = http(deployment, "/metrics", headers=reader)
        assert status == 200 and b"carpet_credential_uses_total" in body


def test_a_formula_in_a_sign_in_name_is_defused_at_every_delimiter(deployment):
    assert http(deployment, "/auth/login", {"email": "x;=1+1;@nodomain",
                                            "password": "whatever-it-is-1"})[0] == 401
    status, body = http(deployment, "/admin/audit.csv", headers={"x-admin-token": ADMIN_TOKEN})
    assert status == 200
    text = body.decode("utf-8-sig")
    assert "1+1" in text
    # As a spreadsheet that splits on `;` reads it (quotes count only at a cell's start), and
    # as one that splits on `,`: no cell starts a formula.
    for delimiter in (";", ","):
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            for cell in row:
                assert not cell.lstrip(' "').startswith(("=", "+", "-", "@")), (delimiter, cell)


def test_idempotency_keys_are_the_callers_own(deployment):
    notifications = notification_pb2_grpc.NotificationServiceStub(
        deployment.channel("CREDIT_ADDR"))
    request = notification_pb2.CreateWebhookEndpointRequest(
        url="http://127.0.0.1:9/hooks", events=["credit.adjusted"], idempotency_key="hook-1")
    first = notifications.CreateWebhookEndpoint(
        request, metadata=(("x-admin-token", ADMIN_TOKEN),), timeout=10)
    again = notifications.CreateWebhookEndpoint(
        request, metadata=(("x-admin-token", ADMIN_TOKEN),), timeout=10)
    assert (again.endpoint.id, again.secret) == (first.endpoint.id, first.secret)
    other = notifications.CreateWebhookEndpoint(
        request, metadata=(("x-admin-token", SECOND_ADMIN_TOKEN),), timeout=10)
    assert other.endpoint.id != first.endpoint.id and other.secret != first.secret


def test_an_organisation_beyond_int64_is_a_bad_token(deployment):
    token = staff_jwt(2**63)
    assert http(deployment, "/admin/overview", headers={"Authorization": f"Bearer {token}"}) \
        [0] == 401
    with pytest.raises(grpc.RpcError) as refused:
        deployment.admin().GetOverview(admin_pb2.GetOverviewRequest(),
                                       metadata=(("authorization", f"Bearer {token}"),),
                                       timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture
def own_deployment(tmp_path):
    """A deployment of the test's own: lockouts count per address, and every test here calls
    from 127.0.0.1."""
    running = Deployment(tmp_path, RATE_LIMIT_ADMIN="off").start()
    yield running
    running.stop()


def test_password_changes_count_toward_the_lockout(own_deployment):
    deployment = own_deployment
    shop = deployment.organization("Locked", 10)
    deployment.accounts().CreateUser(account_pb2.CreateUserRequest(
        organization_id=shop.id, email="owner@shop.example", name="Owner",
        role=account_pb2.ROLE_STAFF, password=PASSWORD),
        metadata=(("x-admin-token", ADMIN_TOKEN),), timeout=10)
    status, body = http(deployment, "/auth/login", {"email": "owner@shop.example",
                                                    "password": PASSWORD})
    assert status == 200
    stolen = {"Authorization": f"Bearer {json.loads(body)['accessToken']}"}
    guesses = [http(deployment, "/auth/password", {"currentPassword": f"guess-number-{index:04}",
                                                   "newPassword": "another-long-password-2"},
                    stolen)[0] for index in range(5)]
    assert guesses == [403] * 5
    # The right password now gets no further: the account is locked, for changes and sign-ins.
    right = http(deployment, "/auth/password", {"currentPassword": PASSWORD,
                                                "newPassword": "another-long-password-2"},
                 stolen)
    assert right[0] == 429
    assert http(deployment, "/auth/login", {"email": "owner@shop.example",
                                            "password": PASSWORD})[0] == 429
