"""Assembles the admin gateway's gRPC server: the AdminService, its access policy, per-IP rate
limit, and the audit of refused attempts (written by the credit service, which owns the log)."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass

import grpc

from admin_gateway.clients import ServiceClients
from admin_gateway.http import AdminHttpServer
from admin_gateway.public_api import PublicApi
from admin_gateway.servicer import AdminServicer
from carpet_common.auth import ADMIN, ADMIN_STAFF, PUBLIC, Authenticator
from carpet_common.calls import AuthInterceptor, CallContextInterceptor, Denial
from carpet_common.convert import utcnow
from carpet_common.denials import DenialLog
from carpet_common.interceptors import ErrorMappingInterceptor, TextFieldInterceptor
from carpet_common.metrics import MetricsInterceptor
from carpet_common.pictures import DECODES
from carpet_common.ratelimit import RateLimiter, RateLimitInterceptor
from carpet_common.server import ChannelSecurity, GrpcServer, create_server, tls_files
from carpet_common.sessions import revoked_sessions_via
from carpet_common.settings import Settings
from carpet_common.streams import StreamLimits
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import audit_pb2

logger = logging.getLogger(__name__)

SERVICE = "carpet.admin.v1.AdminService"
SERVICE_NAMES = (SERVICE,)
# Who may call what: the gateway serves people (its callers are admins and staff); services
# call the credit and render services directly. A method missing here is refused.
POLICY = {
    f"/{SERVICE}/GetOverview": ADMIN_STAFF,
    f"/{SERVICE}/ListUsers": ADMIN_STAFF,
    f"/{SERVICE}/ListRenders": ADMIN_STAFF,
    f"/{SERVICE}/ListOrganizations": ADMIN,
    f"/{SERVICE}/ListCreditLogs": ADMIN_STAFF,
    f"/{SERVICE}/ListAuditLogs": ADMIN,
    f"/{SERVICE}/CreateOrganization": ADMIN,
    f"/{SERVICE}/CreateUser": ADMIN,
    f"/{SERVICE}/AdjustCredits": ADMIN,
    f"/{SERVICE}/GetRenderImage": ADMIN_STAFF,
    # The catalogues: STAFF their own organisation's (the render service scopes and audits).
    f"/{SERVICE}/ListCarpets": ADMIN_STAFF,
    f"/{SERVICE}/GetCarpet": ADMIN_STAFF,
    f"/{SERVICE}/CreateCarpet": ADMIN_STAFF,
    f"/{SERVICE}/UpdateCarpet": ADMIN_STAFF,
    f"/{SERVICE}/ArchiveCarpet": ADMIN_STAFF,
    f"/{SERVICE}/RestoreCarpet": ADMIN_STAFF,
    f"/{SERVICE}/ExportCarpets": ADMIN_STAFF,
    f"/{SERVICE}/ImportCarpets": ADMIN_STAFF,
    f"/{SERVICE}/GetCarpetImport": ADMIN_STAFF,
    f"/{SERVICE}/GetCarpetThumbnail": ADMIN_STAFF,
    # Publishable keys: STAFF their own organisation's (the render service scopes and audits).
    f"/{SERVICE}/CreatePublishableKey": ADMIN_STAFF,
    f"/{SERVICE}/ListPublishableKeys": ADMIN_STAFF,
    f"/{SERVICE}/UpdatePublishableKey": ADMIN_STAFF,
    f"/{SERVICE}/RotatePublishableKey": ADMIN_STAFF,
    f"/{SERVICE}/RevokePublishableKey": ADMIN_STAFF,
    # Share links, leads and the funnel: STAFF their own organisation's (the render service
    # scopes and audits).
    **{f"/{SERVICE}/{name}": ADMIN_STAFF for name in (
        "ListShares", "RevokeShare", "ListLeads", "UpdateLead", "ExportLeads",
        "ExportPersonalData", "ErasePersonalData", "RecordConversion", "GetFunnel",
        "ExportFunnel", "SetShopLogo", "GetShopLogo", "DeleteShopLogo")},
    f"/{SERVICE}/SetUserPassword": ADMIN,
    f"/{SERVICE}/DeactivateUser": ADMIN,
    f"/{SERVICE}/ActivateUser": ADMIN,
    # Sign-in proves the person by what the request carries (password, refresh token); the
    # credit service checks it, counts failures and locks out.
    f"/{SERVICE}/Login": PUBLIC,
    f"/{SERVICE}/Refresh": PUBLIC,
    f"/{SERVICE}/Logout": PUBLIC,
    f"/{SERVICE}/ChangePassword": ADMIN_STAFF,
    # The console (docs/console.md).
    f"/{SERVICE}/GetUsage": ADMIN_STAFF,
    f"/{SERVICE}/ExportRenders": ADMIN_STAFF,
    f"/{SERVICE}/ExportOrganizations": ADMIN,
    f"/{SERVICE}/ExportUsers": ADMIN_STAFF,
    f"/{SERVICE}/ExportCreditLogs": ADMIN_STAFF,
    f"/{SERVICE}/ExportAuditLogs": ADMIN,
    f"/{SERVICE}/GetRenderThumbnail": ADMIN_STAFF,
    f"/{SERVICE}/GetRenderRoom": ADMIN_STAFF,
    f"/{SERVICE}/CancelRender": ADMIN,
    f"/{SERVICE}/VerifyAuditChain": ADMIN,
    f"/{SERVICE}/GetConsoleSettings": ADMIN_STAFF,
    f"/{SERVICE}/CreateWebhookEndpoint": ADMIN,
    f"/{SERVICE}/ListWebhookEndpoints": ADMIN,
    f"/{SERVICE}/DeleteWebhookEndpoint": ADMIN,
    f"/{SERVICE}/ListWebhookDeliveries": ADMIN,
    f"/{SERVICE}/RetryWebhookDelivery": ADMIN,
    f"/{SERVICE}/SetLowBalanceAlert": ADMIN,
    f"/{SERVICE}/SetSpendLimits": ADMIN,
    f"/{SERVICE}/SuspendOrganization": ADMIN,
    f"/{SERVICE}/ResumeOrganization": ADMIN,
    f"/{SERVICE}/ListOrganizationControls": ADMIN,
    f"/{SERVICE}/GrantCredits": ADMIN,
    f"/{SERVICE}/GetBalance": ADMIN_STAFF,
}
# Exports last as long as their pages: long streams, bounded per caller (carpet_common.streams).
EXPORT_METHODS = {f"/{SERVICE}/{name}" for name in
                  ("ExportRenders", "ExportOrganizations", "ExportUsers", "ExportCreditLogs",
                   "ExportAuditLogs", "ExportCarpets")}
# Pictures have their own per-IP budget (RATE_LIMIT_IMAGES): a page of thumbnails must not use
# up the budget that protects the API, nor the API the pictures'.
IMAGE_METHODS = {f"/{SERVICE}/{name}" for name in
                 ("GetRenderImage", "GetRenderThumbnail", "GetRenderRoom",
                  "GetCarpetThumbnail", "GetShopLogo")}


def console_settings(settings: Settings) -> admin_pb2.ConsoleSettings:
    return admin_pb2.ConsoleSettings(large_adjustment=settings.large_adjustment,
                                     render_modes=dict(settings.render_modes))


def denial_writer(clients: ServiceClients):
    """Refusals are written to the audit log the credit service owns (RecordDenial)."""

    def write(denial: Denial, count: int, methods) -> None:
        message = denial.message if count == 1 else (
            f"{denial.message} (and {count - 1} more: {dict(methods.most_common(10))})")
        try:
            clients.denials.RecordDenial(audit_pb2.RecordDenialRequest(
                actor=denial.actor, role=denial.role, action=denial.method,
                outcome=denial.outcome, message=message[:500], peer=denial.client_ip,
                request_id=denial.request_id, count=count), timeout=5)
        except grpc.RpcError as error:
            # The caller is refused either way; the gap shows in the log.
            logger.error("could not audit %d refused call(s) from %s: %s", count,
                         denial.client_ip, error.code().name)

    return write


def build_server(settings: Settings, address: str, *, clients: ServiceClients | None = None,
                 clock=None, unix_socket: str | None = None) -> tuple[GrpcServer, int]:
    clients = clients or ServiceClients(
        settings.credit_addr, settings.render_addr,
        ChannelSecurity.from_settings(settings), settings.service_token)
    denials = DenialLog(denial_writer(clients))
    DECODES.configure(settings.decode_budget_mp * 1_000_000)
    ended_sessions = revoked_sessions_via(clients.credit_channel,
                                          settings.session_check_interval_s)
    limiter = RateLimiter(settings.rate_limit_admin, settings.rate_limit_storage,
                          namespace="admin")
    image_limiter = RateLimiter(settings.rate_limit_images, settings.rate_limit_storage,
                                namespace="admin-images")
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        RateLimitInterceptor(limiter, methods=set(POLICY) - IMAGE_METHODS),
        RateLimitInterceptor(image_limiter, methods=IMAGE_METHODS),
        AuthInterceptor(Authenticator(settings, ended_sessions), POLICY,
                        on_denied=denials.record),
        TextFieldInterceptor(),
    ]

    def register(server):
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(clients, clock or utcnow, console_settings(settings)), server)

    running, port = create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                                  max_workers=settings.grpc_max_workers,
                                  tls=tls_files(settings), unix_socket=unix_socket,
                                  reflection=settings.grpc_reflection,
                                  long_streams=EXPORT_METHODS,
                                  stream_limits=StreamLimits.from_settings(settings),
                                  health_address=settings.health_addr)
    ended_sessions.start()
    running.background.append(ended_sessions)
    return running, port


@dataclass
class Gateway:
    grpc: GrpcServer
    grpc_port: int
    http: AdminHttpServer
    _socket_dir: str

    def stop(self) -> None:
        self.http.stop()
        self.grpc.stop()
        shutil.rmtree(self._socket_dir, ignore_errors=True)


def start_gateway(settings: Settings, grpc_address: str, http_address: str) -> Gateway:
    """The gRPC server and the HTTP front end, joined by a private Unix socket."""
    socket_dir = tempfile.mkdtemp(prefix="carpet-admin-")
    os.chmod(socket_dir, 0o700)
    socket_path = os.path.join(socket_dir, "admin.sock")
    # The HTTP port is bound first: the gRPC health check says SERVING only once both listen
    # (a taken HTTP port ends the process before anything answers).
    clients = ServiceClients(settings.credit_addr, settings.render_addr,
                             ChannelSecurity.from_settings(settings), settings.service_token)
    http = AdminHttpServer(http_address, f"unix:{socket_path}", Authenticator(settings),
                           settings.trusted_proxies,
                           backends={"credit": settings.credit_addr,
                                     "render": settings.render_addr},
                           security=ChannelSecurity.from_settings(settings),
                           public=PublicApi(clients.public, settings.trusted_proxies))
    running, port = build_server(settings, grpc_address, clients=clients,
                                 unix_socket=socket_path)
    http.start()
    return Gateway(running, port, http, socket_dir)
