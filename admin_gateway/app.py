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
from admin_gateway.hosting import AdminHttpServer
from admin_gateway.public_api import PublicApi
from admin_gateway.servicer import AdminServicer, method_handlers
from admin_gateway.surface import OPERATIONS, POLICY, SERVICE
from carpet_common.auth import Authenticator
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
from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import audit_pb2

logger = logging.getLogger(__name__)

SERVICE_NAMES = (SERVICE,)
# Exports last as long as their pages: long streams, bounded per caller (carpet_common.streams).
EXPORT_METHODS = {operation.path for operation in OPERATIONS if operation.export}
# Pictures have their own per-IP budget (RATE_LIMIT_IMAGES; `picture` in the method's access).
IMAGE_METHODS = {operation.path for operation in OPERATIONS if operation.picture}


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
        handlers = method_handlers(
            AdminServicer(clients, clock or utcnow, console_settings(settings)), clients)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE,
                                                                              handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)

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
