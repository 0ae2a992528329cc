"""The simulated world: both services' databases, a simulated clock, seeded randomness, the
network between the render and the credit service, a fake image API and a webhook receiver.

Everything the domain code touches that is not the database is replaced here, so a run is a
function of its plan alone: the clock and randomness through carpet_common.sources, the credit
service's answers through `SimCreditClient` (the real servicers and domain functions, called
in-process), the image API through `SimImageApi`, stored pictures in memory.

Faults are injected where a real system meets them:
- a crash before any statement (or commit) of either database: `SimulatedCrash` is raised in
  place of the statement, the transaction in progress rolls back, and the process that ran it
  loses its memory (the render process its jobs in hand); a crashed credit process is, for its
  caller, an unavailable service;
- a reply lost after the credit service committed (the caller sees UNAVAILABLE and retries);
- the image API failing, refusing, or hanging until its timeout (the clock moves on);
- the webhook receiver failing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import os
import random
import shutil
import sqlite3
import tempfile
import uuid

from peewee import SqliteDatabase
from PIL import Image
from playhouse.pool import PooledPostgresqlDatabase

from carpet_common import errors, sources
from carpet_common.auth import Principal
from carpet_common.calls import CallInfo, call_var, principal_var
from carpet_common.db import SerializedSqliteDatabase
from carpet_common.migrate import apply_migrations
from carpet_common.settings import load_settings
from credit_service import accounts, audit, ledger, signin
from credit_service import migrations as credit_migrations
from credit_service import models as credit_models
from credit_service.notifications import NotificationServicer
from credit_service.servicer import (
    AccountServicer,
    AuditServicer,
    CreditServicer,
    credit_log_message,
    hold_message,
)
from credit_service.webhooks import outbox, signing
from credit_service.webhooks.targets import Outcome
from protos.carpet.credit.v1 import account_pb2, credit_pb2, notification_pb2
from render_service import demo
from render_service import migrations as render_migrations
from render_service import models as render_models
from render_service.credit_client import hold_reference
from render_service.renderers import (
    FallbackRenderer,
    RenderedImage,
    RenderError,
    RenderRequest,
    TransientRenderError,
)
from render_service.storage import ImageStore
from render_service.worker import WorkerPool

EPOCH = datetime.datetime(2030, 1, 30, 22, 0)  # near a month's end: limits roll over in runs
AUDIT_KEY = b"simulation audit key, not a secret"
ORGANIZATIONS = (("Halı Evi", 60), ("Kilim Co", 25), ("Empty Shop", 0))
USERS_PER_ORGANIZATION = 2
SETTINGS = dataclasses.replace(load_settings({}), render_hold_ttl_seconds=900,
                               render_lease_seconds=60, render_max_attempts=3,
                               render_fallback_charge=False)
REFRESH_TTL_S = 3600
IMAGE_API_TIMEOUT = datetime.timedelta(seconds=90)  # longer than a lease: a hang loses it


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (150, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


TINY_PNG = _tiny_png()


class SimulatedCrash(BaseException):
    """A process died before a statement. BaseException, so no `except Exception` in the
    domain code can mistake it for an error it handles: it unwinds to the simulator, rolling
    back every transaction on the way."""

    def __init__(self, process: str):
        super().__init__(f"the {process} process crashed")
        self.process = process


class Faults:
    """The current step's planned faults: a crash before the `crash_at`-th statement or commit
    (counted over both databases), a lost reply on the `lose_reply_at`-th credit call."""

    def __init__(self):
        self.crash_at = 0
        self.lose_reply_at = 0
        self.statements = 0
        self.credit_calls = 0

    def plan(self, crash_at: int = 0, lose_reply_at: int = 0) -> None:
        self.crash_at, self.lose_reply_at = crash_at, lose_reply_at
        self.statements = self.credit_calls = 0

    def before_statement(self, process: str) -> None:
        self.statements += 1
        if self.statements == self.crash_at:
            raise SimulatedCrash(process)


class _Faulty:
    """Counts statements and commits; raises the planned crash in place of one."""

    process = ""
    faults: Faults | None = None

    def execute_sql(self, sql, params=None):
        if self.faults is not None:
            self.faults.before_statement(self.process)
        return super().execute_sql(sql, params)

    def commit(self):
        if self.faults is not None:
            try:
                self.faults.before_statement(self.process)
            except SimulatedCrash:
                # The connection died with the process: the server discards the transaction
                # (peewee rolls back only on an Exception, and a crash is not one).
                self.rollback()
                raise
        return super().commit()


class SimSqlite(_Faulty, SerializedSqliteDatabase):
    pass


class SimPostgres(_Faulty, PooledPostgresqlDatabase):
    pass


# --- databases ---------------------------------------------------------------------------------

def _seed_credit(now: datetime.datetime) -> None:
    creating = AccountServicer(lambda: now)
    for index, (name, credits) in enumerate(ORGANIZATIONS, start=1):
        with _call("/carpet.credit.v1.AccountService/CreateOrganization", ADMIN):
            organization = creating.CreateOrganization(account_pb2.CreateOrganizationRequest(
                name=name, initial_credits=credits), None)
        for number in range(USERS_PER_ORGANIZATION):
            accounts.create_user(organization.id, f"User {index}.{number}",
                                 f"user{number}@org{index}.example", "STAFF", now=now)
    outbox.create_endpoint(0, "https://receiver.example/hooks",
                           list(credit_models.WEBHOOK_EVENT_TYPES), allow_private=False,
                           actor="seed", now=now)


def _migrate_and_seed(credit_db, render_db) -> None:
    apply_migrations(credit_db, credit_migrations.DIRECTORY)
    apply_migrations(render_db, render_migrations.DIRECTORY)
    audit.seal_chain()
    with sources.simulated(lambda: EPOCH, random.Random(0)):
        _seed_credit(EPOCH)
        demo.seed_demo_catalogue(EPOCH)


def _bind(credit_db, render_db) -> None:
    credit_models.database.initialize(credit_db)
    render_models.database.initialize(render_db)
    audit.use_key(AUDIT_KEY)
    signing.use_key(AUDIT_KEY)


class SqliteDatabases:
    """Both databases in memory, each run's a copy of one migrated and seeded template (the
    migrations run once per process; a copy takes a millisecond)."""

    name = "sqlite"
    _templates: tuple[sqlite3.Connection, sqlite3.Connection] | None = None

    def open(self, faults: Faults) -> tuple[SqliteDatabase, SqliteDatabase]:
        if SqliteDatabases._templates is None:
            SqliteDatabases._templates = self._make_templates()
        credit_db, render_db = self._new("credit", ":memory:"), self._new("render", ":memory:")
        SqliteDatabases._templates[0].backup(credit_db.connection())
        SqliteDatabases._templates[1].backup(render_db.connection())
        _bind(credit_db, render_db)
        credit_db.faults = render_db.faults = faults
        return credit_db, render_db

    def _make_templates(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """Migrated and seeded once, in files (migrations open and close their connection,
        which would empty a database in memory), then kept in memory."""
        directory = tempfile.mkdtemp(prefix="carpet-sim-")
        try:
            credit_db = self._new("credit", os.path.join(directory, "credit.db"))
            render_db = self._new("render", os.path.join(directory, "render.db"))
            _bind(credit_db, render_db)
            _migrate_and_seed(credit_db, render_db)
            credit_db.connect(reuse_if_open=True)
            render_db.connect(reuse_if_open=True)
            templates = (self._copy(credit_db.connection()), self._copy(render_db.connection()))
            credit_db.close()
            render_db.close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return templates

    @staticmethod
    def _new(process: str, path: str) -> SimSqlite:
        database = SimSqlite(path, pragmas={"foreign_keys": 1}, lock_type="IMMEDIATE")
        database.process = process
        database.connect()
        return database

    @staticmethod
    def _copy(connection: sqlite3.Connection) -> sqlite3.Connection:
        template = sqlite3.connect(":memory:", check_same_thread=False)
        connection.backup(template)
        return template

    def close(self, databases) -> None:
        for database in databases:
            database.close()


class PostgresDatabases:
    """Two fresh PostgreSQL databases per run (for long runs: `make sim DATABASE=…`)."""

    name = "postgresql"

    def __init__(self, url: str):
        from urllib.parse import urlparse

        self._url = urlparse(url)
        self._created: list[str] = []

    def _admin(self, statement: str) -> None:
        from tests.conftest import admin_execute

        admin_execute(statement, self._url.geturl())

    def open(self, faults: Faults):
        made = []
        for process in ("credit", "render"):
            name = f"sim_{process}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self._admin(f'CREATE DATABASE "{name}"')
            self._created.append(name)
            database = SimPostgres(name, host=self._url.hostname, port=self._url.port or 5432,
                                   user=self._url.username, max_connections=4)
            database.process, database.faults = process, None
            database.connect()
            made.append(database)
        _bind(*made)
        _migrate_and_seed(*made)
        for database in made:
            database.faults = faults
        return tuple(made)

    def close(self, databases) -> None:
        for database in databases:
            database.close()
            database.close_all()
        for name in self._created:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


# --- the network, the image API, the webhook receiver -----------------------------------------

@contextlib.contextmanager
def _call(method: str, principal: Principal):
    """A call's context as the credit service's interceptors would set it."""
    call = call_var.set(CallInfo(method=method, client_ip="10.0.0.2", request_id="sim",
                                 metadata={}))
    who = principal_var.set(principal)
    try:
        yield
    finally:
        principal_var.reset(who)
        call_var.reset(call)


RENDER_SERVICE = Principal(actor="render-service", role="SERVICE")
ADMIN = Principal(actor="sim-admin@example.com", role="ADMIN", user_id=None)
SHOP_BACKEND = Principal(actor="shop-backend", role="SERVICE")


class SimCreditClient:
    """The render service's credit client (render_service.credit_client.CreditClient's
    methods) over a simulated network: the credit service's real servicers and domain
    functions, in-process. The network knows the truth of every call, and tells the world
    (`on_committed`), however the reply fares: the reference model learns from it."""

    def __init__(self, world: World):
        self._world = world
        self._credit = CreditServicer(world.now)
        self._accounts = AccountServicer(world.now)
        self._notifications = NotificationServicer(world.now, allow_private=False)
        self._audit = AuditServicer()

    def _deliver(self, kind: str, method: str, principal: Principal, body, key: str = ""):
        world = self._world
        faults = world.faults
        faults.credit_calls += 1
        try:
            with _call(method, principal):
                answer = body()
        except SimulatedCrash as crash:
            if crash.process != "credit":
                raise
            world.note(f"credit process crashed during {kind}")
            raise errors.Unavailable("credit service unavailable, retry") from None
        world.on_committed(kind, answer, key)
        if faults.credit_calls == faults.lose_reply_at:
            world.note(f"reply to {kind} lost")
            raise errors.Unavailable("credit service unavailable, retry")
        return answer

    # The render service's calls -----------------------------------------------------------
    def reserve(self, organization_id, amount, job_id, ttl_seconds, user_id):
        return self.reserve_reference(organization_id, amount, hold_reference(job_id),
                                      ttl_seconds, user_id, RENDER_SERVICE)

    def capture(self, hold_id):
        def body():
            hold, log = ledger.capture_hold(hold_id, now=self._world.now())
            return credit_pb2.CaptureHoldResponse(hold=hold_message(hold),
                                                  log=credit_log_message(log))
        return self._deliver("capture", "CaptureHold", RENDER_SERVICE, body)

    def release(self, hold_id, reason):
        return self._deliver("release", "ReleaseHold", RENDER_SERVICE, lambda: hold_message(
            ledger.release_hold(hold_id, reason=reason, now=self._world.now())))

    def release_by_reference(self, organization_id, job_id, reason):
        return self._deliver("release", "ReleaseHold", RENDER_SERVICE, lambda: hold_message(
            ledger.release_hold_by_reference(organization_id, hold_reference(job_id),
                                             reason=reason, now=self._world.now())))

    def publish_render_events(self, events):
        request = notification_pb2.PublishRenderEventsRequest(events=events)
        return self._deliver(
            "publish", "/carpet.credit.v1.NotificationService/PublishRenderEvents",
            RENDER_SERVICE, lambda: self._notifications.PublishRenderEvents(request, None)
        ).recorded

    def record_action(self, request):
        return self._deliver("record_action", "/carpet.credit.v1.AuditService/RecordAction",
                             RENDER_SERVICE, lambda: self._audit.RecordAction(request, None))

    # A shop backend's and an admin's calls -------------------------------------------------
    def reserve_reference(self, organization_id, amount, reference, ttl_seconds, user_id,
                          principal):
        return self._deliver("reserve", "ReserveCredits", principal, lambda: hold_message(
            ledger.reserve_credits(organization_id, amount, reference, ttl_seconds,
                                   user_id=user_id or None, now=self._world.now())))

    def release_reference(self, organization_id, reference):
        return self._deliver("release", "ReleaseHold", SHOP_BACKEND, lambda: hold_message(
            ledger.release_hold_by_reference(organization_id, reference,
                                             reason="released by the shop",
                                             now=self._world.now())))

    def create_organization(self, request):
        def body():
            made = self._accounts.CreateOrganization(request, None)
            self._world.model.organization_made(made.id, request.initial_credits)
            return made
        return self._deliver("create_organization",
                             "/carpet.credit.v1.AccountService/CreateOrganization", ADMIN, body)

    def adjust(self, request):
        return self._deliver("adjust", "/carpet.credit.v1.CreditService/AdjustCredits", ADMIN,
                             lambda: self._credit.AdjustCredits(request, None),
                             request.idempotency_key)

    def grant(self, request):
        return self._deliver("grant", "/carpet.credit.v1.CreditService/GrantCredits", ADMIN,
                             lambda: self._credit.GrantCredits(request, None),
                             request.idempotency_key)

    def sign_in(self, email):
        return self._deliver("sign_in", "/carpet.auth.v1.AuthService/Login", RENDER_SERVICE,
                             lambda: signin.login_as(email, "10.0.0.9", self._world.now(),
                                                     refresh_ttl_s=REFRESH_TTL_S, provider="sim"))

    def refresh(self, token):
        return self._deliver("refresh", "/carpet.auth.v1.AuthService/Refresh", RENDER_SERVICE,
                             lambda: signin.refresh(token, "10.0.0.9", self._world.now(),
                                                    refresh_ttl_s=REFRESH_TTL_S))


class SimImageApi:
    """The outside image API: answers, refuses, fails (a 5xx after its retries), or hangs
    until the client's timeout; each by the step's draw."""

    name = "http"

    def __init__(self, world: World):
        self._world = world

    def render(self, request: RenderRequest) -> RenderedImage:
        draw = self._world.step_random.random()
        if draw < 0.08:
            raise RenderError("the image API refused the picture")
        if draw < 0.16:
            raise TransientRenderError("the image API answered 503")
        if draw < 0.20:
            self._world.advance(IMAGE_API_TIMEOUT)
            self._world.note("image API hung until the timeout")
            raise TransientRenderError("the image API timed out")
        return RenderedImage(TINY_PNG, "image/png")


class SimLocalRenderer:
    name = "local"

    def render(self, request: RenderRequest) -> RenderedImage:
        return RenderedImage(TINY_PNG, "image/png")


class MemoryStore(ImageStore):
    """Stored pictures in memory (a disk survives a crash; so does this dict)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}

    def save(self, job_id: int, data: bytes, content_type: str) -> str:
        name = f"{job_id}.png"
        self.files[name] = data
        return name

    def exists(self, name: str | None) -> bool:
        return bool(name) and name in self.files

    def remove(self, name: str | None) -> None:
        self.files.pop(name or "", None)


class WebhookReceiver:
    """A shop's endpoint: fails by the step's draw; keeps what it was sent."""

    def __init__(self, world: World):
        self._world = world
        self.received: dict[str, str] = {}  # event id -> body

    def send(self, claimed: outbox.Claimed) -> Outcome:
        if self._world.step_random.random() < 0.3:
            self._world.note("webhook receiver failed")
            return Outcome(status_code=500, latency_ms=5, error="receiver failed")
        seen = self.received.setdefault(claimed.event_id, claimed.body)
        if seen != claimed.body:
            self._world.violation(f"webhook event {claimed.event_id} delivered with two bodies")
        return Outcome(status_code=204, latency_ms=5)


# --- the world ---------------------------------------------------------------------------------

class World:
    """One run's state outside the databases: clock, randomness, faults, the render
    process's memory (jobs in hand), and the hooks the reference model listens on."""

    def __init__(self, seed: int, databases, model):
        self.seed = seed
        self.clock = EPOCH
        self.faults = Faults()
        self.step_random = random.Random(0)
        self.model = model
        self.notes: list[str] = []
        self._engine = databases
        self._sources = sources.simulated(self.now, random.Random(seed))
        self._sources.__enter__()
        self.credit_db, self.render_db = databases.open(self.faults)
        self.credit = SimCreditClient(self)
        self.store = MemoryStore()
        self.webhooks = WebhookReceiver(self)
        self.workers = WorkerPool(SETTINGS, FallbackRenderer(SimImageApi(self),
                                                             SimLocalRenderer()),
                                  self.credit, self.store, clock=self.now)
        self.in_hand: list[tuple[int, str]] = []  # (job id, worker) claimed, not yet worked on
        model.start(self)

    def close(self) -> None:
        self._engine.close((self.credit_db, self.render_db))
        self._sources.__exit__(None, None, None)

    def now(self) -> datetime.datetime:
        return self.clock

    def advance(self, by: datetime.timedelta) -> None:
        self.clock += by

    def note(self, text: str) -> None:
        self.notes.append(text)

    def on_committed(self, kind: str, answer, key: str = "") -> None:
        self.model.on_committed(kind, answer, key)

    def violation(self, text: str) -> None:
        self.model.violations.append(text)

    def crashed(self, process: str) -> None:
        """The process lost its memory; its background work restarts from the database."""
        if process == "render":
            self.in_hand.clear()
