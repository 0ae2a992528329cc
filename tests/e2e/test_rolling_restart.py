"""A new version rolled out with zero failed calls (docs/operations.md, "Rolling out a new
version"): the local stack's topology — two credit-service and two render-service replicas, and
two gateways — on PostgreSQL, under a steady load of submissions, balance reads and admin
overviews through the replicas' address lists, while every replica in turn is stopped
(SIGTERM: health NOT_SERVING, calls in flight finished) and started again. The next replica is
restarted only once the restarted one serves calls again, as a rollout waits for readiness.
No call of the load fails, and the books verify afterwards."""
import re
import threading
import time
import urllib.request

import grpc
import pytest

from carpet_common.server import CLIENT_CHANNEL_OPTIONS, service_channel
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, credit_pb2, credit_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import SERVICE_TOKEN
from tests.processes import ServiceProcess, run_cli

ADMIN_TOKEN = "rolling-admin-token-0123456789abc"
ADMIN = (("x-admin-token", ADMIN_TOKEN),)
# Twice the longest reconnect backoff of the services' channels (CLIENT_CHANNEL_OPTIONS);
# the manifests' minReadySeconds is 10.
MIN_READY_S = 2 * dict(CLIENT_CHANNEL_OPTIONS)["grpc.max_reconnect_backoff_ms"] / 1000
SERVED = re.compile(r'^carpet_rpc_requests_total\{code="OK",method="([^"]+)"\} (\S+)$', re.M)


def served_calls(process) -> float:
    """Calls the process has answered OK since it started: the services' METRICS_ADDR, the
    gateway's /metrics (read as a scraper, by a service token)."""
    if process.module == "admin_gateway":
        scrape = urllib.request.Request(f"http://{process.env['ADMIN_HTTP_ADDR']}/metrics",
                                        headers={"x-service-token": SERVICE_TOKEN["web"]})
    else:
        scrape = urllib.request.Request(f"http://{process.env['METRICS_ADDR']}/metrics")
    with urllib.request.urlopen(scrape, timeout=10) as page:
        return sum(float(count) for _, count in SERVED.findall(page.read().decode()))


def replicas(module, variable, count, env, tmp_path, **extra):
    processes = []
    for index in range(count):
        address = f"127.0.0.1:{free_port()}"
        own = {variable: address}
        setting = "ADMIN_HTTP_ADDR" if module == "admin_gateway" else "METRICS_ADDR"
        own[setting] = f"127.0.0.1:{free_port()}"
        processes.append(ServiceProcess(module, address, {**env, **extra, **own},
                                        str(tmp_path / f"{module}-{index}.log")))
    return processes


def listing(processes):
    return "ipv4:" + ",".join(process.address for process in processes)


class Load:
    """Clients calling without pause from their own threads until stopped; every failure kept
    with its code and message."""

    def __init__(self, calls):
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(name, call), daemon=True)
                         for name, call in calls.items()]

    def _run(self, name, call):
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                call(number)
                with self._lock:
                    self.ok += 1
            except grpc.RpcError as error:
                with self._lock:
                    self.failures.append(f"{name}: {error.code().name} {error.details()}")

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_every_replica_restarted_under_load_without_a_failed_call(tmp_path, credit_db_url,
                                                                  render_db_url):
    env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
           "ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}", "RENDER_STORAGE_DIR": str(tmp_path / "r"),
           "RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/12", "RATE_LIMIT_ADMIN": "off",
           "RATE_LIMIT_RENDER": "off", "RENDER_WORKERS": "0", "SEED_CREDITS": "1000000",
           "SEED_ORG_NAME": "Kesintisiz Halı", "SEED_ADMIN_PASSWORD": "first-admin-passw0rd"}
    for module in ("credit_service", "render_service"):
        assert run_cli(module, "migrate", env).returncode == 0
    assert run_cli("credit_service", "seed", env).returncode == 0
    credits = replicas("credit_service", "CREDIT_ADDR", 2, env, tmp_path)
    renders = replicas("render_service", "RENDER_ADDR", 2, env, tmp_path,
                       CREDIT_ADDR=listing(credits))
    gateways = replicas("admin_gateway", "ADMIN_GRPC_ADDR", 2, env, tmp_path,
                        CREDIT_ADDR=listing(credits), RENDER_ADDR=listing(renders))
    processes = [*credits, *renders, *gateways]
    # The clients a deployment has: an internal backend (`web`) with the services' own
    # channel (round robin over the list, reconnecting within seconds), an admin's tool.
    web = SERVICE_TOKEN["web"]
    channels = [service_channel(listing(credits), service_token=web),
                service_channel(listing(renders), service_token=web),
                service_channel(listing(gateways))]
    try:
        for process in processes:
            process.start()
        credit = credit_pb2_grpc.CreditServiceStub(channels[0])
        render = render_pb2_grpc.RenderServiceStub(channels[1])
        admin = admin_pb2_grpc.AdminServiceStub(channels[2])
        organization = admin.ListOrganizations(account_pb2.ListOrganizationsRequest(),
                                               metadata=ADMIN, timeout=10).organizations[0]
        carpet = render.CreateCarpet(render_pb2.CreateCarpetRequest(
            sku="K-1", name="Kilim", width_cm=120, length_cm=180, image=tiny_png()), timeout=10)

        def submit(number, prefix):
            job = render.SubmitRender(render_pb2.SubmitRenderRequest(
                organization_id=organization.id, carpet_id=carpet.id, mode="preview",
                idempotency_key=f"{prefix}-{number}"), timeout=10)
            assert job.status == render_pb2.RENDER_STATUS_QUEUED

        calls = {
            "submit-a": lambda number: submit(number, "a"),
            "submit-b": lambda number: submit(number, "b"),
            "balance": lambda _: credit.GetBalance(credit_pb2.GetBalanceRequest(
                organization_id=organization.id), metadata=ADMIN, timeout=10),
            "overview": lambda _: admin.GetOverview(admin_pb2.GetOverviewRequest(),
                                                    metadata=ADMIN, timeout=10),
        }
        with Load(calls) as load:
            for process in processes:
                process.stop()
                process.start()
                # The rollout's gate (minReadySeconds in deploy/kubernetes): the restarted
                # replica serves the load's calls, and every client's channel has had the time
                # its reconnect backoff allows to connect to it, before the next one goes.
                before, ready = load.ok, time.monotonic()
                while (served_calls(process) == 0 or load.ok < before + 20
                       or time.monotonic() < ready + MIN_READY_S):
                    assert not load.failures, load.failures[:5]
                    time.sleep(0.05)
        assert load.failures == [] and load.ok > 200, (load.ok, load.failures[:5])

        for module, command in (("credit_service", "verify"), ("render_service", "verify"),
                                ("ops", "reconcile")):
            checked = run_cli(module, command, env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        for channel in channels:
            channel.close()
        for process in reversed(processes):
            process.stop()
