"""Helpers shared by tests: real servers on port 0, stubs, error details."""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

import grpc

from carpet_common.errors import rpc_error_reason as error_reason  # noqa: F401 - for tests
from carpet_common.server import ServiceTokenInterceptor
from carpet_common.settings import load_settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SECOND_ADMIN_TOKEN = "second-admin-token-abcdefghijkl"
JWT_SECRET = "jwt-secret-for-tests-" + "x" * 48
ADMIN = (("x-admin-token", ADMIN_TOKEN),)
AUDIT_HMAC_KEY = "audit-hmac-key-for-tests-" + "k" * 40
# Service identities (x-service-token): the render service, the admin gateway and an internal
# backend (`web`, the default RENDER_CLIENTS).
SERVICE_TOKEN = {"render": "render-service-token-for-tests-0123456789",
                 "admin-gateway": "gateway-service-token-for-tests-0123456789",
                 "web": "web-backend-token-for-tests-0123456789abcd"}
GATEWAY_TOKEN = SERVICE_TOKEN["admin-gateway"]
SERVICE_TOKENS = ",".join(f"{name}:{token}" for name, token in SERVICE_TOKEN.items())


class FakeClock:
    """The tests' one clock, injected where the code takes one: tests move time instead of
    sleeping. `advance(30)` or `advance(minutes=5)`; returns the new time."""

    def __init__(self, start: datetime.datetime | None = None):
        self.now = start or datetime.datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> datetime.datetime:
        self.now += datetime.timedelta(seconds=seconds, **delta)
        return self.now


def as_service(name: str) -> tuple[tuple[str, str], ...]:
    return (("x-service-token", SERVICE_TOKEN[name]),)


def service_settings(**overrides):
    settings = load_settings({
        "ADMIN_TOKENS": f"alice:{ADMIN_TOKEN},bob:{SECOND_ADMIN_TOKEN}",
        "JWT_SECRET": JWT_SECRET,
        "SERVICE_TOKENS": SERVICE_TOKENS,
        "AUDIT_HMAC_KEY": AUDIT_HMAC_KEY,
    })
    return dataclasses.replace(settings, **overrides)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class CreditStubs:
    port: int
    channel: grpc.Channel
    accounts: object
    credits: object
    audit: object
    anonymous: CreditStubs | None = None  # the same server through a channel of no identity
    notifications: object = None


def identified_channel(port: int | str, service: str | None) -> grpc.Channel:
    """A channel to a local server (a port, or an address) that presents `service`'s token on
    every call (None: no identity of its own)."""
    channel = grpc.insecure_channel(port if isinstance(port, str) else f"127.0.0.1:{port}")
    if service is None:
        return channel
    return grpc.intercept_channel(channel, ServiceTokenInterceptor(SERVICE_TOKEN[service]))


def credit_stubs(port: int, service: str | None = "render") -> CreditStubs:
    """Stubs that call as the render service (the credit service's main caller); calls that
    send an admin credential act as that person."""
    from protos.carpet.credit.v1 import (
        account_pb2_grpc,
        audit_pb2_grpc,
        credit_pb2_grpc,
        notification_pb2_grpc,
    )

    channel = identified_channel(port, service)
    stubs = CreditStubs(port, channel, account_pb2_grpc.AccountServiceStub(channel),
                        credit_pb2_grpc.CreditServiceStub(channel),
                        audit_pb2_grpc.AuditServiceStub(channel),
                        notifications=notification_pb2_grpc.NotificationServiceStub(channel))
    if service is not None:
        stubs.anonymous = credit_stubs(port, None)
    return stubs


@dataclass
class RenderStubs:
    port: int
    channel: grpc.Channel
    renders: object
    anonymous: RenderStubs | None = None  # the same server through a channel of no identity


def render_stubs(port: int, service: str | None = "web") -> RenderStubs:
    """Stubs that call as the internal backend `web` (a RENDER_CLIENTS service)."""
    from protos.carpet.render.v1 import render_pb2_grpc

    channel = identified_channel(port, service)
    stubs = RenderStubs(port, channel, render_pb2_grpc.RenderServiceStub(channel))
    if service is not None:
        stubs.anonymous = render_stubs(port, None)
    return stubs


def multipart_form(fields: dict) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart form as a browser sends it; bytes values are files
    (a room picture)."""
    import uuid

    boundary = uuid.uuid4().hex
    data = b""
    for name, value in fields.items():
        filename = '; filename="room.png"' if isinstance(value, bytes) else ""
        value = value if isinstance(value, bytes) else str(value).encode()
        data += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                 f'{filename}\r\n\r\n').encode() + value + b"\r\n"
    return data + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
