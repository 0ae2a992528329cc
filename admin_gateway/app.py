"""Assembles the admin gateway's gRPC server. The AdminService methods and the HTTP surface
arrive with issue 5; until then the generated base servicer answers UNIMPLEMENTED."""
from __future__ import annotations

from carpet_common.calls import CallContextInterceptor
from carpet_common.interceptors import ErrorMappingInterceptor
from carpet_common.server import GrpcServer, create_server
from carpet_common.settings import Settings
from protos.carpet.admin.v1 import admin_pb2_grpc

SERVICE_NAMES = ("carpet.admin.v1.AdminService",)


def build_server(settings: Settings, address: str) -> tuple[GrpcServer, int]:
    def register(server):
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            admin_pb2_grpc.AdminServiceServicer(), server)

    return create_server(address, register, SERVICE_NAMES,
                         interceptors=[CallContextInterceptor(settings.trusted_proxies),
                                       ErrorMappingInterceptor()],
                         max_workers=settings.grpc_max_workers)
