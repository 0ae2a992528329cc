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
from admin_gateway.servicer import AdminServicer
from carpet_common.auth import Access, Authenticator
from carpet_common.calls import AuthInterceptor, CallContextInterceptor, Denial
from carpet_common.convert import utcnow
from carpet_common.interceptors import ErrorMappingInterceptor, TextFieldInterceptor
from carpet_common.metrics import MetricsInterceptor
from carpet_common.ratelimit import RateLimiter, RateLimitInterceptor
from carpet_common.server import GrpcServer, TlsFiles, create_server
from carpet_common.settings import Settings
from protos.carpet.admin.v1 import admin_pb2_grpc
from protos.carpet.credit.v1 import audit_pb2

logger = logging.getLogger(__name__)

SERVICE = "carpet.admin.v1.AdminService"
SERVICE_NAMES = (SERVICE,)
POLICY = {
    f"/{SERVICE}/GetOverview": Access.STAFF_READ,
    f"/{SERVICE}/ListUsers": Access.STAFF_READ,
    f"/{SERVICE}/ListRenders": Access.STAFF_READ,
    f"/{SERVICE}/ListOrganizations": Access.ADMIN,
    f"/{SERVICE}/ListCreditLogs": Access.ADMIN,
    f"/{SERVICE}/ListAuditLogs": Access.ADMIN,
    f"/{SERVICE}/CreateUser": Access.ADMIN,
    f"/{SERVICE}/AdjustCredits": Access.ADMIN,
    f"/{SERVICE}/GetRenderImage": Access.STAFF_READ,
}


def denial_recorder(clients: ServiceClients):
    def record(denial: Denial) -> None:
        try:
            clients.audit.RecordDenial(audit_pb2.RecordDenialRequest(
                actor=denial.actor, role=denial.role, action=denial.method,
                outcome=denial.outcome, message=denial.message, peer=denial.client_ip,
                request_id=denial.request_id), timeout=5)
        except grpc.RpcError as error:
            # The caller is refused either way; the gap shows in the log.
            logger.error("could not audit a refused %s from %s: %s", denial.method,
                         denial.client_ip, error.code().name)

    return record


def build_server(settings: Settings, address: str, *, clients: ServiceClients | None = None,
                 clock=None, unix_socket: str | None = None) -> tuple[GrpcServer, int]:
    clients = clients or ServiceClients(
        settings.credit_addr, settings.render_addr,
        (settings.tls_cert, settings.tls_key, settings.tls_client_ca))
    limiter = RateLimiter(settings.rate_limit_admin, settings.rate_limit_storage,
                          namespace="admin")
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        RateLimitInterceptor(limiter, methods=set(POLICY)),
        AuthInterceptor(Authenticator(settings), POLICY, on_denied=denial_recorder(clients)),
        TextFieldInterceptor(),
    ]

    def register(server):
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(clients, clock or utcnow), server)

    tls = (TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
           if settings.tls_cert and settings.tls_key else None)
    return create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                         max_workers=settings.grpc_max_workers, tls=tls, unix_socket=unix_socket)


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
    running, port = build_server(settings, grpc_address, unix_socket=socket_path)
    http = AdminHttpServer(http_address, f"unix:{socket_path}", settings.trusted_proxies,
                           backends={"credit": settings.credit_addr,
                                     "render": settings.render_addr},
                           tls=(settings.tls_cert, settings.tls_key, settings.tls_client_ca))
    http.start()
    return Gateway(running, port, http, socket_dir)
