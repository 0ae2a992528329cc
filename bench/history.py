"""Bulk-loads render history for the admin scenarios: finished jobs spread over organisations
and users, older than anything the services write themselves. One INSERT … SELECT per chunk
(generate_series on PostgreSQL, a recursive CTE on SQLite); the render_count, render_daily and
render_carpet_daily triggers fire as for any job (or their work is done per chunk), so totals
stay exact."""
from __future__ import annotations

import datetime

CHUNK = 200_000
# Every tenth job failed, the others succeeded; created one second apart, ending a day ago.
_COLUMNS = ("organization_id, user_id, carpet_id, mode, status, error_text, cost, "
            "credits_charged, credit_log_id, request_hash, attempts, release_pending, "
            "created_at, updated_at, finished_at")
_VALUES = """
    {first_org} + i % {orgs}, {first_user} + i % {users}, {carpet}, 'preview',
    CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'success' END,
    CASE WHEN i % 10 = 0 THEN 'bench history: provider error' ELSE '' END,
    1, CASE WHEN i % 10 = 0 THEN 0 ELSE 1 END, CASE WHEN i % 10 = 0 THEN NULL ELSE i END,
    '', 1, {false}, {created}, {created}, {created}"""
POSTGRES = ("INSERT INTO render_job (" + _COLUMNS + ") SELECT" + _VALUES
            + " FROM generate_series(%s, %s) AS i")
SQLITE = ("WITH RECURSIVE seq(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM seq WHERE i < ?) "
          "INSERT INTO render_job (" + _COLUMNS + ") SELECT" + _VALUES + " FROM seq")
HISTORY_START = datetime.datetime(2020, 1, 1)


def grow_history(database, total: int, *, first_org: int, orgs: int, first_user: int,
                 users: int, carpet: int) -> None:
    """Add history rows until render_job holds `total` of them."""
    from carpet_common.db import is_postgres

    postgres = is_postgres(database)
    created = ("%s::timestamp + i * interval '1 second'" if postgres
               else "strftime('%Y-%m-%d %H:%M:%S', ?, '+' || i || ' seconds')")
    sql = (POSTGRES if postgres else SQLITE).format(
        first_org=first_org, orgs=orgs, first_user=first_user, users=users, carpet=carpet,
        false="false" if postgres else "0", created=created)
    if postgres:  # psycopg2 reads % as a placeholder: the modulo operator is written %%
        sql = sql.replace(" % ", " %% ")
    start_at = HISTORY_START.isoformat(sep=" ")
    with database.connection_context():
        present = database.execute_sql("SELECT count(*) FROM render_job").fetchone()[0]
        for first in range(present, total, CHUNK):
            last = min(first + CHUNK, total) - 1
            stamps = (start_at,) * 3
            parameters = (*stamps, first, last) if postgres else (first, last, *stamps)
            with database.atomic():
                if postgres:
                    _insert_counted_once(database, sql, parameters)
                else:
                    database.execute_sql(sql, parameters)
                    # Imported history raises no webhooks: its jobs ended before the import.
                    database.execute_sql("DELETE FROM render_event")
        if postgres:
            database.execute_sql("ANALYZE render_job")


BULK_OFF_TRIGGERS = ("render_job_count_insert", "render_job_daily_insert",
                     "render_job_carpet_daily_insert", "render_job_event_insert")


def _insert_counted_once(database, sql: str, parameters: tuple) -> None:
    """PostgreSQL: insert a chunk with the per-row count trigger off, then add the chunk's
    counts in one statement, all in the caller's transaction. Fired per row, the trigger would
    update each count row 200,000 times in one transaction, and PostgreSQL keeps every version
    of it until the commit, so each update walks a longer chain (minutes instead of seconds).
    The ALTER TABLE lock keeps every other writer out meanwhile."""
    before = database.execute_sql("SELECT coalesce(max(id), 0) FROM render_job").fetchone()[0]
    # Those the schema has (a database before migration 0014 has no carpet counts).
    present = {name for (name,) in database.execute_sql(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'render_job'::regclass").fetchall()}
    triggers = [trigger for trigger in BULK_OFF_TRIGGERS if trigger in present]
    # The event trigger is off without a compensation: imported history raises no webhooks.
    for trigger in triggers:
        database.execute_sql(f"ALTER TABLE render_job DISABLE TRIGGER {trigger}")
    database.execute_sql(sql, parameters)
    database.execute_sql(
        "INSERT INTO render_count (organization_id, status, jobs) "
        "SELECT organization_id, status, count(*) FROM render_job WHERE id > %s "
        "GROUP BY organization_id, status ON CONFLICT (organization_id, status) "
        "DO UPDATE SET jobs = render_count.jobs + excluded.jobs", (before,))
    database.execute_sql(
        "INSERT INTO render_daily (organization_id, day, status, jobs) "
        "SELECT organization_id, created_at::date, status, count(*) FROM render_job "
        "WHERE id > %s GROUP BY organization_id, created_at::date, status "
        "ON CONFLICT (organization_id, day, status) "
        "DO UPDATE SET jobs = render_daily.jobs + excluded.jobs", (before,))
    if "render_job_carpet_daily_insert" in triggers:
        _count_carpets(database, before)
    for trigger in triggers:
        database.execute_sql(f"ALTER TABLE render_job ENABLE TRIGGER {trigger}")


def _count_carpets(database, before: int) -> None:
    database.execute_sql(
        "INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs) "
        "SELECT organization_id, created_at::date, carpet_id, "
        "COALESCE(carpet_size_id, carpet_id), count(*) FROM render_job WHERE id > %s "
        "GROUP BY organization_id, created_at::date, carpet_id, "
        "COALESCE(carpet_size_id, carpet_id) "
        "ON CONFLICT (organization_id, day, carpet_id, carpet_size_id) "
        "DO UPDATE SET jobs = render_carpet_daily.jobs + excluded.jobs", (before,))
