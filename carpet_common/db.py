"""Database set-up from a URL, the same way for every service.

SQLite (development): WAL so readers never block the writer, foreign keys on, a busy timeout so
concurrent writers wait instead of failing, and `BEGIN IMMEDIATE` for every transaction so a
writer takes the write lock up front (no deadlocking lock upgrades between threads).
PostgreSQL (production): a connection pool shared by the server's worker threads; its size is
tied to the gRPC thread pool by the caller.
"""
from __future__ import annotations

import os
from urllib.parse import urlparse

from peewee import Database, DatabaseProxy, SqliteDatabase
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase

SQLITE_BUSY_TIMEOUT_S = 15


def is_postgres(database: Database) -> bool:
    return isinstance(database, PooledPostgresqlDatabase)


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
        return SqliteDatabase(
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
    return PooledPostgresqlDatabase(
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
