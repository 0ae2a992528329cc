"""Shared fixtures: a fresh database per test on SQLite (a temporary file, never :memory:) and,
when TEST_DATABASE_URL is set, on PostgreSQL (one database per test module, dropped afterwards,
its tables emptied before each test). Tests take `engine` to run on both."""
from __future__ import annotations

import os
import random
import socket
import uuid
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest

from carpet_common.db import bind_database, is_postgres
from carpet_common.migrate import apply_migrations
from tests.helpers import FakeClock

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
PG_SKIP_REASON = "TEST_DATABASE_URL is not set: PostgreSQL case skipped"

ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


# CI sets this: there a skipped PostgreSQL case fails the run instead of passing quietly.
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"
_skipped_postgres: list[str] = []


def pytest_collection_modifyitems(config, items):
    if PG_URL:
        return
    skip = pytest.mark.skip(reason=PG_SKIP_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _skipped_postgres.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    """Say plainly which guarantees a run did not check (every PostgreSQL-only one: the bank
    test, replicas, SKIP LOCKED, advisory locks, and each both-engine test's PostgreSQL half)."""
    if not _skipped_postgres:
        return
    modules = sorted({nodeid.split("::")[0] for nodeid in _skipped_postgres})
    terminalreporter.section("not checked: PostgreSQL", sep="=", red=REQUIRE_POSTGRES,
                             yellow=not REQUIRE_POSTGRES)
    terminalreporter.line(f"{len(_skipped_postgres)} PostgreSQL case(s) were skipped "
                          f"(TEST_DATABASE_URL is not set), in: {', '.join(modules)}")
    terminalreporter.line("Production runs on PostgreSQL: set TEST_DATABASE_URL to check them.")


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_POSTGRES and _skipped_postgres and exitstatus == 0:
        session.exitstatus = 1  # REQUIRE_POSTGRES: a skipped PostgreSQL case fails the run


# Ports for the processes a test starts come from below Linux's ephemeral range (32768-60999):
# a port the kernel hands out for bind(0) is also one it hands out as the local end of any
# outgoing connection, so one picked that way could be taken before the server bound it (a
# gateway whose HTTP port went to a connection in between never answered HTTP in one CI run).
_PORTS = range(20000, 32000)
_handed_out: set[int] = set()
_port_picker = random.Random(os.getpid())


def free_port() -> int:
    """A loopback port nobody listens on, never the same twice in one test run."""
    while True:
        port = _port_picker.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def admin_execute(statement: str, url: str = "") -> None:
    """One statement on PostgreSQL (TEST_DATABASE_URL unless `url`), outside a transaction."""
    # CREATE/DROP DATABASE cannot run in a transaction: autocommit, no `with connection`.
    connection = psycopg2.connect(url or PG_URL)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


class PostgresDatabases:
    """Databases created on demand for one test module and dropped at its end."""

    def __init__(self, module_name: str):
        self._prefix = "t_" + module_name.rsplit(".", 1)[-1][:30] + "_" + uuid.uuid4().hex[:8]
        self._created: dict[str, str] = {}

    def url(self, name: str) -> str:
        if name not in self._created:
            database = f"{self._prefix}_{name}".lower()
            admin_execute(f'CREATE DATABASE "{database}"')
            parsed = urlparse(PG_URL)
            self._created[name] = urlunparse(parsed._replace(path="/" + database))
        return self._created[name]

    def drop_all(self) -> None:
        for url in self._created.values():
            database = urlparse(url).path.lstrip("/")
            admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self._created.clear()


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def pg_databases(request):
    databases = PostgresDatabases(request.module.__name__)
    yield databases
    databases.drop_all()


def empty_tables(database, models) -> None:
    """Remove every row (PostgreSQL module databases are shared by the module's tests)."""
    names = ", ".join(f'"{model._meta.table_name}"' for model in models)
    database.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


def fresh_database_url(engine, name, tmp_path, pg_databases) -> str:
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / (name + '.db')}"
    return pg_databases.url(name)


def migrated_url(service, engine, tmp_path, pg_databases) -> str:
    """A migrated, empty database of `service` ("credit" or "render"). On PostgreSQL the
    module's database is reused, its tables emptied (the audit chain head put back)."""
    import importlib

    models = importlib.import_module(f"{service}_service.models")
    migrations = importlib.import_module(f"{service}_service.migrations")
    url = fresh_database_url(engine, service, tmp_path, pg_databases)
    database = bind_database(models.database, url)
    apply_migrations(database, migrations.DIRECTORY)
    if is_postgres(database):
        with database.connection_context():
            empty_tables(database, models.ALL_MODELS)
            if service == "credit":
                from credit_service.audit import GENESIS_HASH

                models.AuditChainHead.create(id=1, last_hash=GENESIS_HASH)
    _close(database)
    return url


@pytest.fixture
def credit_db_url(engine, tmp_path, pg_databases) -> str:
    return migrated_url("credit", engine, tmp_path, pg_databases)


@pytest.fixture
def render_db_url(engine, tmp_path, pg_databases) -> str:
    return migrated_url("render", engine, tmp_path, pg_databases)


def _close(database) -> None:
    if is_postgres(database):
        database.close_all()
    elif not database.is_closed():
        database.close()


def _bound(models, url):
    """A service's models bound to `url`, with a connection open for the test's thread."""
    database = bind_database(models.database, url, max_connections=64)
    database.connect()
    yield database
    if not database.is_closed():
        database.close()
    _close(database)


@pytest.fixture
def credit_db(credit_db_url):
    from credit_service import models

    yield from _bound(models, credit_db_url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def credit_server(credit_db, clock):
    """A real credit-service gRPC server on port 0 with every interceptor, on a fresh database;
    yields its stubs."""
    from credit_service.app import build_server
    from tests.helpers import credit_stubs, service_settings

    # Webhook receivers in tests listen on loopback, as in local development.
    running, port = build_server(service_settings(grpc_max_workers=48, webhook_allow_private=True),
                                 "127.0.0.1:0", clock=clock)
    stubs = credit_stubs(port)
    yield stubs
    stubs.channel.close()
    stubs.anonymous.channel.close()
    running.stop(grace=1)


@pytest.fixture
def start_dispatcher(credit_server, clock):
    """Start webhook delivery workers on the test clock (retries wait for `clock.advance`);
    call with settings overrides. They are stopped afterwards."""
    from credit_service.app import webhook_dispatcher
    from tests.helpers import service_settings

    dispatchers = []

    def start(**overrides):
        values = dict(webhook_allow_private=True, webhook_retry_schedule_s=(5, 60, 3600),
                      webhook_timeout_s=2)
        values.update(overrides)
        dispatcher = webhook_dispatcher(service_settings(**values), clock)
        dispatcher.start()
        dispatchers.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in dispatchers:
        dispatcher.stop(timeout=10)


@pytest.fixture
def render_db(render_db_url):
    from render_service import models

    yield from _bound(models, render_db_url)


@pytest.fixture
def render_settings(credit_server, tmp_path):
    from tests.helpers import SERVICE_TOKEN, service_settings

    return service_settings(credit_addr=f"127.0.0.1:{credit_server.port}",
                            render_storage_dir=str(tmp_path / "renders"), render_workers=2,
                            rate_limit_render="off", grpc_max_workers=32,
                            service_token=SERVICE_TOKEN["render"])


@pytest.fixture
def render_server(render_db, render_settings, clock):
    """A real render-service server on port 0 (workers not started: tests start them with
    `start_workers`), next to the real credit server of `credit_server`."""
    from render_service.app import build_server
    from tests.helpers import render_stubs

    running, port = build_server(render_settings, "127.0.0.1:0")
    stubs = render_stubs(port)
    yield stubs
    stubs.channel.close()
    stubs.anonymous.channel.close()
    running.stop(grace=1)


@pytest.fixture
def start_workers(render_db, render_settings):
    """Call with optional settings overrides / a renderer; the pools are stopped afterwards."""
    import dataclasses

    from render_service.app import build_workers

    pools = []

    def start(renderer=None, **overrides):
        pool = build_workers(dataclasses.replace(render_settings, **overrides),
                             renderer=renderer)
        pool.start()
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop(timeout=10)


@pytest.fixture
def gateway(credit_server, render_server, render_settings):
    """The admin gateway's gRPC server on port 0 in front of the real credit and render
    servers; yields (AdminService stub, settings)."""
    import dataclasses

    import grpc

    from admin_gateway.app import build_server
    from protos.carpet.admin.v1 import admin_pb2_grpc
    from tests.helpers import SERVICE_TOKEN

    # No rate limit: a test walks every method with every caller (limits have tests of their
    # own, with gateways built for them).
    settings = dataclasses.replace(render_settings,
                                   render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=SERVICE_TOKEN["admin-gateway"],
                                   rate_limit_admin="off")
    running, port = build_server(settings, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield admin_pb2_grpc.AdminServiceStub(channel), port
    channel.close()
    running.stop(grace=1)


@pytest.fixture
def http_gateway(credit_server, render_server, render_settings):
    """The whole gateway (gRPC + HTTP on port 0) in front of the real services; yields its
    HTTP base URL."""
    import dataclasses

    from admin_gateway.app import start_gateway
    from tests.helpers import SERVICE_TOKEN

    # Ended sessions reach the gateway within a second (15 s in service), so a test sees a
    # deactivated person's next call refused without waiting long.
    settings = dataclasses.replace(render_settings,
                                   render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=SERVICE_TOKEN["admin-gateway"],
                                   session_check_interval_s=1)
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    yield f"http://127.0.0.1:{gateway.http.port}"
    gateway.stop()
