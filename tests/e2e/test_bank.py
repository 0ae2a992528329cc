"""A bank test in the spirit of Jepsen's, on PostgreSQL: two credit-service and two
render-service processes share one database each, behind two admin-gateway processes; client
threads adjust (directly and through the gateways), reserve, capture, release, submit, cancel,
watch and read the overview across a few organisations while a fault thread kills processes
with SIGKILL (and restarts them) and terminates their database connections
(pg_terminate_backend). A sampler reads every balance throughout. After the faults stop and
the system settles:

- `verify` passes on both services (invariants 1-5);
- every acknowledged adjustment is in the ledger exactly once, every refused one is absent,
  one whose outcome the client never learned is there at most once, and nothing else is;
- every `success` job is charged exactly once at its mode's cost, no `failed` job is charged,
  and no job is left queued or processing;
- no hold is left `held` past its expiry;
- no sampled balance was ever negative (nor held above it), and each always equalled the sum
  of its grants (remaining and held), while promotional grants expired during the run;
- every acknowledged adjustment and every finished job produced exactly one webhook event id,
  delivered at least once (the receiver refuses every fifth request), signed per Standard
  Webhooks.

Bounded and seeded: BANK_SECONDS (default 60) of load, BANK_SEED (printed) for the choices.
"""
from __future__ import annotations

import datetime
import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
import psycopg2
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from standardwebhooks import Webhook

from carpet_common.server import service_channel
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import (
    account_pb2,
    account_pb2_grpc,
    credit_pb2,
    credit_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import FakeImageApi, tiny_png
from tests.helpers import SERVICE_TOKEN, identified_channel
from tests.processes import ServiceProcess, run_cli
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

ADMIN_TOKEN = "bank-test-admin-token-0123456789"
ADMIN = (("x-admin-token", ADMIN_TOKEN),)
COST = {"preview": 1, "standard": 2, "hd": 4}
ORGANISATIONS = 3
CLIENTS = 6
SECONDS = float(os.environ.get("BANK_SECONDS", "60"))
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HOLD_TTL_S = 4


class Indeterminate(Exception):
    """Retries ran out on UNAVAILABLE / DEADLINE_EXCEEDED: the call may or may not have
    taken effect."""


@dataclass
class History:
    """What the clients were told, kept under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    adjust_acked: dict[str, int] = field(default_factory=dict)  # idempotency key -> delta
    adjust_refused: set[str] = field(default_factory=set)
    adjust_unknown: set[str] = field(default_factory=set)
    captured: dict[str, int] = field(default_factory=dict)  # hold reference -> amount
    released: set[str] = field(default_factory=set)  # hold references
    jobs: set[int] = field(default_factory=set)
    codes: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    samples: int = 0
    bad_samples: list[tuple] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)

    def saw(self, code: grpc.StatusCode, where: str, details: str = "") -> None:
        with self.lock:
            self.codes[code.name] += 1
            if code in NEVER:
                self.unexpected.append(f"{where}: {code.name} {details}")


def call(history: History, where: str, method, request, *, timeout=10.0, attempts=8):
    """Call with retries on UNAVAILABLE/DEADLINE_EXCEEDED (the request carries its own
    idempotency key or reference, so a retry is safe). Raises grpc.RpcError for a definite
    refusal, Indeterminate when retries ran out."""
    for attempt in range(attempts):
        try:
            response = method(request, metadata=ADMIN, timeout=timeout)
            history.saw(grpc.StatusCode.OK, where)
            return response
        except grpc.RpcError as error:
            history.saw(error.code(), where, error.details())
            if error.code() not in RETRYABLE:
                raise
            time.sleep(min(0.1 * 2**attempt, 1.5))
    raise Indeterminate(where)


class Cluster:
    """Two replicas of each service on one PostgreSQL database per service, two gateways."""

    def __init__(self, tmp_path, credit_db_url, render_db_url, api_url):
        credit_ports = [free_port(), free_port()]
        self.credit_target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in credit_ports)
        self.env = {
            "CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
            "ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}", "RENDERER": "http", "RENDER_API_URL": api_url,
            "RENDER_API_ALLOW_HTTP": "1", "RENDER_API_KEY": "sk-bank-test-key-0123456789",
            "RENDER_STORAGE_DIR": str(tmp_path / "renders"), "RENDER_LEASE_SECONDS": "3",
            "RENDER_HOLD_TTL_SECONDS": "60", "RENDER_WORKERS": "2", "RATE_LIMIT_RENDER": "off",
            "GRPC_MAX_WORKERS": "16", "DB_MAX_CONNECTIONS": "24", "LOG_FORMAT": "json",
            "WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_TIMEOUT": "2s",
            "WEBHOOK_RETRY_SCHEDULE": ",".join(["1s"] * 10),
        }
        self.credits = [ServiceProcess("credit_service", f"127.0.0.1:{port}",
                                       {**self.env, "CREDIT_ADDR": f"127.0.0.1:{port}"},
                                       str(tmp_path / f"credit-{i}.log"))
                        for i, port in enumerate(credit_ports)]
        render_ports = [free_port(), free_port()]
        self.render_target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in render_ports)
        self.renders = [ServiceProcess("render_service", f"127.0.0.1:{port}",
                                       {**self.env, "RENDER_ADDR": f"127.0.0.1:{port}",
                                        "CREDIT_ADDR": self.credit_target},
                                       str(tmp_path / f"render-{i}.log"))
                        for i, port in enumerate(render_ports)]
        gateway_ports = [free_port(), free_port()]
        self.gateway_target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in gateway_ports)
        self.gateways = [ServiceProcess("admin_gateway", f"127.0.0.1:{port}", {
            **self.env, "ADMIN_GRPC_ADDR": f"127.0.0.1:{port}",
            "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}", "CREDIT_ADDR": self.credit_target,
            "RENDER_ADDR": self.render_target, "RATE_LIMIT_ADMIN": "off"},
            str(tmp_path / f"gateway-{i}.log")) for i, port in enumerate(gateway_ports)]
        self.processes = [*self.credits, *self.renders, *self.gateways]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def ensure_running(self) -> None:
        for process in self.processes:
            if process.process is None or process.process.poll() is not None:
                process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def query(url: str, sql: str, *args) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


# One statement, one snapshot: each balance beside the sum of its grants (invariant 6).
SAMPLE = """
    SELECT b.organization_id, b.balance, b.held,
           (SELECT COALESCE(SUM(g.remaining), 0) FROM credit_grant g
            WHERE g.organization_id = b.organization_id),
           (SELECT COALESCE(SUM(g.held), 0) FROM credit_grant g
            WHERE g.organization_id = b.organization_id)
    FROM credit_balance b"""


def sampler(history: History, credit_db_url: str, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        try:
            rows = query(credit_db_url, SAMPLE)
        except psycopg2.Error:
            continue  # our own connection may be terminated by the fault thread
        with history.lock:
            history.samples += 1
            history.bad_samples += [row for row in rows
                                    if row[1] < 0 or row[2] < 0 or row[2] > row[1]
                                    or (row[1], row[2]) != (row[3], row[4])]


def faults(history: History, cluster: Cluster, databases: list[str], rng: random.Random,
           stop: threading.Event) -> None:
    """One fault at a time: a SIGKILL and restart, or every connection of one database cut."""
    while not stop.wait(rng.uniform(1.5, 4.0)):
        if rng.random() < 0.6:
            process = rng.choice(cluster.processes)
            process.kill()
            history.faults[f"kill {process.module}"] += 1
            time.sleep(rng.uniform(0.3, 1.5))
            process.start()
        else:
            database = rng.choice(databases)
            # Run from a connection to the credit database, which the query itself spares.
            terminated = query(cluster.env["CREDIT_DATABASE_URL"],
                               "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", database)
            history.faults["pg_terminate_backend"] += 1
            history.faults["connections terminated"] += terminated[0][0]


def client(history: History, cluster_targets: tuple[str, str, str], organisations: list[int],
           carpet_id: int, rng: random.Random, stop: threading.Event) -> None:
    # The credit service as the render service calls it (holds), the render service as an
    # internal backend (`web`) does, the gateway as an admin (its calls carry the token).
    channels = [service_channel(target, service_token=SERVICE_TOKEN[name] if name else None)
                for target, name in zip(cluster_targets, ("render", "web", None), strict=True)]
    credits = credit_pb2_grpc.CreditServiceStub(channels[0])
    renders = render_pb2_grpc.RenderServiceStub(channels[1])
    admin = admin_pb2_grpc.AdminServiceStub(channels[2])
    my_jobs: list[int] = []
    try:
        while not stop.is_set():
            organisation = rng.choice(organisations)
            action = rng.choices(["adjust", "reserve", "submit", "cancel", "watch", "overview"],
                                 weights=[3, 3, 4, 1, 1, 1])[0]
            try:
                if action == "adjust":  # half of them through a gateway
                    adjust(history, rng.choice([credits, admin]), organisation, rng)
                elif action == "overview":
                    overview = call(history, "GetOverview", admin.GetOverview,
                                    admin_pb2.GetOverviewRequest())
                    if overview.total_remaining_credit < 0 or overview.total_held < 0:
                        with history.lock:
                            history.unexpected.append(f"negative overview: {overview}")
                elif action == "reserve":
                    reserve(history, credits, organisation, rng)
                elif action == "submit":
                    job = call(history, "SubmitRender", renders.SubmitRender,
                               render_pb2.SubmitRenderRequest(
                                   organization_id=organisation, carpet_id=carpet_id,
                                   mode=rng.choice(list(COST)),
                                   idempotency_key=f"bank-{uuid.uuid4()}"), timeout=15)
                    my_jobs.append(job.id)
                    with history.lock:
                        history.jobs.add(job.id)
                elif action == "cancel" and my_jobs:
                    call(history, "CancelRender", renders.CancelRender,
                         render_pb2.CancelRenderRequest(id=rng.choice(my_jobs)))
                elif action == "watch" and my_jobs:
                    for _ in renders.WatchRender(render_pb2.WatchRenderRequest(
                            id=rng.choice(my_jobs)), metadata=ADMIN, timeout=2):
                        pass
            except Indeterminate:
                pass
            except grpc.RpcError as error:  # definite refusals are part of the game
                if error.code() in NEVER:
                    history.saw(error.code(), action, error.details())
    finally:
        for channel in channels:
            channel.close()


def adjust(history: History, stub, organisation: int, rng: random.Random) -> None:
    """An adjustment through the credit service or the gateway (same request, same key); a
    third of the additions are promotional grants that expire within seconds, during the run."""
    key = f"bank-{uuid.uuid4()}"
    delta = rng.choice([-1, 1]) * rng.randint(1, 25)
    if delta > 0 and rng.random() < 1 / 3:
        expires = Timestamp()
        expires.FromDatetime(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                             + datetime.timedelta(seconds=rng.uniform(2, 20)))
        method, request = stub.GrantCredits, credit_pb2.GrantCreditsRequest(
            organization_id=organisation, amount=delta, kind=credit_pb2.GRANT_KIND_PROMOTIONAL,
            expires_at=expires, priority=rng.choice([-1, 0, 1]), reason="bank test",
            idempotency_key=key)
    else:
        method, request = stub.AdjustCredits, credit_pb2.AdjustCreditsRequest(
            organization_id=organisation, delta=delta, reason="bank test", idempotency_key=key)
    try:
        call(history, "AdjustCredits", method, request)
    except Indeterminate:
        with history.lock:
            history.adjust_unknown.add(key)
        raise
    except grpc.RpcError:
        with history.lock:
            history.adjust_refused.add(key)
        raise
    with history.lock:
        history.adjust_acked[key] = delta


def reserve(history: History, credits, organisation: int, rng: random.Random) -> None:
    reference, amount = f"bank-{uuid.uuid4()}", rng.randint(1, 10)
    hold = call(history, "ReserveCredits", credits.ReserveCredits,
                credit_pb2.ReserveCreditsRequest(
                    organization_id=organisation, amount=amount, reference=reference,
                    ttl_seconds=HOLD_TTL_S))
    ending = rng.choice(["capture", "release", "abandon"])
    if ending == "capture":
        call(history, "CaptureHold", credits.CaptureHold,
             credit_pb2.CaptureHoldRequest(hold_id=hold.id))
        with history.lock:
            history.captured[reference] = amount
    elif ending == "release":
        call(history, "ReleaseHold", credits.ReleaseHold,
             credit_pb2.ReleaseHoldRequest(hold_id=hold.id, reason="bank test"))
        with history.lock:
            history.released.add(reference)
    # "abandon": the hold must expire by itself


def settle(cluster: Cluster, timeout: float = 120.0) -> None:
    """Wait until no job is queued or processing and no hold is held at all: once the load has
    stopped, every hold ends captured, released or expired by the sweeper (an abandoned one
    after HOLD_TTL_S, one whose submission died before its job was written after
    RENDER_HOLD_TTL_SECONDS). Waiting only for none to be unsettled raced them: a hold still
    within its time when this returned expired during the checks, up to one sweep (5 s) before
    the sweeper took it."""
    deadline = time.monotonic() + timeout
    render_url, credit_url = cluster.env["RENDER_DATABASE_URL"], cluster.env["CREDIT_DATABASE_URL"]
    while True:
        open_jobs = query(render_url, "SELECT count(*) FROM render_job "
                                      "WHERE status IN ('queued', 'processing')")[0][0]
        unsettled = query(credit_url, "SELECT count(*) FROM credit_hold WHERE state = 'held'")[0][0]
        unsettled += query(credit_url, "SELECT count(*) FROM credit_grant "
                                     "WHERE expired_at IS NULL "
                                     "AND expires_at < (now() AT TIME ZONE 'utc')")[0][0]
        if open_jobs == 0 and unsettled == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled: {open_jobs} open jobs, {unsettled} holds "
                                 "still held or grants past their expiry")
        time.sleep(1.0)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_bank(tmp_path, credit_db_url, render_db_url):
    seed = int(os.environ.get("BANK_SEED", random.randrange(2**32)))
    print(f"BANK_SEED={seed}")
    rng = random.Random(seed)
    history = History()
    databases = [url.rsplit("/", 1)[1] for url in (credit_db_url, render_db_url)]
    # Webhooks for every adjustment and every finished job go to a receiver that refuses
    # every fifth request, so retries happen while processes are killed.
    with FakeImageApi(["ok"]) as api, WebhookReceiver(fail_every=5) as receiver:
        cluster = Cluster(tmp_path, credit_db_url, render_db_url, api.url)
        cluster.start()
        try:
            organisations, carpet_id = prepare(cluster)
            secret = add_webhook(cluster, receiver.url)
            run_load(history, cluster, organisations, carpet_id, databases, rng, credit_db_url)
            cluster.ensure_running()
            settle(cluster)
            check(history, cluster)
            check_webhooks(history, cluster, receiver, secret)
        finally:
            cluster.stop()


def prepare(cluster: Cluster) -> tuple[list[int], int]:
    with grpc.insecure_channel(cluster.credits[0].address) as channel:
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        organisations = [accounts.CreateOrganization(account_pb2.CreateOrganizationRequest(
            name=f"Bank {i}", initial_credits=1000), metadata=ADMIN, timeout=10).id
            for i in range(ORGANISATIONS)]
    with identified_channel(cluster.renders[0].address, "web") as channel:
        carpet = render_pb2_grpc.RenderServiceStub(channel).CreateCarpet(
            render_pb2.CreateCarpetRequest(sku="B-1", name="Bank kilim", width_cm=100,
                                           length_cm=150, image=tiny_png()), timeout=10)
    return organisations, carpet.id


def add_webhook(cluster: Cluster, url: str) -> str:
    with grpc.insecure_channel(cluster.credits[0].address) as channel:
        created = notification_pb2_grpc.NotificationServiceStub(channel).CreateWebhookEndpoint(
            notification_pb2.CreateWebhookEndpointRequest(
                url=url, events=["credit.adjusted", "render.succeeded", "render.failed"]),
            metadata=ADMIN, timeout=10)
    return created.secret


def check_webhooks(history: History, cluster: Cluster, receiver: WebhookReceiver,
                   secret: str, timeout: float = 120.0) -> None:
    """Every acknowledged adjustment and every finished job has exactly one event id, and each
    was delivered (a 2xx) at least once, signed as Standard Webhooks says."""
    credit_url, render_url = cluster.env["CREDIT_DATABASE_URL"], cluster.env["RENDER_DATABASE_URL"]
    deadline = time.monotonic() + timeout
    while True:  # the outboxes drain: relayed render events, no delivery left pending
        waiting = (query(render_url, "SELECT count(*) FROM render_event")[0][0]
                   + query(credit_url, "SELECT count(*) FROM webhook_delivery "
                                       "WHERE state = 'pending'")[0][0])
        if waiting == 0:
            break
        assert time.monotonic() < deadline, f"{waiting} events not yet delivered"
        time.sleep(1.0)
    events: dict[str, dict] = {}
    delivered: set[str] = set()
    for request in receiver.events():
        event = Webhook(secret).verify(request.body, request.headers)
        message_id = request.headers["webhook-id"]
        assert events.setdefault(message_id, event) == event  # a retry sends the same event
        if request.status == 200:
            delivered.add(message_id)
    assert set(events) == delivered, "an event whose every attempt failed"

    adjustments = Counter(event["data"]["creditLogId"] for event in events.values()
                          if event["type"] == "credit.adjusted")
    log_ids = dict(query(credit_url, "SELECT reference, id FROM credit_log WHERE kind = 'adjust'"))
    for key in history.adjust_acked:
        assert adjustments[log_ids[key]] == 1, key
    assert set(adjustments) == set(log_ids.values())  # no event for an adjustment not made
    jobs = Counter((event["data"]["renderId"], event["type"]) for event in events.values()
                   if event["type"].startswith("render."))
    finished = {(job_id, "render.succeeded" if status == "success" else "render.failed")
                for job_id, status in query(render_url, "SELECT id, status FROM render_job")}
    assert set(jobs) == finished and set(jobs.values()) == {1}
    print(f"webhooks: {len(events)} events, {len(receiver.events())} requests")


def run_load(history, cluster, organisations, carpet_id, databases, rng, credit_db_url):
    stop_clients, stop_watchers = threading.Event(), threading.Event()
    targets = (cluster.credit_target, cluster.render_target, cluster.gateway_target)
    clients = [threading.Thread(target=client, args=(history, targets, organisations, carpet_id,
                                                     random.Random(rng.random()), stop_clients))
               for _ in range(CLIENTS)]
    watchers = [threading.Thread(target=sampler, args=(history, credit_db_url, stop_watchers)),
                threading.Thread(target=faults, args=(history, cluster, databases,
                                                      random.Random(rng.random()),
                                                      stop_watchers))]
    for thread in [*clients, *watchers]:
        thread.start()
    time.sleep(SECONDS)
    stop_watchers.set()  # faults stop first: the clients' last calls can complete
    for thread in watchers:
        thread.join(timeout=60)
    stop_clients.set()
    for thread in clients:
        thread.join(timeout=120)
    print(f"faults: {dict(history.faults)}; calls: {dict(history.codes)}; "
          f"samples: {history.samples}; jobs: {len(history.jobs)}; adjustments acked "
          f"{len(history.adjust_acked)}, refused {len(history.adjust_refused)}, unknown "
          f"{len(history.adjust_unknown)}")


def check(history: History, cluster: Cluster) -> None:
    credit_url, render_url = cluster.env["CREDIT_DATABASE_URL"], cluster.env["RENDER_DATABASE_URL"]
    assert history.unexpected == []
    assert history.faults["kill credit_service"] + history.faults["kill render_service"] > 0
    assert history.samples > 0 and history.bad_samples == []
    assert history.adjust_acked and history.jobs

    for module, command in (("credit_service", "verify"), ("render_service", "verify"),
                            ("ops", "reconcile")):
        result = run_cli(module, command, cluster.env)
        assert result.returncode == 0, result.stdout + result.stderr

    ledger = Counter()
    deltas = {}
    for reference, delta in query(credit_url, "SELECT reference, delta FROM credit_log "
                                              "WHERE kind = 'adjust'"):
        ledger[reference] += 1
        deltas[reference] = delta
    for key, delta in history.adjust_acked.items():
        assert (ledger[key], deltas.get(key)) == (1, delta), key
    assert all(ledger[key] == 0 for key in history.adjust_refused)
    assert all(ledger[key] <= 1 for key in history.adjust_unknown)
    known = history.adjust_acked.keys() | history.adjust_refused | history.adjust_unknown
    assert set(ledger) <= known, "an adjustment nobody asked for"

    charges = Counter()
    charged = {}
    for reference, delta in query(credit_url, "SELECT reference, delta FROM credit_log "
                                              "WHERE kind = 'render' "
                                              "AND reference LIKE 'render-job:%%'"):
        charges[reference] += 1
        charged[reference] = delta
    jobs = query(render_url, "SELECT id, status, mode, credits_charged FROM render_job")
    assert {job_id for job_id, *_ in jobs} >= history.jobs  # every acknowledged job exists
    for job_id, status, mode, credits_charged in jobs:
        reference = f"render-job:{job_id}"
        assert status in ("success", "failed"), (job_id, status)
        if status == "success":
            assert (charges[reference], -charged[reference], credits_charged) == (
                1, COST[mode], COST[mode]), job_id
        else:
            assert (charges[reference], credits_charged) == (0, 0), job_id
    # Every acknowledged capture charged its hold once, for its amount; every acknowledged
    # release charged nothing; both hold states say so.
    holds = {reference: (state, charged_rows, charged_total) for reference, state, charged_rows,
             charged_total in query(credit_url, """
                 SELECT h.reference, h.state, count(l.id), COALESCE(sum(l.delta), 0)
                 FROM credit_hold h LEFT JOIN credit_log l ON l.hold_id = h.id AND l.kind = 'render'
                 WHERE h.reference LIKE 'bank-%%' GROUP BY h.reference, h.state""")}
    assert history.captured and history.released
    for reference, amount in history.captured.items():
        assert holds[reference] == ("captured", 1, -amount), reference
    for reference in history.released:
        assert holds[reference] == ("released", 0, 0), reference
    overdue = query(credit_url, "SELECT count(*) FROM credit_hold WHERE state = 'held' "
                                "AND expires_at < (now() AT TIME ZONE 'utc')")
    assert overdue == [(0,)]
    # Grants expired during the run, each once, each with at most one expiry row of its own.
    expired = query(credit_url, "SELECT count(*) FROM credit_grant WHERE expired_at IS NOT NULL")
    assert expired[0][0] > 0
    assert query(credit_url, "SELECT count(*) FROM (SELECT grant_id FROM credit_log "
                             "WHERE kind = 'expire' AND reason = 'grant expired' "
                             "GROUP BY grant_id HAVING count(*) > 1) twice") == [(0,)]
