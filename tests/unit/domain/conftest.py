"""The domain's plain functions on a SQLite database in memory, migrated by the real
migrations (constraints and triggers included): no servers, no files, one thread. (Behind a
server an in-memory database is wrong, every RPC thread would see its own empty one; here the
test's thread is the only one.)"""
import datetime

import pytest
from peewee import SqliteDatabase
from playhouse.migrations import Runner

from credit_service import audit
from credit_service import migrations as credit_migrations
from credit_service import models as credit_models
from render_service import migrations as render_migrations
from render_service import models as render_models
from tests.helpers import AUDIT_HMAC_KEY, FakeClock

T0 = datetime.datetime(2026, 11, 25, 12, 0, 0)


def _memory_database(proxy, directory):
    database = SqliteDatabase(":memory:", pragmas={"foreign_keys": 1})
    proxy.initialize(database)
    database.connect()
    Runner(database, directory).up()
    return database


@pytest.fixture
def credit_db():
    database = _memory_database(credit_models.database, credit_migrations.DIRECTORY)
    audit.use_key(AUDIT_HMAC_KEY.encode())
    audit.seal_chain()
    yield database
    database.close()


@pytest.fixture
def render_db():
    database = _memory_database(render_models.database, render_migrations.DIRECTORY)
    yield database
    database.close()


@pytest.fixture
def clock() -> FakeClock:
    """The tests' clock, starting at T0."""
    return FakeClock(T0)
