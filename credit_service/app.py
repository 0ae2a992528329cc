"""Assembles the credit service: servicers, interceptors, access policy and the hold sweeper."""
from __future__ import annotations

import datetime
import logging
import threading

from carpet_common.auth import Access, Authenticator
from carpet_common.calls import AuthInterceptor, CallContextInterceptor
from carpet_common.interceptors import (
    DatabaseConnectionInterceptor,
    ErrorMappingInterceptor,
    TextFieldInterceptor,
)
from carpet_common.metrics import MetricsInterceptor
from carpet_common.server import GrpcServer, TlsFiles, create_server
from carpet_common.settings import Settings
from credit_service import ledger
from credit_service.audited import record_denial
from credit_service.models import database, utcnow
from credit_service.servicer import AccountServicer, AuditServicer, Clock, CreditServicer
from protos.carpet.credit.v1 import account_pb2_grpc, audit_pb2_grpc, credit_pb2_grpc

logger = logging.getLogger(__name__)

ACCOUNT = "carpet.credit.v1.AccountService"
CREDIT = "carpet.credit.v1.CreditService"
AUDIT = "carpet.credit.v1.AuditService"
SERVICE_NAMES = (ACCOUNT, CREDIT, AUDIT)
SWEEP_INTERVAL_S = 5.0

# Who may call what (docs/architecture.md). Internal calls serve the render service and are
# authorised by the transport (loopback or mTLS); anything not listed is ADMIN-only.
POLICY = {
    f"/{ACCOUNT}/CreateOrganization": Access.ADMIN,
    f"/{ACCOUNT}/GetOrganization": Access.INTERNAL,
    f"/{ACCOUNT}/ListOrganizations": Access.ADMIN,
    f"/{ACCOUNT}/CreateUser": Access.ADMIN,
    f"/{ACCOUNT}/GetUser": Access.INTERNAL,
    f"/{ACCOUNT}/BatchGetUsers": Access.INTERNAL,
    f"/{ACCOUNT}/ListUsers": Access.STAFF_READ,
    f"/{ACCOUNT}/GetAccountTotals": Access.STAFF_READ,
    f"/{CREDIT}/GetBalance": Access.INTERNAL,
    f"/{CREDIT}/AdjustCredits": Access.ADMIN,
    f"/{CREDIT}/ReserveCredits": Access.INTERNAL,
    f"/{CREDIT}/CaptureHold": Access.INTERNAL,
    f"/{CREDIT}/ReleaseHold": Access.INTERNAL,
    f"/{CREDIT}/ListCreditLogs": Access.ADMIN,
    f"/{AUDIT}/ListAuditLogs": Access.ADMIN,
    # The gateway's refusals; authorised by the transport like the render service's calls.
    f"/{AUDIT}/RecordDenial": Access.INTERNAL,
}

def system_clock() -> datetime.datetime:
    return utcnow()


class HoldSweeper(threading.Thread):
    """Moves overdue holds to `expired` and lowers `held`, every few seconds. Safe with several
    replicas: each hold is expired by a conditional UPDATE, so only one sweeper wins it."""

    def __init__(self, clock: Clock, interval_s: float = SWEEP_INTERVAL_S):
        super().__init__(name="hold-sweeper", daemon=True)
        self._clock = clock
        self._interval = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                with database.connection_context():
                    expired = ledger.expire_holds(self._clock())
                if expired:
                    logger.info("expired holds worth %d credits", expired)
            except Exception:  # keep sweeping; the next round retries
                logger.exception("hold sweep failed")

    def stop(self) -> None:
        self._stop_event.set()


def build_server(settings: Settings, address: str, *, clock: Clock = system_clock
                 ) -> tuple[GrpcServer, int]:
    authenticator = Authenticator(settings)
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        AuthInterceptor(authenticator, POLICY, on_denied=record_denial),
        TextFieldInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    def register(server):
        account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(clock), server)
        credit_pb2_grpc.add_CreditServiceServicer_to_server(CreditServicer(clock), server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(), server)

    tls = (TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
           if settings.tls_cert and settings.tls_key else None)
    return create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                         max_workers=settings.grpc_max_workers, tls=tls,
                         share_port=settings.server_processes > 1)


def register_gauges() -> None:
    """Hold counts for /metrics, read from the database at each scrape."""
    from prometheus_client import Gauge

    from carpet_common.metrics import gauge_from_query
    from credit_service.models import CreditHold

    held = Gauge("carpet_credit_holds_held", "holds in state held (reserved, not yet charged)")
    gauge_from_query(held, database,
                     lambda: CreditHold.select().where(CreditHold.state == "held").count())
