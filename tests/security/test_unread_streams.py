"""One STAFF freezing the gateway with exports it never reads, against real processes: the
exports are long streams counted per caller (STREAMS_PER_PRINCIPAL, 20 here), so of the 40 it
opens half are refused; the ones admitted (more than the gateway's 16 worker threads: a stream
waiting on its reader holds none) are ended once a message has waited for its reader too long;
everyone else's short calls and sign-ins are served meanwhile.

The attacker's channel turns off HTTP/2's window growth (BDP probing), as any client may: its
window then stays at 64 kB, so the server's sends wait as soon as the client stops reading."""
import datetime
import json
import time
import urllib.error
import urllib.request

import grpc
import pytest

from carpet_common.db import bind_database
from carpet_common.streams import StreamLimits
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.render.v1 import render_pb2
from render_service import models as render_models
from tests.helpers import ADMIN, bearer
from tests.security.stack import Deployment, staff_jwt

JOBS = 20_000  # a few MB of export: far more than a stream's flow-control window
STREAMS = 40
PER_PRINCIPAL = 20


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = Deployment(tmp_path_factory.mktemp("streams"), RATE_LIMIT_ADMIN="off",
                         RENDER_WORKERS="0", STREAMS_PER_PRINCIPAL=str(PER_PRINCIPAL)).start()
    yield running
    running.stop()


def add_jobs(deployment, organization_id, carpet_id):
    database = bind_database(render_models.database, deployment.env["RENDER_DATABASE_URL"])
    now = datetime.datetime(2026, 1, 1)
    with database.connection_context(), database.atomic():
        for start in range(0, JOBS, 1000):
            render_models.RenderJob.insert_many([dict(
                organization_id=organization_id, carpet=carpet_id, mode="preview",
                status="failed", error_text="an old refusal with a long explanation " * 3,
                cost=1, created_at=now, updated_at=now, finished_at=now)
                for _ in range(start, min(JOBS, start + 1000))]).execute()
    database.close()


def test_unread_exports_cannot_freeze_the_gateway(deployment):
    shop = deployment.organization("Exporter", 0)
    add_jobs(deployment, shop.id, deployment.carpet("K-EXPORT").id)
    admin = deployment.admin()
    attacker = grpc.insecure_channel(deployment.env["ADMIN_GRPC_ADDR"],
                                     options=[("grpc.http2.bdp_probe", 0)])
    exports = admin_pb2_grpc.AdminServiceStub(attacker)
    staff = bearer(staff_jwt(shop.id))
    held, refused = [], 0
    for _ in range(STREAMS):
        stream = exports.ExportRenders(render_pb2.ListRendersRequest(), metadata=staff,
                                       timeout=300)
        try:
            next(stream)  # the first page; then never read again
            held.append(stream)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "(STREAMS_PER_PRINCIPAL 20)" in error.details()
            refused += 1
    assert (len(held), refused) == (PER_PRINCIPAL, STREAMS - PER_PRINCIPAL)
    try:
        # Short calls and sign-ins are served while the exports wait on their reader.
        for _ in range(10):
            overview = admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=ADMIN,
                                         timeout=2)
            assert overview.total_renders == JOBS
        login = urllib.request.Request(
            f"{deployment.http}/auth/login", method="POST",
            data=json.dumps({"email": "nobody@example.com", "password": "x" * 12}).encode(),
            headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(login, timeout=5)
        assert answered.value.code == 401
        # The server ends each unread export once a message waited past the write timeout
        # (its own count of cancelled exports says so; the client learns it when it reads).
        deadline = time.monotonic() + StreamLimits().write_timeout_s + 60
        while cancelled_exports(deployment) < PER_PRINCIPAL:
            assert time.monotonic() < deadline, "unread exports were never ended"
            time.sleep(0.5)
        for stream in held:
            with pytest.raises(grpc.RpcError) as ended:
                for _ in stream:
                    pass
            assert ended.value.code() == grpc.StatusCode.CANCELLED
        # Their slots are free again: the same person's export, read, runs to its end.
        rows = sum(len(page.renders) for page in admin.ExportRenders(
            render_pb2.ListRendersRequest(), metadata=staff, timeout=120))
        assert rows == JOBS
    finally:
        for stream in held:
            stream.cancel()
        attacker.close()


def cancelled_exports(deployment) -> float:
    request = urllib.request.Request(f"{deployment.http}/metrics",
                                     headers={"x-admin-token": ADMIN[0][1]})
    with urllib.request.urlopen(request, timeout=10) as page:
        for line in page.read().decode().splitlines():
            if line.startswith('carpet_rpc_requests_total{code="CANCELLED",method="/carpet.'
                               'admin.v1.AdminService/ExportRenders"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0

