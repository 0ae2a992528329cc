"""Assembles the credit service: servicers, interceptors, access policy and the hold sweeper."""
from __future__ import annotations

import datetime
import logging

from carpet_common.auth import ADMIN, ADMIN_STAFF, Authenticator, Rule, services
from carpet_common.calls import AuthInterceptor, CallContextInterceptor
from carpet_common.denials import DenialLog
from carpet_common.interceptors import (
    DatabaseConnectionInterceptor,
    ErrorMappingInterceptor,
    TextFieldInterceptor,
)
from carpet_common.metrics import MetricsInterceptor
from carpet_common.periodic import Periodic
from carpet_common.server import GrpcServer, create_server, tls_files
from carpet_common.settings import Settings, SettingsError
from credit_service import audit, ledger
from credit_service.audited import write_denial
from credit_service.models import database, utcnow
from credit_service.servicer import AccountServicer, AuditServicer, Clock, CreditServicer
from protos.carpet.credit.v1 import account_pb2_grpc, audit_pb2_grpc, credit_pb2_grpc

logger = logging.getLogger(__name__)

ACCOUNT = "carpet.credit.v1.AccountService"
CREDIT = "carpet.credit.v1.CreditService"
AUDIT = "carpet.credit.v1.AuditService"
SERVICE_NAMES = (ACCOUNT, CREDIT, AUDIT)
SWEEP_INTERVAL_S = 5.0

# The services that act on their own behalf here (docs/security.md).
RENDER = "render"
GATEWAY = "admin-gateway"


def policy(settings: Settings) -> dict[str, Rule]:
    """Who may call each method of this server (method -> Rule); a method missing here is
    refused. STAFF persons are limited to their own organisation by the servicer."""
    backends = services(settings.render_clients)  # internal backends, e.g. `web`
    readers = ADMIN_STAFF | services(RENDER, GATEWAY) | backends
    return {
        f"/{ACCOUNT}/CreateOrganization": ADMIN,
        f"/{ACCOUNT}/GetOrganization": readers,
        f"/{ACCOUNT}/ListOrganizations": ADMIN,
        f"/{ACCOUNT}/CreateUser": ADMIN,
        f"/{ACCOUNT}/GetUser": readers,
        f"/{ACCOUNT}/BatchGetUsers": services(GATEWAY) | backends,
        f"/{ACCOUNT}/ListUsers": ADMIN_STAFF,
        f"/{ACCOUNT}/GetAccountTotals": services(GATEWAY),
        f"/{CREDIT}/GetBalance": readers,
        f"/{CREDIT}/AdjustCredits": ADMIN,
        f"/{CREDIT}/ReserveCredits": services(RENDER),
        f"/{CREDIT}/CaptureHold": services(RENDER),
        f"/{CREDIT}/ReleaseHold": services(RENDER),
        f"/{CREDIT}/ListCreditLogs": ADMIN,
        f"/{AUDIT}/ListAuditLogs": ADMIN,
        # Refusals seen by the other processes, written to the one log this service owns.
        f"/{AUDIT}/RecordDenial": services(GATEWAY, RENDER),
    }


def system_clock() -> datetime.datetime:
    return utcnow()


def hold_sweeper(clock: Clock, interval_s: float = SWEEP_INTERVAL_S) -> Periodic:
    """Moves overdue holds to `expired` and lowers `held`, every few seconds. Safe with several
    replicas: each hold is expired by a conditional UPDATE, so only one sweeper wins it."""

    def sweep() -> None:
        with database.connection_context():
            expired = ledger.expire_holds(clock())
        if expired:
            logger.info("expired holds worth %d credits", expired)

    return Periodic("hold-sweeper", interval_s, sweep)


def build_server(settings: Settings, address: str, *, clock: Clock = system_clock
                 ) -> tuple[GrpcServer, int]:
    """The credit service's server. Like the database behind the models, the audit key is
    bound for the process here (the service refuses to start without one), and the audit chain
    is keyed if it is not yet (see credit_service.audit.seal_chain)."""
    if not settings.audit_hmac_key:
        raise SettingsError("AUDIT_HMAC_KEY is not set: the credit service keeps a keyed audit "
                            "chain (make run generates one)")
    audit.use_key(settings.audit_hmac_key)
    with database.connection_context():
        audit.seal_chain()
    denials = DenialLog(write_denial)
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        AuthInterceptor(Authenticator(settings), policy(settings), on_denied=denials.record),
        TextFieldInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    def register(server):
        account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(clock), server)
        credit_pb2_grpc.add_CreditServiceServicer_to_server(CreditServicer(clock), server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(), server)

    return create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                         max_workers=settings.grpc_max_workers, tls=tls_files(settings),
                         share_port=settings.server_processes > 1,
                         reflection=settings.grpc_reflection)


def register_gauges() -> None:
    """Hold counts for /metrics, read from the database at each scrape."""
    from prometheus_client import Gauge

    from carpet_common.metrics import gauge_from_query
    from credit_service.models import CreditHold

    held = Gauge("carpet_credit_holds_held", "holds in state held (reserved, not yet charged)")
    gauge_from_query(held, database,
                     lambda: CreditHold.select().where(CreditHold.state == "held").count())
