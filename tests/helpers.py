"""Helpers shared by tests: real servers on port 0, stubs, error details."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import grpc

from carpet_common.errors import rpc_error_reason as error_reason  # noqa: F401 - for tests
from carpet_common.settings import load_settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SECOND_ADMIN_TOKEN = "second-admin-token-abcdefghijkl"
JWT_SECRET = "jwt-secret-for-tests-" + "x" * 48
ADMIN = (("x-admin-token", ADMIN_TOKEN),)


def service_settings(**overrides):
    settings = load_settings({
        "ADMIN_TOKENS": f"alice:{ADMIN_TOKEN},bob:{SECOND_ADMIN_TOKEN}",
        "JWT_SECRET": JWT_SECRET,
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


def credit_stubs(port: int) -> CreditStubs:
    from protos.carpet.credit.v1 import account_pb2_grpc, audit_pb2_grpc, credit_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return CreditStubs(port, channel, account_pb2_grpc.AccountServiceStub(channel),
                       credit_pb2_grpc.CreditServiceStub(channel),
                       audit_pb2_grpc.AuditServiceStub(channel))


@dataclass
class RenderStubs:
    port: int
    channel: grpc.Channel
    renders: object


def render_stubs(port: int) -> RenderStubs:
    from protos.carpet.render.v1 import render_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return RenderStubs(port, channel, render_pb2_grpc.RenderServiceStub(channel))
