"""Assembles the render service: servicer, interceptors, credit client, workers."""
from __future__ import annotations

import grpc

from carpet_common.calls import CallContextInterceptor
from carpet_common.interceptors import (
    DatabaseConnectionInterceptor,
    ErrorMappingInterceptor,
    TextFieldInterceptor,
)
from carpet_common.metrics import MetricsInterceptor
from carpet_common.ratelimit import RateLimiter, RateLimitInterceptor
from carpet_common.server import GrpcServer, TlsFiles, create_server, service_channel
from carpet_common.settings import Settings
from protos.carpet.render.v1 import render_pb2_grpc
from render_service.credit_client import RETRY_SERVICE_CONFIG, CreditClient
from render_service.models import database, utcnow
from render_service.renderers import Renderer, renderer_from_settings
from render_service.servicer import RenderServicer
from render_service.storage import ImageStore
from render_service.worker import WorkerPool

SERVICE = "carpet.render.v1.RenderService"
SERVICE_NAMES = (SERVICE,)


def credit_channel(settings: Settings) -> grpc.Channel:
    """The one channel to the credit service for this process (mTLS when configured)."""
    return service_channel(settings.credit_addr, settings.tls_cert, settings.tls_key,
                           settings.tls_client_ca, service_config=RETRY_SERVICE_CONFIG)


def build_server(settings: Settings, address: str, *, credit: CreditClient | None = None,
                 clock=utcnow) -> tuple[GrpcServer, int]:
    credit = credit or CreditClient(credit_channel(settings))
    store = ImageStore(settings.render_storage_dir)
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        RateLimitInterceptor(RateLimiter(settings.rate_limit_render, settings.rate_limit_storage,
                                         namespace="render"),
                             methods={f"/{SERVICE}/SubmitRender"}),
        TextFieldInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    def register(server):
        render_pb2_grpc.add_RenderServiceServicer_to_server(
            RenderServicer(settings, credit, store, clock), server)

    tls = (TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
           if settings.tls_cert and settings.tls_key else None)
    return create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                         max_workers=settings.grpc_max_workers, tls=tls,
                         share_port=settings.server_processes > 1)


def build_workers(settings: Settings, *, credit: CreditClient | None = None,
                  renderer: Renderer | None = None, clock=utcnow) -> WorkerPool:
    return WorkerPool(settings, renderer or renderer_from_settings(settings),
                      credit or CreditClient(credit_channel(settings)),
                      ImageStore(settings.render_storage_dir), clock=clock)


def register_gauges() -> None:
    """Queue depth for /metrics, read from the database at each scrape."""
    from prometheus_client import Gauge

    from carpet_common.metrics import gauge_from_query
    from render_service.jobs import render_totals

    for status in ("queued", "processing"):
        gauge = Gauge(f"carpet_render_jobs_{status}", f"render jobs in status {status}")
        gauge_from_query(gauge, database, lambda status=status: render_totals()[status])
