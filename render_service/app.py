"""Assembles the render service: servicer, interceptors, credit client, workers."""
from __future__ import annotations

import functools

import grpc

from carpet_common.auth import ADMIN_STAFF, Authenticator, Rule, services
from carpet_common.calls import AuthInterceptor, CallContextInterceptor, Denial
from carpet_common.denials import DenialLog
from carpet_common.interceptors import (
    DatabaseConnectionInterceptor,
    ErrorMappingInterceptor,
    TextFieldInterceptor,
)
from carpet_common.metrics import MetricsInterceptor
from carpet_common.pictures import DECODES
from carpet_common.ratelimit import RateLimiter, RateLimitInterceptor
from carpet_common.server import (
    ChannelSecurity,
    GrpcServer,
    create_server,
    service_channel,
    tls_files,
)
from carpet_common.sessions import revoked_sessions_via
from carpet_common.settings import Settings
from carpet_common.streams import StreamLimits
from protos.carpet.credit.v1 import audit_pb2, audit_pb2_grpc
from protos.carpet.render.v1 import render_pb2_grpc
from render_service.credit_client import RETRY_SERVICE_CONFIG, CreditClient
from render_service.models import database, utcnow
from render_service.renderers import Renderer, renderer_from_settings
from render_service.servicer import RenderServicer
from render_service.status_hub import StatusHub
from render_service.storage import ImageStore
from render_service.worker import WorkerPool

SERVICE = "carpet.render.v1.RenderService"
SERVICE_NAMES = (SERVICE,)
GATEWAY = "admin-gateway"
PUBLIC_METHODS = ("ListPublicCarpets", "GetPublicCarpetThumbnail", "SubmitPublicRender",
                  "GetPublicRender", "WatchPublicRender", "GetPublicRenderOutput",
                  "CreatePublicShare", "SubmitPublicLead", "RecordPublicEvent",
                  "GetSharedRender", "GetSharedRenderOutput", "GetSharedShopLogo")
# Share links, leads and the funnel (docs/shares-and-leads.md): STAFF their own organisation's.
SALES_METHODS = ("ListShares", "RevokeShare", "ListLeads", "UpdateLead", "ExportPersonalData",
                 "ErasePersonalData", "RecordConversion", "GetFunnel", "SetShopLogo",
                 "GetShopLogo", "DeleteShopLogo")


def policy(settings: Settings) -> dict[str, Rule]:
    """Who may call each method (method -> Rule); a method missing here is refused. STAFF
    persons see only their own organisation's jobs (another's is NOT_FOUND); the internal
    backends of RENDER_CLIENTS act for any organisation."""
    clients = services(settings.render_clients)
    everyone = ADMIN_STAFF | clients
    return {
        # STAFF change their own organisation's catalogue only (render_service.catalogue).
        f"/{SERVICE}/CreateCarpet": everyone,
        f"/{SERVICE}/UpdateCarpet": everyone,
        f"/{SERVICE}/ArchiveCarpet": everyone,
        f"/{SERVICE}/RestoreCarpet": everyone,
        f"/{SERVICE}/ImportCarpets": everyone,
        f"/{SERVICE}/GetCarpetImport": everyone,
        f"/{SERVICE}/GetCarpet": everyone | services(GATEWAY),
        f"/{SERVICE}/GetCarpetImage": everyone,
        f"/{SERVICE}/ListCarpets": everyone | services(GATEWAY),
        f"/{SERVICE}/SubmitRender": everyone,
        f"/{SERVICE}/GetRender": everyone,
        f"/{SERVICE}/ListRenders": everyone,
        f"/{SERVICE}/WatchRender": everyone,
        f"/{SERVICE}/CancelRender": everyone,
        f"/{SERVICE}/GetRenderOutput": everyone,
        f"/{SERVICE}/GetRenderTotals": everyone,
        f"/{SERVICE}/GetRenderUsage": everyone,
        f"/{SERVICE}/GetRenderInput": everyone,
        # Publishable keys: STAFF their own organisation's (render_service.publishable_keys).
        f"/{SERVICE}/CreatePublishableKey": everyone,
        f"/{SERVICE}/ListPublishableKeys": everyone,
        f"/{SERVICE}/UpdatePublishableKey": everyone,
        f"/{SERVICE}/RotatePublishableKey": everyone,
        f"/{SERVICE}/RevokePublishableKey": everyone,
        **{f"/{SERVICE}/{name}": everyone for name in SALES_METHODS},
        # The public render API: only the gateway relays it, naming the key, the page's origin
        # and the visitor; the key is checked on every call (docs/widget.md).
        **{f"/{SERVICE}/{name}": services(GATEWAY) for name in PUBLIC_METHODS},
    }


def credit_channel(settings: Settings) -> grpc.Channel:
    """The one channel to the credit service for this process: mTLS when configured, else
    this process's service token on every call."""
    return service_channel(settings.credit_addr, ChannelSecurity.from_settings(settings),
                           service_token=settings.service_token,
                           service_config=RETRY_SERVICE_CONFIG)


def denial_writer(channel: grpc.Channel):
    """Refusals are written to the audit log the credit service owns (RecordDenial)."""
    stub = audit_pb2_grpc.AuditServiceStub(channel)

    def write(denial: Denial, count: int, methods) -> None:
        message = denial.message if count == 1 else (
            f"{denial.message} (and {count - 1} more: {dict(methods.most_common(10))})")
        stub.RecordDenial(audit_pb2.RecordDenialRequest(
            actor=denial.actor, role=denial.role, action=denial.method, outcome=denial.outcome,
            message=message[:500], peer=denial.client_ip, request_id=denial.request_id,
            count=count), timeout=5)

    return write


def build_server(settings: Settings, address: str, *, channel: grpc.Channel | None = None,
                 clock=utcnow) -> tuple[GrpcServer, int]:
    """`channel`: the process's channel to the credit service (one is made when not given)."""
    channel = channel or credit_channel(settings)
    DECODES.configure(settings.decode_budget_mp * 1_000_000)
    credit = CreditClient(channel)
    store = ImageStore(settings.render_storage_dir)
    denials = DenialLog(denial_writer(channel))
    ended_sessions = revoked_sessions_via(channel, settings.session_check_interval_s)
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        # Before authentication, so guessing credentials is limited too.
        RateLimitInterceptor(RateLimiter(settings.rate_limit_render, settings.rate_limit_storage,
                                         namespace="render"),
                             methods={f"/{SERVICE}/SubmitRender", f"/{SERVICE}/CreateCarpet",
                                      f"/{SERVICE}/UpdateCarpet",
                                      f"/{SERVICE}/ImportCarpets"}),
        AuthInterceptor(Authenticator(settings, ended_sessions), policy(settings),
                        on_denied=denials.record),
        TextFieldInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    status_hub = StatusHub(database)

    def register(server):
        render_pb2_grpc.add_RenderServiceServicer_to_server(
            RenderServicer(settings, credit, store, clock, status_hub), server)

    running, port = create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                                  max_workers=settings.grpc_max_workers,
                                  tls=tls_files(settings),
                                  share_port=settings.server_processes > 1,
                                  reflection=settings.grpc_reflection,
                                  long_streams=(f"/{SERVICE}/WatchRender",
                                                f"/{SERVICE}/WatchPublicRender"),
                                  stream_limits=StreamLimits.from_settings(settings),
                                  health_address=settings.health_addr)
    ended_sessions.start()
    running.background += [ended_sessions, status_hub]
    return running, port


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

    def jobs_in(status: str) -> float:
        return render_totals()[status]

    for status in ("queued", "processing"):
        gauge = Gauge(f"carpet_render_jobs_{status}", f"render jobs in status {status}")
        gauge_from_query(gauge, database, functools.partial(jobs_in, status))
