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
            applied = Runner(database, directory).up()
        finally:
            if is_postgres(database):
                database.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_MIGRATION_LOCK_KEY,))
    for name in applied:
        logger.info("applied migration %s", name)
    return applied
