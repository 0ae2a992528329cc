"""Abuse from one IP against real processes on loopback, each case bounded in time: while it
runs, a legitimate caller must still be served within a one-second deadline (its p50/p99 are
printed for the notes). Slow HTTP clients, held streams, a thin 40 MP picture, bogus paths,
a flood of refused credentials."""
import asyncio
import http.client
import io
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc, credit_pb2, credit_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import as_service, identified_channel
from tests.processes import ServiceProcess, run_cli

TOKEN = "abuse-admin-token-0123456789abcdef"
ADMIN = (("x-admin-token", TOKEN),)
DEADLINE_S = 1.0
# Measured here under every abuse case: p99 12-37 ms (251 ms once, on a slower day). The bound
# is what a legitimate caller is promised — served within its one-second deadline — and still
# fails when the abuse takes the server (seconds, or the deadline).
P99_LIMIT_S = DEADLINE_S


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abuse")
    env = {"CREDIT_DATABASE_URL": f"sqlite:///{tmp}/credit.db",
           "RENDER_DATABASE_URL": f"sqlite:///{tmp}/render.db",
           "ADMIN_TOKENS": f"ops:{TOKEN}", "RENDER_STORAGE_DIR": str(tmp / "renders"),
           "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "RENDER_ADDR": f"127.0.0.1:{free_port()}",
           "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}",
           "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}",
           "RATE_LIMIT_ADMIN": "off", "RATE_LIMIT_RENDER": "off", "RENDER_WORKERS": "0"}
    for module in ("credit_service", "render_service"):
        assert run_cli(module, "migrate", env).returncode == 0
    processes = [ServiceProcess(module, env[variable], env, str(tmp / f"{module}.log"))
                 for module, variable in (("credit_service", "CREDIT_ADDR"),
                                          ("render_service", "RENDER_ADDR"),
                                          ("admin_gateway", "ADMIN_GRPC_ADDR"))]
    for process in processes:
        process.start()
    channel = grpc.insecure_channel(env["ADMIN_GRPC_ADDR"])
    with grpc.insecure_channel(env["CREDIT_ADDR"]) as credit:
        organization = account_pb2_grpc.AccountServiceStub(credit).CreateOrganization(
            account_pb2.CreateOrganizationRequest(name="Acme", initial_credits=10_000),
            metadata=ADMIN, timeout=10)
    web = render_pb2_grpc.RenderServiceStub(identified_channel(env["RENDER_ADDR"], "web"))
    carpet = web.CreateCarpet(render_pb2.CreateCarpetRequest(
        sku="K", name="K", width_cm=100, length_cm=150, image=tiny_png()), timeout=10)
    job = web.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=organization.id, carpet_id=carpet.id, mode="preview"), timeout=10)
    yield {"env": env, "admin": admin_pb2_grpc.AdminServiceStub(channel), "web": web,
           "organization": organization, "carpet": carpet, "queued_job": job,
           "render_pid": processes[1].process.pid}
    channel.close()
    for process in reversed(processes):
        process.stop()


def legitimate_calls(system, count=20):
    """`count` overview calls over gRPC and HTTP, each within the deadline; their latencies."""
    latencies = []
    host, port = system["env"]["ADMIN_HTTP_ADDR"].split(":")
    for index in range(count):
        started = time.perf_counter()
        if index % 2:
            system["admin"].GetOverview(admin_pb2.GetOverviewRequest(), metadata=ADMIN,
                                        timeout=DEADLINE_S)
        else:
            # From another address than the abusive one (127.0.0.1), which may hold at most
            # CONNECTIONS_PER_ADDRESS connections of the HTTP port.
            connection = http.client.HTTPConnection(host, int(port), timeout=DEADLINE_S,
                                                    source_address=("127.0.0.2", 0))
            try:
                connection.request("GET", "/admin/overview", headers={"x-admin-token": TOKEN})
                assert connection.getresponse().status == 200
            finally:
                connection.close()
        latencies.append(time.perf_counter() - started)
    return latencies


def report(case, latencies):
    """Print the legitimate caller's p50 and p99, and hold its p99 to P99_LIMIT_S."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(f"\n{case}: legitimate p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms")
    assert p99 < P99_LIMIT_S, f"{case}: legitimate p99 {p99 * 1000:.0f} ms"


def test_slow_http_clients_hold_no_worker(system):
    """200 connections sending their headers a byte at a time, and 200 sending a declared
    body a byte at a time: waitress reads them in its event loop, so no thread waits on them."""
    host, port = system["env"]["ADMIN_HTTP_ADDR"].split(":")
    stop = threading.Event()
    sockets = []

    def open_slow(kind):
        client = socket.create_connection((host, int(port)), timeout=5)
        if kind == "body":
            client.sendall(b"POST /admin/credits/adjust HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
        else:
            client.sendall(b"GET /admin/overview HTTP/1.1\r\n")
        sockets.append(client)

    for index in range(400):
        open_slow("body" if index % 2 else "headers")

    def trickle():
        while not stop.wait(1.0):
            for client in list(sockets):
                try:
                    client.sendall(b"x")  # one more header or body byte per second
                except OSError:
                    sockets.remove(client)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        time.sleep(1.5)  # the slow clients are established and trickling
        latencies = legitimate_calls(system)
        report("400 slow HTTP clients", latencies)
    finally:
        stop.set()
        feeder.join(5)
        for client in sockets:
            client.close()


def test_held_streams_do_not_starve_short_calls(system):
    """64 health Watch and 100 reflection streams from one address on each port, and 10,000
    WatchRender attempts from one service: the streams beyond the limits (64 reflection per
    caller, 2,000 long streams per caller) are refused, the rest are held without a thread each,
    short calls stay served, and the render process's memory stays bounded."""
    env = system["env"]
    release = threading.Event()
    held, refused_reflection = [], 0
    channels = []

    def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait(60)

    for address in (env["CREDIT_ADDR"], env["RENDER_ADDR"], env["ADMIN_GRPC_ADDR"]):
        channel = grpc.insecure_channel(address)
        channels.append(channel)
        for _ in range(64):
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(),
                                                               timeout=60)
            next(watch)
            held.append(watch)
        for _ in range(100):
            stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                requests(), timeout=60)
            try:
                next(stream)
                held.append(stream)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                refused_reflection += 1
    render_pid = system["render_pid"]
    rss_before = rss_kib(render_pid)
    measured = {}

    def while_held():
        measured["grown_mib"] = (rss_kib(render_pid) - rss_before) / 1024
        measured["latencies"] = legitimate_calls(system)

    try:
        assert refused_reflection == 3 * (100 - 64)
        outcome = asyncio.run(watch_many(env["RENDER_ADDR"], system["queued_job"].id, 10_000,
                                         while_held))
        assert outcome == {"admitted": 2000, "refused": 8000}, outcome
        report(f"3x64 health Watch + 3x100 reflection + 10,000 WatchRender attempts (render "
               f"process +{measured['grown_mib']:.0f} MiB)", measured["latencies"])
        assert measured["grown_mib"] < 512, measured
    finally:
        release.set()
        for stream in held:
            stream.cancel()
        for channel in channels:
            channel.close()


async def watch_many(address, job_id, attempts, while_held):
    """`attempts` WatchRender calls at once from the service `web`: each admitted one reads its
    first message and stays open until every attempt is answered and `while_held()` ran."""
    outcome = Counter()
    answered = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = render_pb2_grpc.RenderServiceStub(channel)

        async def attempt():
            call = stub.WatchRender(render_pb2.WatchRenderRequest(id=job_id),
                                    metadata=as_service("web"), timeout=120)
            try:
                await call.read()
                outcome["admitted"] += 1
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert "(STREAMS_PER_PRINCIPAL 2000)" in error.details()
                outcome["refused"] += 1
            if outcome.total() == attempts:
                while_held()  # blocks this loop: every call stays as it is meanwhile
                answered.set()
            await answered.wait()
            call.cancel()

        await asyncio.gather(*(attempt() for _ in range(attempts)))
    return dict(outcome)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def test_a_thin_forty_megapixel_picture_is_refused_at_submit(system):
    thin = io.BytesIO()
    Image.new("1", (200, 200_000)).save(thin, "PNG")  # 40 MP in a small file
    for mode in ("preview", "standard", "hd"):
        with pytest.raises(grpc.RpcError) as refused:
            system["web"].SubmitRender(render_pb2.SubmitRenderRequest(
                organization_id=system["organization"].id, carpet_id=system["carpet"].id,
                mode=mode, room_image=thin.getvalue()), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "longer side may be at most 4 times" in refused.value.details()
    report("a thin 40 MP picture in every mode", legitimate_calls(system))


def test_bogus_paths_do_not_grow_the_metrics(system):
    base = f"http://{system['env']['ADMIN_HTTP_ADDR']}"

    def metrics_size():
        request = urllib.request.Request(base + "/metrics", headers={"x-admin-token": TOKEN})
        with urllib.request.urlopen(request, timeout=5) as page:
            return len(page.read())

    before = metrics_size()
    for index in range(2000):
        try:
            urllib.request.urlopen(f"{base}/admin/bogus/{index}/{'x' * (index % 50)}",
                                   timeout=5)
        except urllib.error.HTTPError as error:
            assert error.code == 404
    grown = metrics_size() - before
    assert grown < 4096, f"/metrics grew by {grown} bytes for 2000 bogus paths"
    report("after 2000 bogus paths", legitimate_calls(system))


def test_a_flood_of_refused_credentials_leaves_adjustments_alone(system):
    """Refusals are audited in bursts, so they do not take the audit chain's lock once each:
    real adjustments keep their latency while a flood of bad tokens hits the credit port."""
    env = system["env"]
    stop = threading.Event()
    refusals = [0]

    def flood():
        with grpc.insecure_channel(env["CREDIT_ADDR"]) as channel:
            credits = credit_pb2_grpc.CreditServiceStub(channel)
            while not stop.is_set():
                try:
                    credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
                        organization_id=1, delta=1, reason="x"),
                        metadata=(("x-admin-token", "guess-" + "x" * 30),), timeout=5)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                    refusals[0] += 1

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for thread in flooders:
        thread.start()
    try:
        latencies = []
        with grpc.insecure_channel(env["ADMIN_GRPC_ADDR"]) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            for index in range(20):
                started = time.perf_counter()
                admin.AdjustCredits(credit_pb2.AdjustCreditsRequest(
                    organization_id=system["organization"].id, delta=1, reason="real",
                    idempotency_key=f"real-{index}"), metadata=ADMIN, timeout=DEADLINE_S)
                latencies.append(time.perf_counter() - started)
        report(f"a flood of refused credentials ({refusals[0]} refused meanwhile)", latencies)
        assert refusals[0] > 20
    finally:
        stop.set()
        for thread in flooders:
            thread.join(10)
