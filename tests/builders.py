"""What tests build and call over and over, in one place: organisations, users, tokens, credit
operations, carpets, renders, webhook endpoints, and the waits between them. Each is one real
gRPC call on the stubs a fixture gives (`credit_server`, `render_server`); tests import these
from here, never from another test module."""
from __future__ import annotations

import dataclasses
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import jwt
import pytest
from PIL import Image

from carpet_common.settings import Settings
from protos.carpet.credit.v1 import account_pb2, credit_pb2, notification_pb2
from protos.carpet.render.v1 import render_pb2
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, ADMIN_TOKEN, JWT_SECRET, bearer, error_reason

FINAL = (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)
ALL_EVENTS = ["render.succeeded", "render.failed", "credit.adjusted", "credit.low_balance",
              "credit.spend_limit_reached", "organization.suspended"]


# --- people and organisations ---------------------------------------------------------------

def staff_token(organization_id: int, exp_offset: int = 600) -> str:
    """A STAFF person's access token for `organization_id`, minted now."""
    now = int(time.time())
    return jwt.encode({"sub": "sam", "role": "STAFF", "org": organization_id,
                       "exp": now + exp_offset, "iat": now, "aud": "carpet-admin",
                       "iss": "carpet"}, JWT_SECRET, algorithm="HS256")


def staff(organization_id: int) -> tuple[tuple[str, str], ...]:
    """Call metadata of a STAFF person of `organization_id`."""
    return bearer(staff_token(organization_id, exp_offset=300))


def create_org(stubs, name="Acme", credits=100):
    return stubs.accounts.CreateOrganization(
        account_pb2.CreateOrganizationRequest(name=name, initial_credits=credits),
        metadata=ADMIN, timeout=10)


def create_user(stubs, organization_id, email, role=account_pb2.ROLE_STAFF, name="Ada"):
    return stubs.accounts.CreateUser(
        account_pb2.CreateUserRequest(organization_id=organization_id, name=name, email=email,
                                      role=role), metadata=ADMIN, timeout=10)


def expect_error(call, code, reason=None):
    """`call()` fails with `code` (and the ErrorInfo `reason`, if given); the error."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == code, raised.value.details()
    if reason is not None:
        assert error_reason(raised.value) == reason
    return raised.value


# --- credits ---------------------------------------------------------------------------------

def balance(stubs, organization_id):
    return stubs.credits.GetBalance(credit_pb2.GetBalanceRequest(organization_id=organization_id),
                                    timeout=10)


def amounts(shown: credit_pb2.Balance) -> tuple[int, int, int]:
    return shown.balance, shown.held, shown.available


def adjust(stubs, organization_id, delta, reason="test", key=""):
    return stubs.credits.AdjustCredits(
        credit_pb2.AdjustCreditsRequest(organization_id=organization_id, delta=delta,
                                        reason=reason, idempotency_key=key),
        metadata=ADMIN, timeout=10)


def reserve(stubs, organization_id, amount, reference, ttl=0):
    return stubs.credits.ReserveCredits(
        credit_pb2.ReserveCreditsRequest(organization_id=organization_id, amount=amount,
                                         reference=reference, ttl_seconds=ttl), timeout=10)


def capture(stubs, hold_id):
    return stubs.credits.CaptureHold(credit_pb2.CaptureHoldRequest(hold_id=hold_id), timeout=10)


def release(stubs, hold_id):
    return stubs.credits.ReleaseHold(credit_pb2.ReleaseHoldRequest(hold_id=hold_id), timeout=10)


# --- carpets and renders ---------------------------------------------------------------------

def jpeg(size=(40, 30)) -> bytes:
    output = io.BytesIO()
    Image.new("RGB", size, (90, 60, 30)).save(output, format="JPEG")
    return output.getvalue()


def create_carpet(stubs, sku="K-1", image=None, **fields):
    values = dict(sku=sku, name="Kilim", width_cm=160, length_cm=230, material="wool",
                  image=image if image is not None else tiny_png())
    values.update(fields)
    return stubs.renders.CreateCarpet(render_pb2.CreateCarpetRequest(**values), timeout=10)


def submit(stubs, organization_id, carpet_id, mode="preview", key="", room=b"", user_id=0):
    return stubs.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=organization_id, carpet_id=carpet_id, mode=mode, idempotency_key=key,
        room_image=room, user_id=user_id), timeout=30)


def wait_final(stubs, job_id, timeout=30):
    """Watch the render to its end; (the render as GetRender shows it, the states seen)."""
    states = []
    for job in stubs.renders.WatchRender(render_pb2.WatchRenderRequest(id=job_id),
                                         timeout=timeout):
        states.append(job.status)
    assert states and states[-1] in FINAL, states
    return stubs.renders.GetRender(render_pb2.GetRenderRequest(id=job_id), timeout=10), states


def settings_for(credit_db_url, render_db_url) -> Settings:
    return dataclasses.replace(Settings(), credit_database_url=credit_db_url,
                               render_database_url=render_db_url)


# --- webhooks --------------------------------------------------------------------------------

def add_endpoint(credit_server, url, events=ALL_EVENTS, organization_id=0, key=""):
    return credit_server.notifications.CreateWebhookEndpoint(
        notification_pb2.CreateWebhookEndpointRequest(
            organization_id=organization_id, url=url, events=events, idempotency_key=key),
        metadata=ADMIN, timeout=10)


def deliveries(credit_server, endpoint_id):
    return list(credit_server.notifications.ListWebhookDeliveries(
        notification_pb2.ListWebhookDeliveriesRequest(id=endpoint_id), metadata=ADMIN,
        timeout=10).deliveries)


# --- the gateway's HTTP API ------------------------------------------------------------------

TOKEN = {"x-admin-token": ADMIN_TOKEN}  # an ADMIN's HTTP header


def call(base, path, *, method="GET", body=None, headers=None, raw=None):
    """A JSON call: (status, the JSON answer, the headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


def get(base, path, headers=TOKEN, method="GET", body=None):
    """Any answer, CSV and pictures too: (status, headers, raw body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


# --- waiting ---------------------------------------------------------------------------------

def wait_until(condition: Callable[[], object], timeout=30.0, strict=True) -> bool:
    """Poll `condition` until it holds; False (or AssertionError when `strict`) after
    `timeout` seconds. For work another process or thread finishes, never for time itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    if strict:
        raise AssertionError("condition not reached in time")
    return False
