"""Renders on a measured floor through the real render service (both engines): two carpets by
their real sizes, one charge with the extra carpet's surcharge, the computed corners and fit in
the answer and in GetRender, the picture made; what cannot be placed refused in words before
anything is held; the HTTP image API given every carpet's corners and the occluders
(`docs/render-api.md`, "A measured floor")."""
import io

import grpc
import pytest
from PIL import Image

from protos.carpet.render.v1 import render_pb2
from render_service import floor, models
from render_service.renderers import CarpetLayer, RenderRequest
from render_service.renderers.http import HttpRenderer
from tests.builders import balance, create_org, wait_final
from tests.fake_image_api import FakeImageApi, tiny_png
from tests.unit.test_measured_floor import MEASURE, line_measure

pytestmark = pytest.mark.usefixtures("engine")


def point(x, y):
    return render_pb2.Point(x=x, y=y)


def measured_floor():
    return render_pb2.Floor(rectangle=[point(x, y) for x, y in MEASURE.rectangle],
                            width_cm=MEASURE.width_cm, length_cm=MEASURE.length_cm)


def two_carpets(render_server, organization_id):
    room = render_server.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=organization_id, sku="ROOM", name="Room carpet", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=100, length_cm=150),
               render_pb2.CarpetSize(width_cm=200, length_cm=300)]), timeout=10)
    runner = render_server.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=organization_id, sku="RUN", name="Runner", image=tiny_png(),
        width_cm=80, length_cm=150), timeout=10)
    return room, runner


def submit_on_floor(render_server, organization_id, carpets, **fields):
    return render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=organization_id, mode="preview", room_image=tiny_png(size=(640, 480)),
        floor=measured_floor(), carpets=carpets, **fields), timeout=30)


def spot(size_id, x, y, rotation=0.0):
    return render_pb2.CarpetPlacement(carpet_size_id=size_id, center_x_cm=x, center_y_cm=y,
                                      rotation_deg=rotation)


def test_two_carpets_by_their_real_size(render_server, credit_server, start_workers):
    shop = create_org(credit_server, "Shop", 20)
    room, runner = two_carpets(render_server, shop.id)
    job = submit_on_floor(render_server, shop.id, [
        spot(room.sizes[0].id, 100, 150), spot(runner.sizes[0].id, 125, 265, 90)],
        occluders=[render_pb2.Polygon(points=[point(0.45, 0.5), point(0.5, 0.5),
                                              point(0.5, 0.55)])])
    # The first carpet names the job; its corners are the job's placement.
    assert (job.carpet_id, job.carpet_size_id) == (room.id, room.sizes[0].id)
    assert [(placed.carpet_size_id, placed.fit.inside_floor, placed.fit.clearance_left_cm,
             placed.fit.clearance_near_cm) for placed in job.placed_carpets] == [
        (room.sizes[0].id, True, 50.0, 75.0), (runner.sizes[0].id, False, 50.0, -5.0)]
    assert [(p.x, p.y) for p in job.placement.carpet_corners] == [
        (p.x, p.y) for p in job.placed_carpets[0].corners]
    # One charge: the mode's cost (1) and one extra carpet (1).
    assert balance(credit_server, shop.id).held == 2
    # Counted under each of its carpets in the shop's usage.
    day = job.created_at.ToDatetime().date().isoformat()
    usage = render_server.renders.GetRenderUsage(render_pb2.GetRenderUsageRequest(
        organization_id=shop.id, from_date=day, to_date=day), timeout=10)
    assert sorted((row.carpet_id, row.carpet_size_id, row.renders) for row in usage.carpets) == \
        sorted([(room.id, room.sizes[0].id, 1), (runner.id, runner.sizes[0].id, 1)])
    start_workers()
    done, _ = wait_final(render_server, job.id)
    assert done.status == render_pb2.RENDER_STATUS_SUCCESS, done.error_text
    assert done.credits_charged == 2 and balance(credit_server, shop.id).balance == 18
    assert list(done.placed_carpets) == list(job.placed_carpets)


@pytest.mark.parametrize("case", ["overlap", "off the photo", "no floor", "both", "unknown size",
                                  "another shop's size", "other design"])
def test_what_cannot_be_placed_is_refused_before_anything_is_held(render_server, credit_server,
                                                                   case):
    shop, other = create_org(credit_server, "Shop", 20), create_org(credit_server, "Other", 5)
    room, runner = two_carpets(render_server, shop.id)
    foreign, _ = two_carpets(render_server, other.id)
    small = room.sizes[0].id
    request = {
        "overlap": dict(carpets=[spot(small, 100, 150), spot(runner.sizes[0].id, 120, 160)]),
        "off the photo": dict(carpets=[spot(room.sizes[1].id, 100, 500)]),
        "no floor": dict(floor=None, carpets=[spot(small, 100, 150)]),
        "both": dict(carpets=[spot(small, 100, 150)], placement=render_pb2.Placement(
            carpet_corners=[point(0.2, 0.5), point(0.8, 0.5), point(0.9, 0.9),
                            point(0.1, 0.9)])),
        "unknown size": dict(carpets=[spot(999_999, 100, 150)]),
        "another shop's size": dict(carpets=[spot(foreign.sizes[0].id, 100, 150)]),
        "other design": dict(carpet_id=runner.id, carpets=[spot(small, 100, 150)]),
    }[case]
    expected = {
        "overlap": (grpc.StatusCode.INVALID_ARGUMENT, "carpets 1 and 2 overlap by about"),
        "off the photo": (grpc.StatusCode.INVALID_ARGUMENT, "carpet 1 (200 × 300 cm) leaves the "
                                                            "photo"),
        "no floor": (grpc.StatusCode.INVALID_ARGUMENT, "give floor"),
        "both": (grpc.StatusCode.INVALID_ARGUMENT, "either placement"),
        "unknown size": (grpc.StatusCode.NOT_FOUND, "carpet size 999999 not found"),
        "another shop's size": (grpc.StatusCode.NOT_FOUND, "not found"),
        "other design": (grpc.StatusCode.INVALID_ARGUMENT, "leave it out"),
    }[case]
    fields = {"floor": measured_floor(), **request}
    with pytest.raises(grpc.RpcError) as refused:
        render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
            organization_id=shop.id, mode="preview", **fields), timeout=30)
    assert (refused.value.code(), expected[1] in refused.value.details()) == (expected[0], True), \
        refused.value.details()
    assert models.RenderJob.select().count() == 0
    assert balance(credit_server, shop.id).held == 0


def line_floor(**changes):
    line, _ = line_measure(0.0)
    fields = dict(start=point(*line.start), end=point(*line.end), length_cm=line.length_cm,
                  vanishing_point=point(*line.vanishing_point),
                  focal_length_mm=line.focal_length_mm)
    return render_pb2.Floor(line=render_pb2.FloorLine(**{**fields, **changes}))


def jpeg(width, height, orientation=1) -> bytes:
    """A plain JPEG whose EXIF orientation is `orientation` (6: shown a quarter turn round)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    output = io.BytesIO()
    Image.new("RGB", (width, height), (180, 170, 160)).save(output, format="JPEG",
                                                             exif=exif.tobytes())
    return output.getvalue()


def test_a_floor_measured_by_a_line(render_server, credit_server, start_workers):
    """Two points, their distance and the vanishing point: the carpet where the camera sees it
    (the unit tests check the geometry), no fit; the floor comes back as it was measured; a
    photo shown turned by its EXIF orientation is measured as it is seen."""
    shop = create_org(credit_server, "Shop", 20)
    room, _ = two_carpets(render_server, shop.id)
    line, _ = line_measure(0.0)
    here = [spot(room.sizes[0].id, 50.0, -100.0, 20.0)]
    job = render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=shop.id, mode="preview", room_image=jpeg(640, 480),
        floor=line_floor(), carpets=here), timeout=30)
    expected = floor.place(line, [floor.SizedSpot(floor.Spot(room.sizes[0].id, 50.0, -100.0,
                                                             20.0), room.id, 100, 150)])
    assert max(abs(got - want) for placed, corner in zip(job.placed_carpets[0].corners,
                                                          expected.carpets[0].corners,
                                                          strict=True)
               for got, want in zip((placed.x, placed.y), corner, strict=True)) < 1e-9
    assert not job.placed_carpets[0].HasField("fit")
    assert job.floor == line_floor()
    turned = render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=shop.id, mode="preview", room_image=jpeg(480, 640, orientation=6),
        floor=line_floor(), carpets=here), timeout=30)
    assert list(turned.placed_carpets) == list(job.placed_carpets)
    upright = render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=shop.id, mode="preview", room_image=jpeg(480, 640),
        floor=line_floor(), carpets=here), timeout=30)
    assert list(upright.placed_carpets) != list(job.placed_carpets)
    start_workers()
    done, _ = wait_final(render_server, job.id)
    assert done.status == render_pb2.RENDER_STATUS_SUCCESS, done.error_text
    assert done.floor == line_floor() and list(done.placed_carpets) == list(job.placed_carpets)


@pytest.mark.parametrize("floor_message,message", [
    (line_floor(vanishing_point=point(0.5, 0.95)), "is not below the floor's horizon"),
    (line_floor(length_cm=0.0), "length_cm must be between 1"),
    (render_pb2.Floor(rectangle=measured_floor().rectangle, line=line_floor().line),
     "by a rectangle or by a line, not both"),
])
def test_a_bad_line_is_refused_before_anything_is_held(render_server, credit_server,
                                                       floor_message, message):
    shop = create_org(credit_server, "Shop", 20)
    room, _ = two_carpets(render_server, shop.id)
    with pytest.raises(grpc.RpcError) as refused:
        render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
            organization_id=shop.id, mode="preview", room_image=jpeg(640, 480),
            floor=floor_message, carpets=[spot(room.sizes[0].id, 50.0, -100.0)]), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()
    assert models.RenderJob.select().count() == 0 and balance(credit_server, shop.id).held == 0


def test_the_http_renderer_gets_every_carpet_and_the_occluders():
    request = RenderRequest(job_id=1, mode="preview", carpet_image=tiny_png(),
                            carpet_width_cm=100, carpet_length_cm=150, room_image=None,
                            placement=((0.3, 0.5), (0.6, 0.5), (0.65, 0.8), (0.25, 0.8)),
                            extra_carpets=(CarpetLayer(tiny_png(), 80, 150, (
                                (0.7, 0.5), (0.8, 0.5), (0.85, 0.8), (0.72, 0.8))),),
                            occluders=(((0.4, 0.6), (0.45, 0.6), (0.45, 0.7)),))
    with FakeImageApi(["ok"]) as api:
        HttpRenderer(api.url, "sk-test-key-0123456789", timeout_s=5, allow_http=True).render(
            request)
    [(extra, occluders)] = api.scenes
    assert [(carpet["width_cm"], carpet["length_cm"], carpet["placement"]) for carpet in extra] \
        == [(80, 150, [[0.7, 0.5], [0.8, 0.5], [0.85, 0.8], [0.72, 0.8]])]
    assert occluders == [[[0.4, 0.6], [0.45, 0.6], [0.45, 0.7]]]
