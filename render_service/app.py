"""Assembles the render service. The RenderService methods themselves arrive with issue 4;
until then the generated base servicer answers UNIMPLEMENTED."""
from __future__ import annotations

from carpet_common.calls import CallContextInterceptor
from carpet_common.interceptors import DatabaseConnectionInterceptor, ErrorMappingInterceptor
from carpet_common.server import GrpcServer, TlsFiles, create_server
from carpet_common.settings import Settings
from protos.carpet.render.v1 import render_pb2_grpc
from render_service.models import database

SERVICE_NAMES = ("carpet.render.v1.RenderService",)


def build_server(settings: Settings, address: str) -> tuple[GrpcServer, int]:
    interceptors = [
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    def register(server):
        render_pb2_grpc.add_RenderServiceServicer_to_server(
            render_pb2_grpc.RenderServiceServicer(), server)

    tls = (TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
           if settings.tls_cert and settings.tls_key else None)
    return create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                         max_workers=settings.grpc_max_workers, tls=tls)
