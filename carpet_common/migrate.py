"""Run a service's numbered migrations with peewee's runner (`playhouse.migrations`)."""
from __future__ import annotations

import logging

from peewee import Database
from playhouse.migrations import Runner

from carpet_common.db import is_postgres

logger = logging.getLogger(__name__)

# Replicas starting together must not apply the same migration twice.
_PG_MIGRATION_LOCK_KEY = 0x6361727065 # "carpe"


def apply_migrations(database: Database, directory: str) -> list[str]:
    """Apply pending migrations in order; returns the names applied (empty: up to date)."""
    with database.connection_context():
        if is_postgres(database):
            database.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_MIGRATION_LOCK_KEY,))
        try:
            applied: list[str] = Runner(database, directory).up()
        finally:
            if is_postgres(database):
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_MIGRATION_LOCK_KEY,))
    for name in applied:
        logger.info("applied migration %s", name)
    return applied


def replace_sqlite_check(db: Database, table: str, old: str, new: str) -> None:
    """Replace `CHECK (old)` by `CHECK (new)` in a SQLite table's stored definition. Every
    existing row must already meet the new rule (SQLite does not check them again: a looser rule,
    or rows removed first). SQLite cannot alter a constraint;
    its documented way for this change (https://sqlite.org/lang_altertable.html, "making other
    kinds of table schema changes") edits the stored CREATE TABLE text with writable_schema,
    bumping schema_version in the same transaction. Rebuilding the table instead would drop
    its triggers."""
    (table_sql,) = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if f"CHECK ({old})" not in table_sql:
        raise RuntimeError(f"{table} has no CHECK ({old})")
    (version,) = db.execute_sql("PRAGMA schema_version").fetchone()
    db.execute_sql("PRAGMA writable_schema = ON")
    try:
        db.execute_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                       (table_sql.replace(f"CHECK ({old})", f"CHECK ({new})"), table))
        db.execute_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        db.execute_sql("PRAGMA writable_schema = OFF")
    (result,) = db.execute_sql("PRAGMA integrity_check").fetchone()
    if result != "ok":
        raise RuntimeError(f"{table} after the CHECK change: {result}")
