"""python -m bench — every scenario against real processes; writes bench/results/latest.json.

BENCH_DATABASE_URL selects PostgreSQL (default: SQLite files), BENCH_SECONDS the length of
each scenario, BENCH_CONCURRENCY the number of client processes.
"""
from __future__ import annotations

import json
import os
import sys
import time

from bench import renderer_latency
from bench.admin_scenarios import AdminBench
from bench.driver import Result, run_scenario
from bench.environment import (
    RESULTS_DIR,
    ServerProcess,
    admin_token,
    bench_database_url,
    channel_as,
    free_address,
    fresh_database_url,
    run_cli,
    security_env,
    service_tokens,
)
from bench.webhooks import event_trickle

HOT_BALANCE = 10**11
RENDER_BALANCE = 10**11
SPREAD_ORGANIZATIONS = 1000
SPREAD_BALANCE = 10**9


def load_organizations(url: str) -> dict:
    """Bulk-load the hot organisations and 1,000 others, each with its seed credit-log row and
    its grants: one each, five for `hot5` (CONTRACT §13)."""
    import datetime

    from carpet_common.db import bind_database
    from credit_service import models

    database = bind_database(models.database, url)
    with database.connection_context(), database.atomic():
        now = models.utcnow()
        names = ["hot", "hot5", "render"] + [f"spread-{i:04d}" for i in range(SPREAD_ORGANIZATIONS)]
        models.Organization.insert_many([{"name": n, "created_at": now} for n in names]).execute()
        ids = dict(models.Organization.select(models.Organization.name, models.Organization.id)
                   .tuples())
        special = {"hot": HOT_BALANCE, "hot5": HOT_BALANCE, "render": RENDER_BALANCE}
        balances = [(ids[n], special.get(n, SPREAD_BALANCE)) for n in names]
        models.CreditBalance.insert_many(
            [{"organization": i, "balance": b, "held": 0, "updated_at": now}
             for i, b in balances]).execute()
        grants = [{"organization": i, "kind": "paid", "amount": b, "remaining": b,
                   "effective_at": now, "created_at": now}
                  for i, b in balances if i != ids["hot5"]]
        # hot5: five grants, the one spent first (soonest expiry) large enough for the run.
        year = datetime.timedelta(days=365)
        grants += [{"organization": ids["hot5"], "kind": kind, "amount": amount,
                    "remaining": amount, "priority": 0, "effective_at": now,
                    "expires_at": expires, "created_at": now}
                   for kind, amount, expires in (
                       ("promotional", HOT_BALANCE - 4000, now + year),
                       ("promotional", 1000, now + 2 * year), ("paid", 1000, now + 3 * year),
                       ("paid", 1000, None), ("paid", 1000, None))]
        models.CreditGrant.insert_many(grants).execute()
        models.CreditLog.insert_many(
            [{"organization": i, "delta": b, "balance_after": b, "kind": "seed",
              "reason": "bench", "created_at": now} for i, b in balances]).execute()
    if hasattr(database, "close_all"):
        database.close_all()
    return {"hot_organization": ids["hot"], "hot5_organization": ids["hot5"],
            "render_organization": ids["render"],
            "spread_organizations": [ids[n] for n in names[3:]]}


def maintain(base_url: str | None) -> None:
    """VACUUM and ANALYZE the bench's PostgreSQL databases before each scenario, as autovacuum
    would in a deployment: without it (it is off on the bench machine) the hot rows' dead
    versions and the statistics of tables that grew from empty degrade every later scenario,
    and the comparisons within a run stop comparing like with like."""
    if not base_url:
        return
    import psycopg2

    for name in ("credit", "render"):
        try:
            connection = psycopg2.connect(bench_database_url(base_url, name))
        except psycopg2.OperationalError:
            continue  # not created yet
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")
        connection.close()


def create_carpet(config: dict, address: str) -> int:

    from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
    from tests.fake_image_api import tiny_png

    with channel_as(config, address, "web") as channel:
        return render_pb2_grpc.RenderServiceStub(channel).CreateCarpet(
            render_pb2.CreateCarpetRequest(sku="BENCH-1", name="Bench kilim", width_cm=120,
                                           length_cm=180, image=tiny_png(size=(64, 96))),
            timeout=10).id


# Scenario -> workload, run against two serving processes; compared with one process.
MULTI_PROCESS = {"credit.get_balance.processes2": "credit_workloads.get_balance",
                 "credit.reserve_capture_spread.processes2":
                     "credit_workloads.reserve_capture_spread"}
ADMIN_SIZES = {"1k": 1_000, "1m": 1_000_000}
ADMIN_WORKLOADS = {"admin.overview": "overview", "admin.list_renders": "list_renders",
                   "admin.list_renders.deep": "list_renders_deep",
                   "admin.usage.30d": "usage_30d", "admin.export.renders": "export_renders"}
# The 1k scenarios against the gateway's health check; the 1m ones against their 1k run.
ADMIN_CEILINGS = {"ceiling.grpc.admin": None,
                  **{f"{name}.1k": "ceiling.grpc.admin" for name in ADMIN_WORKLOADS},
                  **{f"{name}.1m": f"{name}.1k" for name in ADMIN_WORKLOADS}}


def run_admin_scenarios(scenario, base_url, credit_env, credit_address, config) -> dict:
    """The admin scenarios at each history size; returns the full export's measurement."""
    admin = AdminBench(base_url, credit_env, credit_address, config["spread_organizations"])
    try:
        for label, size in ADMIN_SIZES.items():
            started = time.monotonic()
            config.update(admin.grow(size))
            print(f"render history grown to {size} jobs in {time.monotonic() - started:.0f} s",
                  flush=True)
            if label == "1k":
                scenario("ceiling.grpc.admin", "admin_workloads.health_check")
            for name, workload in ADMIN_WORKLOADS.items():
                scenario(f"{name}.{label}", f"admin_workloads.{workload}")
        export = admin.export_everything(config["admin_token"])
        print(f"full CSV export: {export}", flush=True)
        return export
    finally:
        admin.stop()


def combined(first: Result, second: Result) -> Result:
    """Two runs of one scenario as one: operations and seconds added, the worse p99 kept, p50
    the mean of the two."""
    return Result(name=first.name, ops=first.ops + second.ops,
                  seconds=first.seconds + second.seconds,
                  p50_ms=(first.p50_ms + second.p50_ms) / 2,
                  p99_ms=max(first.p99_ms, second.p99_ms), errors=first.errors + second.errors,
                  first_error=first.first_error or second.first_error)


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
    token = admin_token()
    env = {"CREDIT_DATABASE_URL": credit_url, "LOG_FORMAT": "json",
           "WEBHOOK_ALLOW_PRIVATE": "1",  # the dead receiver of the webhook scenarios
           "ADMIN_TOKENS": f"bench:{token}", "GRPC_MAX_WORKERS": "16",
           "DB_MAX_CONNECTIONS": "16", **security_env()}
    migrated = run_cli("credit_service", "migrate", env)
    if migrated.returncode != 0:
        print(migrated.stderr, file=sys.stderr)
        return 1
    config = load_organizations(credit_url)
    config["database_url"] = credit_url
    config["admin_token"] = token
    config["service_tokens"] = service_tokens(env)

    address = free_address()
    server = ServerProcess("credit_service", {**env, "CREDIT_ADDR": address}, address)
    config["address"] = address
    results: dict[str, Result] = {}

    def scenario(name: str, workload: str) -> Result:
        maintain(base_url)
        result = run_scenario(name, f"bench.{workload}", config,
                              concurrency=concurrency, seconds=seconds)
        results[name] = result
        print(f"{name:32s} {result.ops_per_s:9.1f} ops/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms  errors {result.errors} {result.first_error}",
              flush=True)
        return result

    render_env = {**env, "RENDER_DATABASE_URL": fresh_database_url(base_url, "render"),
                  "CREDIT_ADDR": address, "RATE_LIMIT_RENDER": "off",
                  "RENDER_STORAGE_DIR": os.path.join(RESULTS_DIR, "renders")}
    migrated = run_cli("render_service", "migrate", render_env)
    if migrated.returncode != 0:
        server.stop()
        print(migrated.stderr, file=sys.stderr)
        return 1
    render_servers = []

    def start_render(workers: int) -> None:
        for running in render_servers:
            running.stop()
        render_address = free_address()
        render_servers[:] = [ServerProcess("render_service", {
            **render_env, "RENDER_ADDR": render_address, "RENDER_WORKERS": str(workers)},
            render_address)]
        config["render_address"] = render_address

    try:
        grpc_ceiling = scenario("ceiling.grpc", "credit_workloads.health_check")
        db_ceiling = scenario("ceiling.db", "credit_workloads.database_transactions")
        scenario("credit.get_balance", "credit_workloads.get_balance")
        scenario("credit.reserve_capture_hot", "credit_workloads.reserve_capture_hot")
        scenario("credit.reserve_capture_hot.grants5",
                 "credit_workloads.reserve_capture_hot_grants5")
        scenario("credit.reserve_capture_spread", "credit_workloads.reserve_capture_spread")
        # The same two workloads against SERVER_PROCESSES=2 (SO_REUSEPORT) on the database.
        processes_address = free_address()
        shared = ServerProcess("credit_service", {**env, "CREDIT_ADDR": processes_address,
                                                  "SERVER_PROCESSES": "2"}, processes_address)
        config["address"] = processes_address
        try:
            for name in MULTI_PROCESS:
                scenario(name, MULTI_PROCESS[name])
        finally:
            config["address"] = address
            shared.stop()
        # Submissions alone (no workers competing for the CPU), then whole renders.
        start_render(workers=0)
        config["carpet"] = create_carpet(config, config["render_address"])
        render_ceiling = scenario("ceiling.grpc.render", "render_workloads.health_check")
        scenario("render.submit", "render_workloads.submit")
        start_render(workers=2)
        scenario("render.end_to_end", "render_workloads.end_to_end")
        # The same two hot paths while events keep coming, without and with a webhook
        # receiver that never answers holding every delivery worker (docs/webhooks.md). No
        # workers: the jobs these submissions queue are never rendered.
        # Each way twice, in the order A B B A, and the two runs of each way added up, so that
        # a drift during the four runs weighs on both ways alike.
        start_render(workers=0)
        for suffix, dead in (("events", False), ("webhook_dead", True), ("webhook_dead", True),
                             ("events", False)):
            with event_trickle(config, dead_webhook=dead):
                for name, workload in (("render.submit", "render_workloads.submit"),
                                       ("credit.reserve_capture_hot",
                                        "credit_workloads.reserve_capture_hot")):
                    earlier = results.get(f"{name}.{suffix}")
                    result = scenario(f"{name}.{suffix}", workload)
                    if earlier is not None:
                        results[result.name] = combined(earlier, result)
        for running in render_servers:  # the admin scenarios bring their own
            running.stop()
        render_servers.clear()
        full_export = run_admin_scenarios(scenario, base_url, env, address, config)
    finally:
        for running in [*render_servers, server]:
            running.stop()
    verified = run_cli("credit_service", "verify", env)
    render_verified = run_cli("ops", "reconcile", render_env)

    lower = min(grpc_ceiling, db_ceiling, key=lambda r: r.ops_per_s)
    ceilings = {"ceiling.grpc": None, "ceiling.db": None, "credit.get_balance": grpc_ceiling,
                "credit.reserve_capture_hot": lower, "credit.reserve_capture_spread": lower,
                "credit.reserve_capture_hot.grants5": results["credit.reserve_capture_hot"],
                **{name: results[name.rsplit(".", 1)[0]] for name in MULTI_PROCESS},
                "ceiling.grpc.render": None, "render.submit": render_ceiling,
                "render.submit.events": results["render.submit"],
                "credit.reserve_capture_hot.events": results["credit.reserve_capture_hot"],
                "render.submit.webhook_dead": results["render.submit.events"],
                "credit.reserve_capture_hot.webhook_dead":
                    results["credit.reserve_capture_hot.events"],
                "render.end_to_end": render_ceiling,
                **{name: results[ceiling] if ceiling else None
                   for name, ceiling in ADMIN_CEILINGS.items()}}
    scenarios = [row(results[name], ceilings[name]) for name in ceilings]
    for entry in scenarios:
        if entry["name"].startswith("render.") and entry["name"].count(".") == 1:
            # The render target is on latency: p50 against the same server's health check.
            entry["p50_ratio"] = round(entry["p50_ms"] / render_ceiling.p50_ms, 3)
        if entry["name"].startswith("admin.") and entry["name"].endswith(".1m"):
            # The admin target: at a million jobs, p50 at most twice that at a thousand.
            entry["p50_ratio"] = round(entry["p50_ms"] / results[entry["ceiling"]].p50_ms, 3)
    report = {
        "database": engine,
        "seconds": seconds,
        "concurrency": concurrency,
        "verify": " / ".join(result.stdout.strip().splitlines()[-1] if result.stdout else ""
                             for result in (verified, render_verified)),
        "scenarios": scenarios,
        # The whole 1M-job history as CSV over HTTP: the gateway's memory stays flat.
        "export_renders_csv_full": full_export,
        # One image at a time through the local renderer against the flat one it replaced.
        "renderer": renderer_latency.measure(),
    }
    renderer_latency.before_after(os.path.join(RESULTS_DIR, "renderer-before-after.png"))
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(RESULTS_DIR, f"latest-{engine}.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    return 0 if verified.returncode == 0 and render_verified.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
