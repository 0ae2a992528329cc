"""python -m bench — every scenario against real processes; writes bench/results/latest.json.

BENCH_DATABASE_URL selects PostgreSQL (default: SQLite files), BENCH_SECONDS the length of
each scenario, BENCH_CONCURRENCY the number of client processes.
"""
from __future__ import annotations

import json
import os
import sys

from bench.driver import Result, run_scenario
from bench.environment import (
    RESULTS_DIR,
    ServerProcess,
    admin_token,
    free_address,
    fresh_database_url,
    run_cli,
)

HOT_BALANCE = 10**11
SPREAD_ORGANIZATIONS = 1000
SPREAD_BALANCE = 10**9


def load_organizations(url: str) -> dict:
    """Bulk-load the hot organisation and 1,000 others, each with its seed credit-log row."""
    from carpet_common.db import bind_database
    from credit_service import models

    database = bind_database(models.database, url)
    with database.connection_context(), database.atomic():
        now = models.utcnow()
        names = ["hot"] + [f"spread-{i:04d}" for i in range(SPREAD_ORGANIZATIONS)]
        models.Organization.insert_many([{"name": n, "created_at": now} for n in names]).execute()
        ids = dict(models.Organization.select(models.Organization.name, models.Organization.id)
                   .tuples())
        balances = [(ids[n], HOT_BALANCE if n == "hot" else SPREAD_BALANCE) for n in names]
        models.CreditBalance.insert_many(
            [{"organization": i, "balance": b, "held": 0, "updated_at": now}
             for i, b in balances]).execute()
        models.CreditLog.insert_many(
            [{"organization": i, "delta": b, "balance_after": b, "kind": "seed",
              "reason": "bench", "created_at": now} for i, b in balances]).execute()
    if hasattr(database, "close_all"):
        database.close_all()
    return {"hot_organization": ids["hot"],
            "spread_organizations": [ids[n] for n in names[1:]]}


def row(result: Result, ceiling: Result | None) -> dict:
    return {
        "name": result.name,
        "ops_per_s": round(result.ops_per_s, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "ceiling": ceiling.name if ceiling else None,
        "ratio": round(result.ops_per_s / ceiling.ops_per_s, 3) if ceiling else None,
        "errors": result.errors,
    }


def main() -> int:
    base_url = os.environ.get("BENCH_DATABASE_URL") or None
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "8"))
    engine = "postgresql" if base_url else "sqlite"

    credit_url = fresh_database_url(base_url, "credit")
    env = {"CREDIT_DATABASE_URL": credit_url, "LOG_FORMAT": "json",
           "ADMIN_TOKENS": f"bench:{admin_token()}", "GRPC_MAX_WORKERS": "16",
           "DB_MAX_CONNECTIONS": "16"}
    migrated = run_cli("credit_service", "migrate", env)
    if migrated.returncode != 0:
        print(migrated.stderr, file=sys.stderr)
        return 1
    config = load_organizations(credit_url)
    config["database_url"] = credit_url

    address = free_address()
    server = ServerProcess("credit_service", {**env, "CREDIT_ADDR": address}, address)
    config["address"] = address
    results: dict[str, Result] = {}

    def scenario(name: str, workload: str) -> Result:
        result = run_scenario(name, f"bench.credit_workloads.{workload}", config,
                              concurrency=concurrency, seconds=seconds)
        results[name] = result
        print(f"{name:32s} {result.ops_per_s:9.1f} ops/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms  errors {result.errors} {result.first_error}",
              flush=True)
        return result

    try:
        grpc_ceiling = scenario("ceiling.grpc", "health_check")
        db_ceiling = scenario("ceiling.db", "database_transactions")
        scenario("credit.get_balance", "get_balance")
        scenario("credit.reserve_capture_hot", "reserve_capture_hot")
        scenario("credit.reserve_capture_spread", "reserve_capture_spread")
    finally:
        server.stop()
    verified = run_cli("credit_service", "verify", env)

    lower = min(grpc_ceiling, db_ceiling, key=lambda r: r.ops_per_s)
    ceilings = {"ceiling.grpc": None, "ceiling.db": None, "credit.get_balance": grpc_ceiling,
                "credit.reserve_capture_hot": lower, "credit.reserve_capture_spread": lower}
    report = {
        "database": engine,
        "seconds": seconds,
        "concurrency": concurrency,
        "verify": verified.stdout.strip().splitlines()[-1] if verified.stdout else "",
        "scenarios": [row(results[name], ceilings[name]) for name in ceilings],
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(RESULTS_DIR, f"latest-{engine}.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    return 0 if verified.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
