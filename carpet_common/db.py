"""Database set-up from a URL, the same way for every service.

SQLite (development): WAL so readers never block the writer, foreign keys on, a busy timeout so
concurrent writers wait instead of failing, and `BEGIN IMMEDIATE` for every transaction so a
writer takes the write lock up front (no deadlocking lock upgrades between threads).
PostgreSQL (production): a connection pool shared by the server's worker threads; its size is
tied to the gRPC thread pool by the caller.
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

from peewee import Database, DatabaseProxy, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase

from carpet_common import tracing

SQLITE_BUSY_TIMEOUT_S = 15
# A peewee database, or the proxy a service binds its models to (either runs statements).
AnyDatabase = Database | DatabaseProxy


class SerializedSqliteDatabase(SqliteDatabase):
    """SQLite has one writer at a time. Threads of one process queue for it on a Python lock,
    handed over the moment the writer commits, instead of in SQLite's busy handler, which
    polls with sleeps of up to 100 ms (seen as a 100 ms p99 under load). Other processes on the
    same file still wait through the busy timeout."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holder = threading.local()

    def begin(self, lock_type: str | None = None) -> None:
        self._writer.acquire()
        self._holder.holds = True
        try:
            super().begin(lock_type)
        except BaseException:
            self._release_writer()
            raise

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_writer()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_writer()

    def _release_writer(self) -> None:
        if getattr(self._holder, "holds", False):
            self._holder.holds = False
            self._writer.release()


class _TracedStatements:
    """Each statement a span of the traced call that runs it (carpet_common.tracing); mixed
    in only when tracing is on, so an untraced process runs peewee's own execute_sql."""

    system = ""

    def execute_sql(self, sql: str, params: Sequence[object] | None = None) -> Any:
        with tracing.statement(sql, self.system):
            return super().execute_sql(sql, params)  # type: ignore[misc]  # a mixin's next class


class _TracedSqliteDatabase(_TracedStatements, SerializedSqliteDatabase):
    system = "sqlite"


class _TracedPostgresqlDatabase(_TracedStatements, PooledPostgresqlDatabase):
    system = "postgresql"


def is_postgres(database: AnyDatabase) -> bool:
    """Whether it (or the database a proxy stands for) is PostgreSQL."""
    return isinstance(getattr(database, "obj", database), PooledPostgresqlDatabase)


def require_transaction(database: AnyDatabase) -> None:
    """For a function that must run inside its caller's transaction (its writes belong to the
    caller's change, or it relies on a row the caller locked): called outside one, it is a
    programming error, caught at once rather than as a half-written change."""
    if not database.in_transaction():
        raise RuntimeError("this must run inside its caller's transaction")


def tuples(query: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a select as tuples of its columns. (The stubs peewee ships type
    `query.tuples()` as the query itself, whose rows are models; this says what they are.)"""
    return iter(query.tuples())


def engine_name(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        return "sqlite"
    if scheme.startswith("postgres"):
        return "postgresql"
    raise ValueError(f"unsupported database URL scheme {scheme!r} (use sqlite:// or postgresql://)")


def open_database(url: str, *, max_connections: int = 20) -> Database:
    """A peewee database for `url` (not yet connected)."""
    engine = engine_name(url)
    kwargs = parse_db_url(url)
    if engine == "sqlite":
        path = kwargs.pop("database")
        if path == ":memory:":
            # Each gRPC worker thread would see its own empty database.
            raise ValueError("in-memory SQLite cannot back a server; give a file path")
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        sqlite_class = _TracedSqliteDatabase if tracing.enabled() else SerializedSqliteDatabase
        return sqlite_class(
            path,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": SQLITE_BUSY_TIMEOUT_S * 1000,
                "synchronous": "normal",  # durable across process crashes under WAL
            },
            timeout=SQLITE_BUSY_TIMEOUT_S,
            lock_type="IMMEDIATE",
        )
    name = kwargs.pop("database")
    kwargs.pop("max_connections", None)
    postgres_class = (_TracedPostgresqlDatabase if tracing.enabled()
                      else PooledPostgresqlDatabase)
    return postgres_class(
        name,
        max_connections=max_connections,
        stale_timeout=300,
        timeout=30,  # seconds a thread waits for a free pooled connection
        **kwargs,
    )


def bind_database(proxy: DatabaseProxy, url: str, *, max_connections: int = 20) -> Database:
    """Open the database at `url` and point a service's model proxy at it."""
    database = open_database(url, max_connections=max_connections)
    proxy.initialize(database)
    return database


# The statements each PostgreSQL connection has prepared (by name). Weak keys: a connection the
# pool closes takes its list with it, and a new connection prepares again.
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_PARAMETER = re.compile(r"\{(\w+)\}")


class Statement:
    """A hand-written SQL statement for a hot path, with `{name}` for each parameter (a name
    may appear more than once); its rows are read by column name.

    Peewee builds a query's SQL anew on every call (~0.1-0.3 ms of CPU each); on the hot paths
    (reserve and capture, a submission, a page of the render listing and its users) that costs
    more than the database work itself, so those few statements are written once and formatted
    once per dialect. Everything else uses the query builder.

    On PostgreSQL each connection prepares a statement once (`PREPARE`, on its first use there)
    and then only executes it: the server parses, analyses and plans it once instead of on every
    call, which on the submission path was a fifth of the database's CPU (docs/performance.md).
    A prepared statement is the connection's for its life and outlives a rolled-back
    transaction, so preparing inside any transaction is safe.
    """

    def __init__(self, text: str):
        self.text = " ".join(text.split())
        self.names = tuple(_PARAMETER.findall(self.text))  # in order; a repeat is a new one
        self._positional = _PARAMETER.sub("{p}", self.text)
        self._by_placeholder: dict[str, str] = {}
        self._row_types: dict[tuple[str, ...], type] = {}
        self.name = "carpet_" + hashlib.sha1(self.text.encode()).hexdigest()[:16]  # noqa: S324
        numbered = iter(range(1, len(self.names) + 1))
        self.prepare_text = (f"PREPARE {self.name} AS "
                             + re.sub(r"\{p\}", lambda _match: f"${next(numbered)}",
                                      self._positional))
        self.execute_text = (f"EXECUTE {self.name}({', '.join(['%s'] * len(self.names))})"
                             if self.names else f"EXECUTE {self.name}")

    def values(self, params: dict[str, object]) -> tuple[object, ...]:
        """The parameters in the statement's order; a missing or unknown name is an error."""
        unknown = params.keys() - set(self.names)
        missing = set(self.names) - params.keys()
        if unknown or missing:
            raise TypeError(f"statement parameters: missing {sorted(missing)}, "
                            f"unknown {sorted(unknown)}")
        return tuple(params[name] for name in self.names)

    def sql_for(self, database: AnyDatabase) -> str:
        if not is_postgres(database):
            return self.sql_with(database.param)
        prepared = _PREPARED.setdefault(database.connection(), set())
        if self.name not in prepared:
            # Through peewee, so a broken connection is its OperationalError / InterfaceError
            # like any other query's (carpet_common.interceptors drops the connection).
            database.execute_sql(self.prepare_text)
            prepared.add(self.name)
        return self.execute_text

    def prepare(self, cursor: Any) -> str:
        """Prepare it on a psycopg2 cursor's connection; the text that executes it there."""
        cursor.execute(self.prepare_text)
        return self.execute_text

    def sql_with(self, placeholder: str) -> str:
        """The text for a driver's placeholder style (`?` for sqlite3, `%s` for psycopg2),
        unprepared."""
        sql = self._by_placeholder.get(placeholder)
        if sql is None:
            sql = self._by_placeholder[placeholder] = self._positional.replace("{p}",
                                                                               placeholder)
        return sql

    def rows(self, database: AnyDatabase, **params: object) -> list[Any]:
        """Run it and return every row (read to the end, so SQLite can commit afterwards),
        each a named tuple of its columns."""
        cursor = database.execute_sql(self.sql_for(database), self.values(params))
        found: list[Any] = cursor.fetchall()
        if not found or cursor.description is None:
            return found
        columns = tuple(column[0] for column in cursor.description)
        row_type = self._row_types.get(columns)
        if row_type is None:
            row_type = self._row_types[columns] = collections.namedtuple(
                "Row", columns, rename=True)
        return [row_type(*values) for values in found]

    def row(self, database: AnyDatabase, **params: object) -> Any:
        """The first row, or None."""
        rows = self.rows(database, **params)
        return rows[0] if rows else None

    def count(self, database: AnyDatabase, **params: object) -> int:
        """Run a statement without RETURNING; the number of rows it changed."""
        changed: int = database.execute_sql(self.sql_for(database), self.values(params)).rowcount
        return changed
