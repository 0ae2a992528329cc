"""render_fallback: a job the local renderer made in place of a down image API
(RENDER_FALLBACK=local) may succeed uncharged when RENDER_FALLBACK_CHARGE is off, so the rule
"a success names its credit-log row" gains exactly that exception: renderer `local-fallback`
with nothing charged.

PostgreSQL swaps the CHECK; SQLite edits it in place (carpet_common.migrate.replace_sqlite_check),
keeping the triggers that keep render_count, render_storage and render_daily.
"""
from peewee import PostgresqlDatabase

from carpet_common.migrate import replace_sqlite_check

NAME = "render_job_success_is_charged"
OLD = "status <> 'success' OR credit_log_id IS NOT NULL"
NEW = (OLD + " OR (renderer = 'local-fallback' AND credits_charged = 0)")


def _replace_check(db, old: str, new: str) -> None:
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(f"ALTER TABLE render_job DROP CONSTRAINT {NAME}")
        db.execute_sql(f"ALTER TABLE render_job ADD CONSTRAINT {NAME} CHECK ({new})")
    else:
        replace_sqlite_check(db, "render_job", old, new)


def up(migrator, db):
    _replace_check(db, OLD, NEW)


def down(migrator, db):
    _replace_check(db, NEW, OLD)
