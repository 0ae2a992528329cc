"""python -m bench.grants_migration — migration 0007_credit_grants on a copy of a 1M-row ledger.

Builds a credit database at 0006 (1,000 organisations, each a seed row and 999 render charges,
with one open hold: 1,000,000 credit-log rows), runs the checks `verify` had before grants,
applies 0007 (each balance becomes one paid grant, each open hold draws from it), and runs the
whole `verify` after, invariant 6 included. BENCH_DATABASE_URL selects PostgreSQL (default
SQLite). Prints the timings and both verdicts; exits 1 if either finds a problem.
"""
from __future__ import annotations

import datetime
import json
import os
import secrets
import sys
import time

from playhouse.migrations import Runner

from bench.environment import fresh_database_url

ORGANIZATIONS = 1000
ROWS_PER_ORGANIZATION = 1000
BATCH = 20_000


def build(database, models) -> None:
    now = datetime.datetime(2026, 11, 1)
    with database.atomic():
        models.Organization.insert_many(
            [{"name": f"org-{i:04d}", "created_at": now} for i in range(ORGANIZATIONS)]).execute()
        ids = [row[0] for row in models.Organization.select(models.Organization.id).tuples()]
        seed = ROWS_PER_ORGANIZATION * 2
        balance = seed - (ROWS_PER_ORGANIZATION - 1)
        models.CreditBalance.insert_many(
            [{"organization": organization_id, "balance": balance, "held": 1, "updated_at": now}
             for organization_id in ids]).execute()
        database.execute_sql(
            "INSERT INTO credit_hold (organization_id, amount, state, reference, expires_at, "
            "created_at, updated_at, release_reason) "
            "SELECT id, 1, 'held', 'open-hold', created_at, created_at, created_at, '' "
            "FROM organization")
    rows = []
    for organization_id in ids:
        after = seed
        rows.append((organization_id, seed, after, "seed", "initial credit", now))
        for _ in range(ROWS_PER_ORGANIZATION - 1):
            after -= 1
            rows.append((organization_id, -1, after, "render", "render charge", now))
    sql = ("INSERT INTO credit_log (organization_id, delta, balance_after, kind, reason, "
           "reference, actor, created_at) VALUES (?, ?, ?, ?, ?, '', 'bench', ?)"
           ).replace("?", database.param)
    for start in range(0, len(rows), BATCH):
        with database.atomic():
            database.cursor().executemany(sql, rows[start:start + BATCH])


def main() -> int:
    from carpet_common.db import bind_database
    from credit_service import audit, migrations, models, verify

    url = fresh_database_url(os.environ.get("BENCH_DATABASE_URL") or None, "grants_migration")
    database = bind_database(models.database, url)
    report = {"database": "postgresql" if url.startswith("postgres") else "sqlite"}
    with database.connection_context():
        runner = Runner(database, migrations.DIRECTORY)
        runner.up("0006_notifications")
        started = time.monotonic()
        build(database, models)
        (report["ledger_rows"],) = database.execute_sql(
            "SELECT count(*) FROM credit_log").fetchone()
        report["build_s"] = round(time.monotonic() - started, 1)
        audit.use_key(secrets.token_bytes(32))  # an empty audit chain, keyed as `migrate` does
        audit.seal_chain()
        before = [*verify.balance_mismatches(), *verify.held_mismatches(),
                  *verify.unaudited_adjustments(), *verify.daily_mismatches(),
                  *audit.broken_links()]
        started = time.monotonic()
        applied = runner.up()
        report["migration"] = applied
        report["migration_s"] = round(time.monotonic() - started, 2)
        after = verify.verify_credit()
    report["verify_before"] = before or "all invariants hold"
    report["verify_after"] = after or "all invariants hold"
    report["grants"] = None
    with database.connection_context():
        report["grants"] = models.CreditGrant.select().count()
        report["draws"] = models.CreditHoldDraw.select().count()
    if hasattr(database, "close_all"):
        database.close_all()
    print(json.dumps(report, indent=2))
    return 1 if before or after else 0


if __name__ == "__main__":
    sys.exit(main())
