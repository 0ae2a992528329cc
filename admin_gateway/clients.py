"""The gateway's clients of the credit and render services: channels built once per process,
presenting the gateway's own service identity, plus a client interceptor that carries the
caller's credential, request id and client IP to the services (which check the credential
again), and a deadline on every call."""
from __future__ import annotations

import json

import grpc

from carpet_common import errors
from carpet_common.calls import call_var
from carpet_common.server import PLAINTEXT, ChannelSecurity, service_channel
from protos.carpet.credit.v1 import (
    account_pb2_grpc,
    audit_pb2_grpc,
    auth_pb2_grpc,
    credit_pb2_grpc,
    notification_pb2_grpc,
)
from protos.carpet.render.v1 import render_pb2_grpc

CALL_TIMEOUT_S = 10.0
# The gateway's reads are idempotent: a replica restarting or a connection being refused is
# retried by the channel (gRFC A6) within the call's deadline. Changes are not retried here:
# they are the caller's to retry, with its idempotency key.
READS = {
    "carpet.credit.v1.AccountService": ("GetOrganization", "ListOrganizations", "GetUser",
                                        "BatchGetUsers", "ListUsers", "GetAccountTotals"),
    "carpet.credit.v1.CreditService": ("GetBalance", "ListCreditLogs", "GetCreditUsage"),
    "carpet.credit.v1.AuditService": ("ListAuditLogs", "VerifyAuditChain"),
    "carpet.credit.v1.NotificationService": ("ListWebhookEndpoints", "ListWebhookDeliveries",
                                             "GetOrganizationControls",
                                             "ListOrganizationControls"),
    "carpet.render.v1.RenderService": ("GetCarpet", "ListCarpets", "GetRender", "ListRenders",
                                       "GetRenderOutput", "GetRenderTotals", "GetRenderUsage",
                                       "GetRenderInput", "ListPublishableKeys", "ListPublicCarpets",
                                       "GetPublicRender", "GetPublicRenderOutput",
                                       "GetSharedRender", "GetSharedRenderOutput", "ListShares",
                                       "ListLeads", "GetFunnel"),
}
READ_RETRIES = json.dumps({"methodConfig": [{
    "name": [{"service": service, "method": method}
             for service, methods in READS.items() for method in methods],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
}]})
FORWARDED = ("x-admin-token", "authorization")


class _ForwardCaller(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Carries the caller's request id and address, and its credential unless
    `credentials=False` (the gateway's own calls)."""

    def __init__(self, credentials: bool = True):
        self._credentials = credentials

    def _with_caller(self, details):
        call = call_var.get()
        metadata = list(details.metadata or ())
        if call is not None:
            if self._credentials:
                metadata += [(key, call.metadata[key]) for key in FORWARDED
                             if key in call.metadata]
            metadata += [("x-request-id", call.request_id), ("x-forwarded-for", call.client_ip)]
        return details._replace(metadata=metadata, timeout=details.timeout or CALL_TIMEOUT_S)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_caller(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_caller(details), request)


class ServiceClients:
    def __init__(self, credit_address: str, render_address: str,
                 security: ChannelSecurity = PLAINTEXT,
                 service_token: str | None = None):
        """`security`: how this process's channels are secured (TLS, its certificate);
        `service_token`: its own identity where certificates are not set up."""
        own_credit, own_render = (service_channel(address, security, service_token=service_token,
                                                  service_config=READ_RETRIES)
                                  for address in (credit_address, render_address))
        credit, render = (grpc.intercept_channel(channel, _ForwardCaller())
                          for channel in (own_credit, own_render))
        self._channels = (own_credit, own_render)
        self._relaying = {"carpet.credit.v1.": credit, "carpet.render.v1.": render}
        self.accounts = account_pb2_grpc.AccountServiceStub(credit)
        self.credits = credit_pb2_grpc.CreditServiceStub(credit)
        self.audit = audit_pb2_grpc.AuditServiceStub(credit)
        self.renders = render_pb2_grpc.RenderServiceStub(render)
        self.auth = auth_pb2_grpc.AuthServiceStub(credit)  # ChangePassword: as the person
        self.notifications = notification_pb2_grpc.NotificationServiceStub(credit)
        # The gateway's own calls, without the caller's credential: reporting a refused
        # caller must not present that caller's bad credential, and a sign-in call proves
        # its person by the password or refresh token in its request.
        self.credit_channel = own_credit
        self.denials = audit_pb2_grpc.AuditServiceStub(own_credit)
        own_forwarding = grpc.intercept_channel(own_credit, _ForwardCaller(credentials=False))
        self.sign_in = auth_pb2_grpc.AuthServiceStub(own_forwarding)
        # The public render API (admin_gateway.public_api): the gateway's identity only; the
        # page's key, origin and visitor travel in each request.
        self.public = render_pb2_grpc.RenderServiceStub(own_render)

    def relay_channel(self, service: str) -> grpc.Channel:
        """The channel, carrying the caller's credential, to the process serving `service`
        ("carpet.render.v1.RenderService")."""
        for package, channel in self._relaying.items():
            if service.startswith(package):
                return channel
        raise ValueError(f"no service process serves {service}")

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def relayed(error: grpc.RpcError) -> Exception:
    """A service's refusal, passed on to the gateway's caller with its code and reason;
    INTERNAL and the like stay as they are (the gateway answers INTERNAL, generic message)."""
    return errors.from_rpc_error(error) or error
