"""python -m bench — every scenario against real processes; writes bench/results/latest.json.

BENCH_DATABASE_URL selects PostgreSQL (default: SQLite files), BENCH_SECONDS the length of
each scenario, BENCH_CONCURRENCY the number of client processes, BENCH_GROUPS which groups of
scenarios run (default all: credit,render,watch,scaling,webhooks,tracing,admin,catalogue).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from bench import catalogue_import, renderer_latency, watch_fanout
from bench.admin_scenarios import AdminBench
from bench.cpu import CpuMeter
from bench.driver import Result, run_open_loop, run_scenario
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


def load_organizations(url: str, audit_key: bytes) -> dict:
    """Bulk-load the hot organisations and 1,000 others, each with its seed credit-log row, its
    grants (one each, five for `hot5`: `docs/data-rules.md`) and its creation in the audit
    chain, as the seed writes it (`verify` checks every seed row against one)."""
    import datetime

    from carpet_common.db import bind_database
    from credit_service import audit, models

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
        audit.use_key(audit_key)
        for organization_id, balance in balances:
            audit.append_audit(audit.AuditEntry(
                actor="bench", role="SERVICE", action="seed.CreateOrganization", outcome="ok",
                organization_id=organization_id, target=f"organization:{organization_id}",
                details=json.dumps({"initial_credits": balance})), now)
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
# The two hot paths with tracing on, sampling one trace in ten, against the same with tracing
# off (the default): what an operator pays for turning it on (docs/performance.md, "Tracing").
TRACED_HOT_PATHS = (("render.submit", "render_workloads.submit"),
                    ("credit.reserve_capture_hot", "credit_workloads.reserve_capture_hot"))


ADMIN_SIZES = {"1k": 1_000, "1m": 1_000_000}
ADMIN_WORKLOADS = {"admin.overview": "overview", "admin.list_renders": "list_renders",
                   "admin.list_renders.deep": "list_renders_deep",
                   "admin.usage.30d": "usage_30d", "admin.export.renders": "export_renders"}
OVERVIEW_TRANSPORTS = {"admin.overview.grpc": "overview", "admin.overview.http": "overview_http"}
# The 1k scenarios against the gateway's health check; the 1m ones against their 1k run.
ADMIN_CEILINGS = {"ceiling.grpc.admin": None,
                  **{f"{name}.1k": "ceiling.grpc.admin" for name in ADMIN_WORKLOADS},
                  **{f"{name}.1m": f"{name}.1k" for name in ADMIN_WORKLOADS}}


def run_admin_scenarios(scenario, base_url, credit_env, credit_address, config,
                        server_pids: dict[str, int]) -> dict:
    """The admin scenarios at each history size; returns the full export's measurement.
    `server_pids` is given the admin stack's processes, for the CPU figures."""
    admin = AdminBench(base_url, credit_env, credit_address, config["spread_organizations"])
    config["admin_http_address"] = admin.http_address
    server_pids.update(admin.server_pids)
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
            if label == "1k":  # the same call over HTTP and over gRPC, same gateway process
                for name, workload in OVERVIEW_TRANSPORTS.items():
                    scenario(name, f"admin_workloads.{workload}")
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


# Scenario -> the ceilings it is compared with: the lowest of those measured in the run.
COMPARED_WITH = {
    "ceiling.grpc": (), "ceiling.db": (),
    "credit.get_balance": ("ceiling.grpc",),
    "credit.reserve_capture_hot": ("ceiling.grpc", "ceiling.db"),
    "credit.reserve_capture_spread": ("ceiling.grpc", "ceiling.db"),
    "credit.reserve_capture_hot.grants5": ("credit.reserve_capture_hot",),
    **{name: (name.rsplit(".", 1)[0],) for name in MULTI_PROCESS},
    "ceiling.grpc.render": (), "ceiling.chain": (), "ceiling.chain3": (),
    "ceiling.submit_sql": (),
    "render.submit": ("ceiling.chain", "ceiling.submit_sql"),
    "ceiling.chain.open50": (), "render.submit.open50": ("ceiling.chain.open50",),
    "ceiling.chain.open_half_submit": (),
    "render.submit.open_half_submit": ("ceiling.chain.open_half_submit",),
    "render.submit.processes2": ("render.submit",), "render.submit.scaled": ("render.submit",),
    "render.end_to_end": ("ceiling.grpc.render",),
    "render.submit.events": ("render.submit",),
    "credit.reserve_capture_hot.events": ("credit.reserve_capture_hot",),
    "render.submit.webhook_dead": ("render.submit.events",),
    "credit.reserve_capture_hot.webhook_dead": ("credit.reserve_capture_hot.events",),
    "admin.overview.grpc": (), "admin.overview.http": ("admin.overview.grpc",),
    **{f"{name}.tracing_off": (name,) for name, _ in TRACED_HOT_PATHS},
    **{f"{name}.traced10": (f"{name}.tracing_off",) for name, _ in TRACED_HOT_PATHS},
    **{name: ("ceiling.chain3",) if ceiling == "ceiling.grpc.admin" else
       ((ceiling,) if ceiling else ()) for name, ceiling in ADMIN_CEILINGS.items()},
}


def row(result: Result, ceiling: Result | None) -> dict:
    entry = {
        "name": result.name,
        "ops_per_s": round(result.ops_per_s, 1),
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "ceiling": ceiling.name if ceiling else None,
        "ratio": round(result.ops_per_s / ceiling.ops_per_s, 3) if ceiling else None,
        "errors": result.errors,
    }
    if result.offered_per_s is not None:  # open loop: the rate offered and the far tail
        entry.update(offered_per_s=round(result.offered_per_s, 1),
                     p999_ms=round(result.p999_ms, 3))
        if ceiling is not None:  # the open-loop target is on the tail, at the same rate
            entry["p99_ratio"] = round(result.p99_ms / ceiling.p99_ms, 3)
    if result.name.startswith("admin.") and result.name.endswith(".1m"):
        # The admin target: at a million jobs, p50 at most twice that at a thousand.
        entry["p50_ratio"] = round(result.p50_ms / ceiling.p50_ms, 3)
    return entry


def report_rows(results: dict[str, Result], cpu: dict[str, dict[str, float]]) -> list[dict]:
    rows = []
    for name, candidates in COMPARED_WITH.items():
        if name in results:
            measured = [results[c] for c in candidates if c in results]
            rows.append({**row(results[name], min(measured, key=lambda r: r.ops_per_s)
                                if measured else None),
                         "cpu_ms_per_op": cpu.get(name)})
    return rows


GROUPS = ("credit", "render", "watch", "scaling", "webhooks", "tracing", "admin",
          "catalogue")


class Bench:
    """One run: the credit service and its database, the scenarios run so far."""

    def __init__(self, base_url: str | None, seconds: float, concurrency: int):
        self.base_url, self.seconds, self.concurrency = base_url, seconds, concurrency
        self.results: dict[str, Result] = {}
        self.extra: dict[str, dict] = {}  # measurements that are not rates (render.watch.fanout)
        # CPU milliseconds per operation, by process group, of every scenario (bench.cpu).
        self.cpu: dict[str, dict[str, float]] = {}
        # The services serving the current scenarios (a list of pids for several processes).
        self.server_pids: dict[str, int | list[int]] = {}
        credit_url = fresh_database_url(base_url, "credit")
        token = admin_token()
        self.env = {"CREDIT_DATABASE_URL": credit_url, "LOG_FORMAT": "json",
                    "WEBHOOK_ALLOW_PRIVATE": "1",  # the dead receiver of the webhook scenarios
                    "ADMIN_TOKENS": f"bench:{token}", "GRPC_MAX_WORKERS": "16",
                    "DB_MAX_CONNECTIONS": "18", **security_env()}
        migrated = run_cli("credit_service", "migrate", self.env)
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        self.config = load_organizations(credit_url, self.env["AUDIT_HMAC_KEY"].encode())
        self.config.update(database_url=credit_url, admin_token=token,
                           service_tokens=service_tokens(self.env))
        self.render_env = {**self.env,
                           "RENDER_DATABASE_URL": fresh_database_url(base_url, "render"),
                           "RATE_LIMIT_RENDER": "off",
                           "RENDER_STORAGE_DIR": os.path.join(RESULTS_DIR, "renders")}
        self.config["render_database_url"] = self.render_env["RENDER_DATABASE_URL"]
        migrated = run_cli("render_service", "migrate", self.render_env)
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)

    def scenario(self, name: str, workload: str) -> Result:
        return self._measure(lambda: run_scenario(
            name, f"bench.{workload}", self.config, concurrency=self.concurrency,
            seconds=self.seconds))

    def scenario_again(self, name: str, workload: str) -> Result:
        """`scenario`, kept as one result with an earlier run of the same name if there is one
        (operations and seconds added, CPU per operation averaged)."""
        earlier, earlier_cpu = self.results.get(name), self.cpu.get(name)
        result = self.scenario(name, workload)
        if earlier is None:
            return result
        self.results[name] = combined(earlier, result)
        self.cpu[name] = {process: round((spent + self.cpu[name][process]) / 2, 3)
                          for process, spent in earlier_cpu.items()}
        return self.results[name]

    def open_loop(self, name: str, workload: str, rate: float) -> Result:
        return self._measure(lambda: run_open_loop(
            name, f"bench.{workload}", self.config, rate=rate, concurrency=self.concurrency,
            seconds=self.seconds))

    def _measure(self, run) -> Result:
        maintain(self.base_url)
        with CpuMeter(self.server_pids) as meter:
            result = run()
        self.cpu[result.name] = meter.per_operation_ms(result.ops)
        self.results[result.name] = result
        tail = f"  p99.9 {result.p999_ms:7.2f} ms" if result.p999_ms is not None else ""
        print(f"{result.name:40s} {result.ops_per_s:9.1f} ops/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms{tail}  errors {result.errors} "
              f"{result.first_error}", flush=True)
        return result

    @contextlib.contextmanager
    def serving(self, credit_processes: int = 1, render_processes: int = 1,
                render_workers: int = 0, shared_settings: dict[str, str] | None = None,
                **render_settings: str):
        """The credit service and a render service (none with `render_processes=0`) for the
        block, each with SERVER_PROCESSES as given; their addresses in the config.
        `shared_settings` go to both, `render_settings` to the render service alone."""
        credit_address, render_address = free_address(), free_address()
        shared_settings = shared_settings or {}
        running = [ServerProcess("credit_service", {
            **self.env, "CREDIT_ADDR": credit_address,
            "SERVER_PROCESSES": str(credit_processes), **shared_settings}, credit_address)]
        saved = {key: self.config.get(key) for key in ("address", "render_address")}
        saved_pids = dict(self.server_pids)
        try:
            if render_processes:
                running.append(ServerProcess("render_service", {
                    **self.render_env, "CREDIT_ADDR": credit_address,
                    "RENDER_ADDR": render_address, "RENDER_WORKERS": str(render_workers),
                    "SERVER_PROCESSES": str(render_processes), **shared_settings,
                    **render_settings},
                    render_address))
            self.config.update(address=credit_address, render_address=render_address)
            if render_processes and "carpet" not in self.config:  # the one the renders use
                self.config["carpet"] = create_carpet(self.config, render_address)
            self.server_pids.update({server.module: server.pid for server in running})
            yield running
        finally:
            self.config.update(saved)
            self.server_pids = saved_pids
            for server in reversed(running):
                server.stop()

    @contextlib.contextmanager
    def chains(self):
        """Chains of two and of three bench.chain servers (`chain_address`, `chain3_address`)."""
        started = []
        try:
            for key, length in (("chain_address", 2), ("chain3_address", 3)):
                next_address = ""
                for _ in range(length):  # the last server first
                    address = free_address()
                    started.append(ServerProcess("bench.chain", {
                        **self.env, "CHAIN_ADDR": address, "CHAIN_NEXT": next_address},
                        address))
                    next_address = address
                self.config[key] = next_address
            self.server_pids["bench.chain"] = [server.pid for server in started]
            yield
        finally:
            self.server_pids.pop("bench.chain", None)
            for server in started:
                server.stop()


def run_credit(bench: Bench) -> None:
    with bench.serving(render_processes=0):
        bench.scenario("ceiling.grpc", "credit_workloads.health_check")
        bench.scenario("ceiling.db", "credit_workloads.database_transactions")
        bench.scenario("credit.get_balance", "credit_workloads.get_balance")
        bench.scenario("credit.reserve_capture_hot", "credit_workloads.reserve_capture_hot")
        bench.scenario("credit.reserve_capture_hot.grants5",
                       "credit_workloads.reserve_capture_hot_grants5")
        bench.scenario("credit.reserve_capture_spread",
                       "credit_workloads.reserve_capture_spread")
    # The same two workloads against SERVER_PROCESSES=2 (SO_REUSEPORT) on the database.
    with bench.serving(credit_processes=2, render_processes=0):
        for name, workload in MULTI_PROCESS.items():
            bench.scenario(name, workload)


def run_render(bench: Bench) -> None:
    """Submissions against the ceilings of their shape: two gRPC hops with nothing behind them
    (`ceiling.chain`) and the submission's statements alone (`ceiling.submit_sql`, PostgreSQL);
    closed loop, then open loop at half of `ceiling.chain`'s throughput. No render workers:
    the submission path alone. Every server stays up for the whole group, so each scenario
    runs beside the same idle processes. The three compared closed-loop runs go twice, in the
    order A B C C B A, each pair added up, so a drift during the run weighs on all alike."""
    # Whole renders first: afterwards the workers would first work through every job the
    # submission scenarios queued (and never render).
    with bench.serving(render_workers=2):
        bench.scenario("render.end_to_end", "render_workloads.end_to_end")
    with bench.serving(), bench.chains():
        compared = [("ceiling.chain", "render_workloads.chain"),
                    ("render.submit", "render_workloads.submit")]
        if bench.base_url:
            compared.insert(1, ("ceiling.submit_sql", "render_workloads.submit_statements"))
        for name, workload in [*compared, *reversed(compared)]:
            bench.scenario_again(name, workload)
        chain = bench.results["ceiling.chain"]
        bench.scenario("ceiling.chain3", "render_workloads.chain3")
        bench.scenario("ceiling.grpc.render", "render_workloads.health_check")
        bench.open_loop("ceiling.chain.open50", "render_workloads.chain_open",
                        rate=chain.ops_per_s / 2)
        bench.open_loop("render.submit.open50", "render_workloads.submit_open",
                        rate=chain.ops_per_s / 2)
        # The same pair at half of what the submissions sustain: the tail when not overloaded.
        sustained = bench.results["render.submit"].ops_per_s / 2
        bench.open_loop("ceiling.chain.open_half_submit", "render_workloads.chain_open",
                        rate=sustained)
        bench.open_loop("render.submit.open_half_submit", "render_workloads.submit_open",
                        rate=sustained)


def run_watch(bench: Bench) -> None:
    """`render.watch.fanout` (bench.watch_fanout): 2,000 WatchRender streams on one render
    process while their jobs end, then 5,000 held open for the process's memory."""
    with bench.serving(STREAMS_PER_PRINCIPAL="5000") as running:
        render = running[1]
        bench.extra["render.watch.fanout"] = watch_fanout.measure(
            bench.config, render.address, render.rss_kb)
    print(f"render.watch.fanout {bench.extra['render.watch.fanout']}", flush=True)


def run_scaling(bench: Bench) -> None:
    """The submission path served by more processes on one PostgreSQL (SERVER_PROCESSES of each
    service), against one of each (render.submit): two and two, then three render-service and
    two credit-service processes."""
    if not bench.base_url:
        return
    for name, render_processes, credit_processes in (("render.submit.processes2", 2, 2),
                                                     ("render.submit.scaled", 3, 2)):
        with bench.serving(credit_processes=credit_processes,
                           render_processes=render_processes):
            bench.scenario(name, "render_workloads.submit")


def run_webhooks(bench: Bench) -> None:
    """The two hot paths while events keep coming, without and with a webhook receiver that
    never answers holding every delivery worker (docs/webhooks.md). No workers: the jobs these
    submissions queue are never rendered. Each way twice, in the order A B B A, and the two runs
    of each way added up, so that a drift during the four runs weighs on both ways alike."""
    with bench.serving():
        for suffix, dead in (("events", False), ("webhook_dead", True), ("webhook_dead", True),
                             ("events", False)):
            with event_trickle(bench.config, dead_webhook=dead):
                for name, workload in (("render.submit", "render_workloads.submit"),
                                       ("credit.reserve_capture_hot",
                                        "credit_workloads.reserve_capture_hot")):
                    bench.scenario_again(f"{name}.{suffix}", workload)


def run_tracing(bench: Bench) -> None:
    """Each hot path with tracing off and with OTLP export sampling 10 % to a collector on
    loopback (which counts what arrives without decoding it), each way twice in the order
    A B B A, the two runs of each way added up."""
    from tests.otlp_collector import OtlpCollector

    with OtlpCollector(keep=False) as collector:
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.origin,
                  "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                  "OTEL_TRACES_SAMPLER_ARG": "0.1"}
        for suffix, settings in (("tracing_off", {}), ("traced10", traced),
                                 ("traced10", traced), ("tracing_off", {})):
            with bench.serving(shared_settings=settings):
                for name, workload in TRACED_HOT_PATHS:
                    bench.scenario_again(f"{name}.{suffix}", workload)
        bench.extra["tracing"] = {"otlp_exports": collector.exports,
                                  "otlp_bytes": collector.received_bytes}


def run_admin(bench: Bench) -> dict:
    """The admin scenarios at 1k and 1M jobs (their own render database and gateway)."""
    with bench.serving(render_processes=0):
        return run_admin_scenarios(bench.scenario, bench.base_url, bench.env,
                                   bench.config["address"], bench.config, bench.server_pids)


def run_catalogue(bench: Bench) -> None:
    """A shop's catalogue imported over HTTP: 10,000 rows, 2,000 pictures
    (bench/catalogue_import.py), through a gateway in front of the render service."""
    # The shop's web server with the pictures is on loopback here.
    with bench.serving(WEBHOOK_ALLOW_PRIVATE="1"):
        http_address, grpc_address = free_address(), free_address()
        gateway = ServerProcess("admin_gateway", {
            **bench.env, "CREDIT_ADDR": bench.config["address"],
            "RENDER_ADDR": bench.config["render_address"], "ADMIN_GRPC_ADDR": grpc_address,
            "ADMIN_HTTP_ADDR": http_address, "RATE_LIMIT_ADMIN": "off"}, grpc_address)
        try:
            bench.extra["catalogue.import"] = catalogue_import.measure(
                http_address, bench.config["admin_token"], gateway.rss_kb)
        finally:
            gateway.stop()


def main() -> int:
    base_url = os.environ.get("BENCH_DATABASE_URL") or None
    engine = "postgresql" if base_url else "sqlite"
    groups = os.environ.get("BENCH_GROUPS", ",".join(GROUPS)).split(",")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        print(f"BENCH_GROUPS: unknown {sorted(unknown)}; known: {', '.join(GROUPS)}",
              file=sys.stderr)
        return 2
    bench = Bench(base_url, float(os.environ.get("BENCH_SECONDS", "10")),
                  int(os.environ.get("BENCH_CONCURRENCY", "8")))
    full_export = None
    for group in GROUPS:
        if group in groups:
            outcome = globals()[f"run_{group}"](bench)
            if group == "admin":
                full_export = outcome
    verified = run_cli("credit_service", "verify", bench.env)
    reconciled = run_cli("ops", "reconcile", bench.render_env)
    report = {
        "database": engine,
        "seconds": bench.seconds,
        "concurrency": bench.concurrency,
        "groups": groups,
        "verify": " / ".join(result.stdout.strip().splitlines()[-1] if result.stdout else ""
                             for result in (verified, reconciled)),
        "scenarios": report_rows(bench.results, bench.cpu),
        **bench.extra,
        # The whole 1M-job history as CSV over HTTP: the gateway's memory stays flat.
        "export_renders_csv_full": full_export,
    }
    if "render" in groups:
        # One image at a time through the local renderer against the flat one it replaced.
        report["renderer"] = renderer_latency.measure()
        # Carpets on a measured floor: one and three against today's single carpet.
        report["renderer"] += renderer_latency.measure_carpets()
        renderer_latency.before_after(os.path.join(RESULTS_DIR, "renderer-before-after.png"))
    os.makedirs(RESULTS_DIR, exist_ok=True)
    for name in ("latest.json", f"latest-{engine}.json"):
        with open(os.path.join(RESULTS_DIR, name), "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))
    return 0 if verified.returncode == 0 and reconciled.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
