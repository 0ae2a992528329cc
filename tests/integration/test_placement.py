"""Placement of the carpet (`docs/render-api.md`) through the real render service, on both engines:
checked at submission (INVALID_ARGUMENT saying why, nothing stored), kept with the job and
returned by GetRender, honoured by the local renderer, passed on by the http renderer."""
import dataclasses
import io
import json

import grpc
import numpy as np
import pytest
from PIL import Image

from protos.carpet.render.v1 import render_pb2
from render_service.renderers import RenderRequest
from render_service.renderers.http import HttpRenderer
from tests.builders import create_carpet, create_org, get, wait_final
from tests.fake_image_api import FakeImageApi, tiny_png

pytestmark = pytest.mark.usefixtures("engine")
CORNERS = ((0.1, 0.6), (0.4, 0.6), (0.45, 0.95), (0.05, 0.95))  # the lower-left of the room


def placement(corners):
    return render_pb2.Placement(carpet_corners=[render_pb2.Point(x=x, y=y) for x, y in corners])


def submit_placed(stubs, organization_id, carpet_id, corners, key=""):
    return stubs.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=organization_id, carpet_id=carpet_id, mode="preview",
        placement=placement(corners), idempotency_key=key), timeout=30)


def test_a_placement_is_kept_returned_and_honoured(render_server, credit_server, start_workers):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server, image=tiny_png((0, 200, 0), (60, 90)))
    job = submit_placed(render_server, org.id, carpet.id, CORNERS)
    stored = render_server.renders.GetRender(render_pb2.GetRenderRequest(id=job.id), timeout=10)
    assert [(round(p.x, 6), round(p.y, 6)) for p in stored.placement.carpet_corners] == \
        list(CORNERS)
    start_workers()
    done, _ = wait_final(render_server, job.id)
    assert (done.status, done.renderer) == (render_pb2.RENDER_STATUS_SUCCESS, "local")
    picture = np.asarray(Image.open(io.BytesIO(b"".join(chunk.data for chunk in
        render_server.renders.GetRenderOutput(render_pb2.GetRenderOutputRequest(id=job.id),
                                              timeout=10)))).convert("RGB")).astype(int)
    height, width, _ = picture.shape
    green = (picture[..., 1] - picture[..., 0]) > 80
    assert green[int(0.8 * height), int(0.25 * width)]  # inside the requested quad
    assert not green[int(0.8 * height), int(0.75 * width)]  # where the default would be
    assert not green[:, int(0.5 * width):].any()


@pytest.mark.parametrize("corners, words", [
    (CORNERS[:3], "exactly 4"),
    (((0.1, 0.6), (0.4, 0.6), (0.05, 0.95), (0.45, 0.95)), "convex"),  # crossed: a bow tie
    (tuple(reversed(CORNERS)), "convex"),  # counter-clockwise: not far-left first
    (((-0.1, 0.6), (0.4, 0.6), (0.45, 0.95), (0.05, 0.95)), "inside the picture"),
    (((0.1, 0.6), (0.4, 0.6), (0.45, 1.2), (0.05, 0.95)), "inside the picture"),
    (((0.5, 0.5), (0.52, 0.5), (0.52, 0.52), (0.5, 0.52)), "too small"),
    (((float("nan"), 0.6), (0.4, 0.6), (0.45, 0.95), (0.05, 0.95)), "inside the picture"),
])
def test_bad_placements_are_refused_saying_why(render_server, credit_server, corners, words):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    with pytest.raises(grpc.RpcError) as refused:
        submit_placed(render_server, org.id, carpet.id, corners)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in refused.value.details()
    assert list(render_server.renders.ListRenders(render_pb2.ListRendersRequest(),
                                                  timeout=10).renders) == []


def test_the_http_renderer_passes_the_placement_on():
    request = RenderRequest(job_id=1, mode="preview", carpet_image=tiny_png(),
                            carpet_width_cm=100, carpet_length_cm=150, room_image=None,
                            placement=CORNERS)
    with FakeImageApi(["ok"]) as api:
        HttpRenderer(api.url, "sk-test-key-0123456789", timeout_s=5, allow_http=True).render(
            request)
        HttpRenderer(api.url, "sk-test-key-0123456789", timeout_s=5, allow_http=True).render(
            dataclasses.replace(request, placement=None))
    assert api.placements == [[list(corner) for corner in CORNERS], None]


def test_the_admin_render_list_shows_renderer_and_placement(render_server, credit_server,
                                                            start_workers, http_gateway):
    """What the render detail of the admin page reads: GET /admin/renders."""
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    job = submit_placed(render_server, org.id, carpet.id, CORNERS)
    start_workers()
    wait_final(render_server, job.id)
    status, _, body = get(http_gateway, f"/admin/renders?organizationId={org.id}")
    assert status == 200, body
    (row,) = json.loads(body)["renders"]
    assert row["render"]["renderer"] == "local"
    assert [(round(p["x"], 6), round(p["y"], 6))
            for p in row["render"]["placement"]["carpetCorners"]] == list(CORNERS)
