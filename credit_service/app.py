"""Assembles the credit service: servicers, interceptors, access policy and the hold sweeper."""
from __future__ import annotations

import datetime
import logging

from carpet_common.auth import ADMIN, ADMIN_STAFF, ANY_SERVICE, Authenticator, Rule, services
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
from carpet_common.sessions import RevokedSessions
from carpet_common.settings import Settings, SettingsError
from carpet_common.streams import StreamLimits
from credit_service import audit, grants, ledger, signin
from credit_service.audited import write_denial
from credit_service.models import database, utcnow
from credit_service.notifications import NotificationServicer
from credit_service.servicer import (
    AccountServicer,
    AuditServicer,
    AuthServicer,
    Clock,
    CreditServicer,
)
from credit_service.webhooks import signing
from protos.carpet.credit.v1 import (
    account_pb2_grpc,
    audit_pb2_grpc,
    auth_pb2_grpc,
    credit_pb2_grpc,
    notification_pb2_grpc,
)

logger = logging.getLogger(__name__)

ACCOUNT = "carpet.credit.v1.AccountService"
CREDIT = "carpet.credit.v1.CreditService"
AUDIT = "carpet.credit.v1.AuditService"
AUTH = "carpet.credit.v1.AuthService"
NOTIFICATION = "carpet.credit.v1.NotificationService"
SERVICE_NAMES = (ACCOUNT, CREDIT, AUDIT, AUTH, NOTIFICATION)
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
        f"/{ACCOUNT}/SetUserPassword": ADMIN,
        f"/{ACCOUNT}/DeactivateUser": ADMIN,
        f"/{ACCOUNT}/ActivateUser": ADMIN,
        # People sign in through the gateway, which passes their password or refresh token on.
        f"/{AUTH}/Login": services(GATEWAY),
        f"/{AUTH}/Refresh": services(GATEWAY),
        f"/{AUTH}/Logout": services(GATEWAY),
        f"/{AUTH}/ChangePassword": ADMIN_STAFF,
        # Every process that checks access tokens reads the ended sessions.
        f"/{AUTH}/ListRevokedSessions": services(ANY_SERVICE),
        f"/{CREDIT}/GetBalance": readers,
        f"/{CREDIT}/AdjustCredits": ADMIN,
        f"/{CREDIT}/ReserveCredits": services(RENDER),
        f"/{CREDIT}/CaptureHold": services(RENDER),
        f"/{CREDIT}/ReleaseHold": services(RENDER),
        f"/{CREDIT}/ListCreditLogs": ADMIN_STAFF,
        f"/{CREDIT}/GetCreditUsage": ADMIN_STAFF | services(GATEWAY),
        f"/{CREDIT}/GrantCredits": ADMIN,
        f"/{AUDIT}/ListAuditLogs": ADMIN,
        # Refusals seen by the other processes, written to the one log this service owns.
        f"/{AUDIT}/RecordDenial": services(GATEWAY, RENDER),
        # Changes made in the render service's database, from its audit outbox.
        f"/{AUDIT}/RecordAction": services(RENDER),
        f"/{AUDIT}/VerifyAuditChain": ADMIN,
        f"/{NOTIFICATION}/CreateWebhookEndpoint": ADMIN,
        f"/{NOTIFICATION}/ListWebhookEndpoints": ADMIN,
        f"/{NOTIFICATION}/DeleteWebhookEndpoint": ADMIN,
        f"/{NOTIFICATION}/ListWebhookDeliveries": ADMIN,
        f"/{NOTIFICATION}/RetryWebhookDelivery": ADMIN,
        f"/{NOTIFICATION}/SetLowBalanceAlert": ADMIN,
        f"/{NOTIFICATION}/SetSpendLimits": ADMIN,
        f"/{NOTIFICATION}/SuspendOrganization": ADMIN,
        f"/{NOTIFICATION}/ResumeOrganization": ADMIN,
        f"/{NOTIFICATION}/GetOrganizationControls": ADMIN_STAFF | services(GATEWAY),
        f"/{NOTIFICATION}/ListOrganizationControls": ADMIN | services(GATEWAY),
        # Finished render jobs from the render service's outbox.
        f"/{NOTIFICATION}/PublishRenderEvents": services(RENDER),
    }


def system_clock() -> datetime.datetime:
    return utcnow()


def hold_sweeper(clock: Clock, interval_s: float = SWEEP_INTERVAL_S) -> Periodic:
    """Moves overdue holds to `expired` and lowers `held`, and expires grants past their
    `expires_at` (credit_service.grants), every few seconds. Safe with several replicas: each
    hold and each grant is expired by a conditional UPDATE, so only one sweeper wins it."""

    def sweep() -> None:
        with database.connection_context():
            expired = ledger.expire_holds(clock())
            lapsed = grants.expire_grants(clock())
        if expired:
            logger.info("expired holds worth %d credits", expired)
        if lapsed:
            logger.info("expired grants: %d credits left them", lapsed)

    return Periodic("hold-sweeper", interval_s, sweep)


def webhook_dispatcher(settings: Settings, clock: Clock):
    """The delivery worker of this process (every replica runs one; leases keep them apart)."""
    from credit_service.webhooks.dispatcher import WebhookDispatcher

    return WebhookDispatcher(settings, clock)


def record_cleaner(settings: Settings, clock: Clock, interval_s: float = 60.0) -> Periodic:
    """Drops what is no longer needed: login-failure rows past their window, long-expired
    refresh tokens, and finished webhook deliveries older than WEBHOOK_DELIVERY_RETENTION
    (with their attempts and events). Safe with several replicas: a row is deleted once."""
    from credit_service.webhooks import outbox

    def clean() -> None:
        with database.connection_context():
            now = clock()
            signin.forget_old(now)
            if settings.webhook_delivery_retention_s is not None:
                outbox.forget_finished(
                    now - datetime.timedelta(seconds=settings.webhook_delivery_retention_s))

    return Periodic("record-cleaner", interval_s, clean)


def revoked_sessions(settings: Settings, clock: Clock) -> RevokedSessions:
    """The ended sessions, read from this service's own table."""

    def load() -> list[str]:
        with database.connection_context():
            return signin.revoked_session_ids(clock())

    return RevokedSessions(load, settings.session_check_interval_s)


def build_server(settings: Settings, address: str, *, clock: Clock = system_clock
                 ) -> tuple[GrpcServer, int]:
    """The credit service's server. Like the database behind the models, the audit key is
    bound for the process here (the service refuses to start without one), and the audit chain
    is keyed if it is not yet (see credit_service.audit.seal_chain)."""
    if not settings.audit_hmac_key:
        raise SettingsError("AUDIT_HMAC_KEY is not set: the credit service keeps a keyed audit "
                            "chain (make run generates one)")
    audit.use_key(settings.audit_hmac_key)
    signing.use_key(settings.audit_hmac_key)
    with database.connection_context():
        audit.seal_chain()
    denials = DenialLog(write_denial)
    ended_sessions = revoked_sessions(settings, clock)
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        AuthInterceptor(Authenticator(settings, ended_sessions), policy(settings),
                        on_denied=denials.record),
        TextFieldInterceptor(),
        DatabaseConnectionInterceptor(database),
    ]

    def register(server):
        account_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(clock), server)
        credit_pb2_grpc.add_CreditServiceServicer_to_server(CreditServicer(clock), server)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(), server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(settings, clock, identity_provider(settings)), server)
        notification_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(clock, allow_private=settings.webhook_allow_private), server)

    running, port = create_server(address, register, SERVICE_NAMES, interceptors=interceptors,
                                  max_workers=settings.grpc_max_workers,
                                  tls=tls_files(settings),
                                  share_port=settings.server_processes > 1,
                                  reflection=settings.grpc_reflection,
                                  stream_limits=StreamLimits.from_settings(settings),
                                  health_address=settings.health_addr)
    ended_sessions.start()
    running.background.append(ended_sessions)
    return running, port


def identity_provider(settings: Settings):
    """The outside identity provider whose tokens sign people in (JWT_JWKS_URL), if any."""
    if not settings.jwt_jwks_url:
        return None
    from credit_service.identity_provider import IdentityProvider

    return IdentityProvider(settings)


def register_gauges() -> None:
    """Hold counts for /metrics, read from the database at each scrape."""
    from prometheus_client import Gauge

    from carpet_common.metrics import gauge_from_query
    from credit_service.models import CreditHold

    held = Gauge("carpet_credit_holds_held", "holds in state held (reserved, not yet charged)")
    gauge_from_query(held, database,
                     lambda: CreditHold.select().where(CreditHold.state == "held").count())
