"""What the image API answers is never served as it claims to be (RENDERER=http, real
processes): an answer said to be text/html fails the job, and so does an HTML page said to be
image/png, because what is stored and served is what the bytes are. A real picture is served
as its type, with `nosniff`, on the console's origin."""
import time
import urllib.error
import urllib.request

import pytest

from protos.carpet.render.v1 import render_pb2
from tests.fake_image_api import FakeImageApi
from tests.helpers import ADMIN_TOKEN
from tests.security.stack import Deployment


def finished(renders, job_id):
    deadline = time.monotonic() + 60
    while True:
        job = renders.GetRender(render_pb2.GetRenderRequest(id=job_id), timeout=10)
        if job.status in (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED):
            return job
        assert time.monotonic() < deadline, "the render never finished"
        time.sleep(0.1)


@pytest.mark.parametrize("answer, status, error_text", [
    ("html", render_pb2.RENDER_STATUS_FAILED, "image API answered with 'text/html', not an image"),
    ("disguised", render_pb2.RENDER_STATUS_FAILED,
     "the renderer's output is not a PNG or JPEG picture"),
    ("ok", render_pb2.RENDER_STATUS_SUCCESS, ""),
])
def test_only_real_pictures_are_served(tmp_path, answer, status, error_text):
    with FakeImageApi([answer]) as api:
        deployment = Deployment(tmp_path, RENDERER="http", RENDER_API_URL=api.url,
                                RENDER_API_KEY="image-api-key-0123456789",
                                RENDER_API_ALLOW_HTTP="1", RATE_LIMIT_RENDER="off").start()
        try:
            shop = deployment.organization("Pictures", 10)
            renders = deployment.renders()
            job = renders.SubmitRender(render_pb2.SubmitRenderRequest(
                organization_id=shop.id, carpet_id=deployment.carpet().id, mode="preview"),
                timeout=10)
            done = finished(renders, job.id)
            assert (done.status, done.error_text) == (status, error_text)
            request = urllib.request.Request(f"{deployment.http}/admin/renders/{job.id}/image",
                                             headers={"x-admin-token": ADMIN_TOKEN})
            if status == render_pb2.RENDER_STATUS_FAILED:
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                assert refused.value.code == 412  # no picture to serve
            else:
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.headers["Content-Type"] == "image/png"
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                    assert response.read().startswith(b"\x89PNG")
        finally:
            deployment.stop()
