"""Helpers shared by tests: real servers on port 0, stubs, error details."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from carpet_common.settings import load_settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SECOND_ADMIN_TOKEN = "second-admin-token-abcdefghijkl"
JWT_SECRET = "jwt-secret-for-tests-" + "x" * 32
ADMIN = (("x-admin-token", ADMIN_TOKEN),)


def service_settings(**overrides):
    settings = load_settings({
        "ADMIN_TOKENS": f"alice:{ADMIN_TOKEN},bob:{SECOND_ADMIN_TOKEN}",
        "JWT_SECRET": JWT_SECRET,
    })
    return dataclasses.replace(settings, **overrides)


def error_reason(error: grpc.RpcError) -> str:
    """The google.rpc.ErrorInfo reason carried by a failed call ('' when none)."""
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class CreditStubs:
    channel: grpc.Channel
    accounts: object
    credits: object
    audit: object


def credit_stubs(port: int) -> CreditStubs:
    from protos.carpet.credit.v1 import account_pb2_grpc, audit_pb2_grpc, credit_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return CreditStubs(channel, account_pb2_grpc.AccountServiceStub(channel),
                       credit_pb2_grpc.CreditServiceStub(channel),
                       audit_pb2_grpc.AuditServiceStub(channel))
