"""python -m bench.catalogue_migration — migrations 0013 (catalogues, sizes) and 0014 (renders
per carpet) on a copy of a 1M-job render history.

Builds a render database at 0012 (one carpet of the single global catalogue, 1,000,000 finished
jobs over 1,000 organisations), runs the checks `verify` had before catalogues, applies 0013 and
0014, and runs the whole `verify` after, the new carpet counts included. BENCH_DATABASE_URL
selects PostgreSQL (default SQLite). Prints the timings and both verdicts; exits 1 if either
finds a problem.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import time

from playhouse.migrations import Runner

from bench.environment import fresh_database_url
from bench.history import grow_history

JOBS = 1_000_000


def main() -> int:
    from carpet_common.db import bind_database
    from render_service import migrations, models, verify

    url = fresh_database_url(os.environ.get("BENCH_DATABASE_URL") or None, "catalogue_migration")
    database = bind_database(models.database, url)
    report: dict = {"database": "postgresql" if url.startswith("postgres") else "sqlite"}
    with database.connection_context():
        runner = Runner(database, migrations.DIRECTORY)
        runner.up("0012_render_job_ids")
        (carpet,) = database.execute_sql(
            "INSERT INTO carpet (sku, name, width_cm, length_cm, material, image, "
            "image_content_type, created_at) VALUES ('HISTORY-1', 'History kilim', 160, 230, "
            f"'wool', {database.param}, 'image/png', {database.param}) RETURNING id",
            (b"png", datetime.datetime(2020, 1, 1))).fetchone()
    started = time.monotonic()
    grow_history(database, JOBS, first_org=1, orgs=1000, first_user=1, users=1000,
                 carpet=carpet)
    report["build_s"] = round(time.monotonic() - started, 1)
    with database.connection_context():
        (report["jobs"],) = database.execute_sql("SELECT count(*) FROM render_job").fetchone()
        before = list(verify.counts_before_catalogues())
        started = time.monotonic()
        report["migration"] = runner.up()
        report["migration_s"] = round(time.monotonic() - started, 2)
        after = list(verify.count_problems())
        report["carpet_count_rows"] = models.RenderCarpetDaily.select().count()
        report["sizes"] = [(size.id, size.carpet_id, size.width_cm, size.length_cm)
                           for size in models.CarpetSize.select()]
    report["verify_before"] = before or "all invariants hold"
    report["verify_after"] = after or "all invariants hold"
    if hasattr(database, "close_all"):
        database.close_all()
    print(json.dumps(report, indent=2))
    return 1 if before or after else 0


if __name__ == "__main__":
    sys.exit(main())
