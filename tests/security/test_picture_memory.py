"""Memory before credit: 16 concurrent submissions of a 40 MP progressive 4:4:4 JPEG (470 kB,
about 10 MB per megapixel while it decodes) against a real render process. Without credit no
pixel is decoded at all (the header is checked, the reservation refused); with credit every
decode, in the submissions and in the render workers, draws from the process's decode budget,
so the process stays under 1 GB where it once reached 5.6 GB."""
import io
import threading
import time

import grpc
import pytest
from PIL import Image

from protos.carpet.render.v1 import render_pb2
from tests.helpers import bearer
from tests.security.stack import Deployment, peak_memory_bytes, staff_jwt

SIDE = 6324  # 39.99 MP: under the 40 MP limit
LIMIT_BYTES = 1024 ** 3
CONCURRENT = 16


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = Deployment(tmp_path_factory.mktemp("pictures"), RATE_LIMIT_RENDER="off",
                         RENDER_WORKERS="2", GRPC_MAX_WORKERS="32", DB_MAX_CONNECTIONS="34",
                         modules=("credit_service", "render_service")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def big_jpeg():
    picture = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (120, 90, 60)).save(picture, "JPEG", progressive=True,
                                                       subsampling=0, quality=95)
    return picture.getvalue()


def submit_all(deployment, organization_id, carpet_id, picture, metadata):
    """CONCURRENT submissions at once; their status codes."""
    renders = deployment.renders(service=None)
    codes, start = [], threading.Barrier(CONCURRENT)

    def one():
        start.wait()
        try:
            renders.SubmitRender(render_pb2.SubmitRenderRequest(
                organization_id=organization_id, carpet_id=carpet_id, mode="preview",
                room_image=picture), metadata=metadata, timeout=120)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())

    threads = [threading.Thread(target=one) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return codes


def test_a_shop_without_credit_gets_no_picture_decoded(deployment, big_jpeg):
    broke = deployment.organization("Broke", 0)
    carpet = deployment.carpet("K-BROKE")
    pid = deployment.processes["render_service"].process.pid
    before = peak_memory_bytes(pid)
    codes = submit_all(deployment, broke.id, carpet.id, big_jpeg,
                       bearer(staff_jwt(broke.id)))
    assert codes == [grpc.StatusCode.FAILED_PRECONDITION] * CONCURRENT
    grown = peak_memory_bytes(pid) - before
    print(f"\n16 x 40 MP without credit: peak grew {grown / 2**20:.0f} MiB")
    # Sixteen decodes would be 6 GB; the requests' own bytes are 16 x 470 kB.
    assert grown < 200 * 2 ** 20


def test_decoding_with_credit_stays_within_the_budget(deployment, big_jpeg):
    paying = deployment.organization("Paying", 1000)
    carpet = deployment.carpet("K-PAYING")
    pid = deployment.processes["render_service"].process.pid
    codes = submit_all(deployment, paying.id, carpet.id, big_jpeg,
                       bearer(staff_jwt(paying.id)))
    # A submission waiting longer than the budget's patience is told to come back.
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    accepted = codes.count(grpc.StatusCode.OK)
    assert accepted >= 1
    # The workers decode every accepted picture again to render it, from the same budget.
    renders = deployment.renders()
    deadline = time.monotonic() + 300
    while True:
        page = renders.ListRenders(render_pb2.ListRendersRequest(
            organization_id=paying.id, page_size=100), timeout=10).renders
        if all(job.status in (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)
               for job in page):
            break
        assert time.monotonic() < deadline, "renders did not finish"
        time.sleep(0.5)
    assert sum(job.status == render_pb2.RENDER_STATUS_SUCCESS for job in page) == accepted
    peak = peak_memory_bytes(pid)
    print(f"\n16 x 40 MP with credit ({accepted} accepted, rendered): peak {peak / 2**20:.0f} MiB")
    assert peak < LIMIT_BYTES
