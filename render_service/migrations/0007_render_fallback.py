"""render_fallback: a job the local renderer made in place of a down image API
(RENDER_FALLBACK=local) may succeed uncharged when RENDER_FALLBACK_CHARGE is off, so the rule
"a success names its credit-log row" gains exactly that exception: renderer `local-fallback`
with nothing charged.

PostgreSQL swaps the CHECK. SQLite cannot alter a constraint; its documented way to loosen a
CHECK without rewriting the table (https://sqlite.org/lang_altertable.html, "making other kinds
of table schema changes") is to edit the stored CREATE TABLE text with writable_schema, bumping
schema_version in the same transaction; rebuilding the table instead would drop the triggers
that keep render_count, render_storage and render_daily.
"""
from peewee import PostgresqlDatabase

NAME = "render_job_success_is_charged"
OLD = "status <> 'success' OR credit_log_id IS NOT NULL"
NEW = (OLD + " OR (renderer = 'local-fallback' AND credits_charged = 0)")


def _replace_check(db, old: str, new: str) -> None:
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(f"ALTER TABLE render_job DROP CONSTRAINT {NAME}")
        db.execute_sql(f"ALTER TABLE render_job ADD CONSTRAINT {NAME} CHECK ({new})")
        return
    (table_sql,) = db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'render_job'").fetchone()
    if f"CHECK ({old})" not in table_sql:
        raise RuntimeError(f"render_job's CHECK {NAME} is not the expected one")
    (version,) = db.execute_sql("PRAGMA schema_version").fetchone()
    db.execute_sql("PRAGMA writable_schema = ON")
    try:
        db.execute_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                       (table_sql.replace(f"CHECK ({old})", f"CHECK ({new})"), "render_job"))
        db.execute_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        db.execute_sql("PRAGMA writable_schema = OFF")
    (result,) = db.execute_sql("PRAGMA integrity_check").fetchone()
    if result != "ok":
        raise RuntimeError(f"render_job after the CHECK change: {result}")


def up(migrator, db):
    _replace_check(db, OLD, NEW)


def down(migrator, db):
    _replace_check(db, NEW, OLD)
