"""The domain's plain functions on both engines, migrated by the real migrations (constraints
and triggers included): no servers, no files, one thread.

- SQLite: a database in memory per test. (Behind a server an in-memory database is wrong,
  every RPC thread would see its own empty one; here the test's thread is the only one.)
- PostgreSQL (when TEST_DATABASE_URL is set): one database per service for the whole run,
  migrated once, its tables emptied before each test (ids start again at 1). The functions run
  as a servicer runs them, in transactions of their own: not inside one the test would roll
  back, which would hide what they do outside a transaction.
"""
import datetime

import pytest
from peewee import SqliteDatabase
from playhouse.migrations import Runner

from carpet_common.db import bind_database
from carpet_common.migrate import apply_migrations
from credit_service import audit
from credit_service import migrations as credit_migrations
from credit_service import models as credit_models
from render_service import migrations as render_migrations
from render_service import models as render_models
from tests.conftest import ENGINES, PostgresDatabases, empty_tables
from tests.helpers import AUDIT_HMAC_KEY, FakeClock

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0)


@pytest.fixture(params=ENGINES)
def domain_engine(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def domain_postgres():
    """The run's PostgreSQL databases of the domain tests: service -> its migrated database."""
    databases = PostgresDatabases("domain")
    migrated = {}

    def database_of(service, proxy, directory):
        if service not in migrated:
            database = bind_database(proxy, databases.url(service), max_connections=4)
            with database.connection_context():
                apply_migrations(database, directory)
            migrated[service] = database
        proxy.initialize(migrated[service])
        return migrated[service]

    yield database_of
    for database in migrated.values():
        database.close_all()
    databases.drop_all()


def _database(engine, request, service, models, directory):
    """The service's empty, migrated database for one test."""
    if engine == "sqlite":
        database = SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
        models.database.initialize(database)
        database.connect()
        Runner(database, directory).up()
        return database
    database = request.getfixturevalue("domain_postgres")(service, models.database, directory)
    database.connect()
    empty_tables(database, models.ALL_MODELS)
    return database


@pytest.fixture
def credit_db(domain_engine, request):
    database = _database(domain_engine, request, "credit", credit_models,
                         credit_migrations.DIRECTORY)
    if domain_engine != "sqlite":
        credit_models.AuditChainHead.create(id=1, last_hash=audit.GENESIS_HASH)
    audit.use_key(AUDIT_HMAC_KEY.encode())
    audit.seal_chain()
    yield database
    database.close()


@pytest.fixture
def render_db(domain_engine, request):
    database = _database(domain_engine, request, "render", render_models,
                         render_migrations.DIRECTORY)
    yield database
    database.close()


@pytest.fixture
def clock() -> FakeClock:
    """The tests' clock, starting at T0."""
    return FakeClock(T0)
