"""True size on a measured floor, judged on synthetic rooms seen by a known camera (a tiled floor
drawn through a known homography; `docs/render-api.md`, "A measured floor"): the computed
corners are the camera's own within 1 %, and the local renderer's picture puts the carpet there —
its outline within 1 % of the picture's width, the floor it covers within 2 % of its size, a
carpet of twice the size on four times the floor, its pattern's proportions kept; several
carpets light each other not at all; occluders are drawn back over them; what cannot be placed
is refused with its numbers."""
import dataclasses
import io
import math

import numpy as np
import pytest
from PIL import Image

from carpet_common.errors import InvalidArgument
from render_service import floor
from render_service.renderers import CarpetLayer, RenderRequest
from render_service.renderers.local import LocalRenderer

WIDTH, HEIGHT = 640, 480  # the preview's size for a 4:3 room
# The camera: floor cm -> photo fractions. A pinhole 160 cm above the floor, looking down at a
# slant, 180 cm back from the room's near edge (a perspective a phone photo has).
FOCAL, CAMERA_HEIGHT, TILT, DISTANCE = 0.9, 160.0, math.radians(35), 180.0


def camera() -> np.ndarray:
    """The true homography: floor (x right, y towards the camera, in cm; the room 500 × 600)
    -> photo fractions. The camera stands at (250, 600 + DISTANCE) at CAMERA_HEIGHT, looking
    towards -y, tilted down by TILT; its frame: right, down, forward."""
    cos, sin = math.cos(TILT), math.sin(TILT)
    rotation = np.array([[1.0, 0.0, 0.0],  # right: the floor's x
                         [0.0, sin, -cos],  # down
                         [0.0, -cos, -sin]])  # forward
    position = np.array([250.0, 600.0 + DISTANCE, CAMERA_HEIGHT])
    extrinsic = np.column_stack([rotation[:, 0], rotation[:, 1], -rotation @ position])
    intrinsic = np.array([[FOCAL, 0, 0.5], [0, FOCAL * WIDTH / HEIGHT, 0.5], [0, 0, 1]])
    matrix = intrinsic @ extrinsic
    return matrix / matrix[2, 2]


TRUE = camera()


def to_photo(points):
    return [tuple(value) for value in
            ((TRUE @ np.array([x, y, 1.0]))[:2] / (TRUE @ np.array([x, y, 1.0]))[2]
             for x, y in points)]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def tiled_room() -> Image.Image:
    """A floor of 50 cm tiles, grey and light grey, seen through the camera; a wall above."""
    pixel = np.diag([WIDTH, HEIGHT, 1.0]) @ TRUE
    inverse = np.linalg.inv(pixel)
    columns, rows = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    points = inverse @ np.stack([columns.ravel(), rows.ravel(), np.ones(columns.size)])
    x, y, w = points
    on_floor = w * np.sign(inverse[2] @ np.array([WIDTH / 2, HEIGHT - 1, 1])) > 0
    tile = ((np.floor(x / w / 50) + np.floor(y / w / 50)) % 2).astype(np.uint8)
    grey = np.where(on_floor, 150 + 50 * tile, 225).reshape(HEIGHT, WIDTH).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))


MEASURE = floor.Floor(tuple(to_photo([(100, 100), (300, 100), (300, 400), (100, 400)])),
                      200.0, 300.0)  # four tile corners 2 × 3 m apart, the origin at (100, 100)


def place(*spots, occluders=()):
    return floor.place(MEASURE, [floor.SizedSpot(floor.Spot(index, *spot[2:]), index,
                                                 spot[0], spot[1])
                                 for index, spot in enumerate(spots, start=1)], occluders)


def carpet_picture(width_cm, length_cm, halves=False) -> bytes:
    """Red, or red on its left half and blue on its right (the pattern whose proportion is
    checked), in the carpet's proportions."""
    image = Image.new("RGB", (width_cm * 2, length_cm * 2), (220, 20, 20))
    if halves:
        image.paste((20, 20, 220), (width_cm, 0, width_cm * 2, length_cm * 2))
    return png(image)


def render(scene: floor.Scene, pictures, room=None) -> np.ndarray:
    first, *others = scene.carpets
    request = RenderRequest(
        job_id=1, mode="preview", carpet_image=pictures[0], carpet_width_cm=first.width_cm,
        carpet_length_cm=first.length_cm, room_image=png(room or tiled_room()),
        placement=first.corners,
        extra_carpets=tuple(CarpetLayer(picture, other.width_cm, other.length_cm, other.corners)
                            for picture, other in zip(pictures[1:], others, strict=True)),
        occluders=scene.occluders)
    return np.asarray(Image.open(io.BytesIO(LocalRenderer().render(request).data)),
                      dtype=np.int32)


def coloured(picture: np.ndarray, channel: int) -> np.ndarray:
    others = [index for index in range(3) if index != channel]
    return ((picture[..., channel] > picture[..., others[0]] + 60)
            & (picture[..., channel] > picture[..., others[1]] + 60))


def floor_area_cm2(mask: np.ndarray) -> float:
    """The floor a mask of pixels covers: each pixel's floor area is the Jacobian of the
    inverse homography there (det(H⁻¹) / w³ for pixel-space H⁻¹)."""
    inverse = np.linalg.inv(np.diag([WIDTH, HEIGHT, 1.0]) @ TRUE)
    rows, columns = np.nonzero(mask)
    w = inverse[2] @ np.stack([columns + 0.5, rows + 0.5, np.ones(rows.size)])
    return float(np.sum(np.abs(np.linalg.det(inverse) / w ** 3)))


def test_the_corners_are_the_cameras_own():
    scene = place((100, 150, 100.0, 150.0, 0.0), (80, 150, 125.0, 265.0, 90.0))
    # The measure's origin is tile corner (100, 100) of the true floor.
    truth = [to_photo([(x + 100, y + 100) for x, y in floor.floor_corners(spot, w, length)])
             for spot, w, length in ((floor.Spot(1, 100, 150, 0), 100, 150),
                                     (floor.Spot(2, 125, 265, 90), 80, 150))]
    for carpet, expected in zip(scene.carpets, truth, strict=True):
        for (x, y), (tx, ty) in zip(carpet.corners, expected, strict=True):
            assert abs(x - tx) < 0.01 and abs(y - ty) < 0.01
            assert abs(x - tx) < 1e-9 and abs(y - ty) < 1e-9  # exact, in fact
    assert scene.carpets[0].fit == floor.Fit(True, 50.0, 50.0, 75.0, 75.0)
    # Turned a quarter, the runner lies 150 across and 80 deep, touching the first carpet's
    # near edge, flush with the measure's right edge and 5 cm past its near edge.
    assert scene.carpets[1].fit == floor.Fit(False, 50.0, 0.0, 225.0, -5.0)


def test_the_render_puts_the_carpet_where_the_camera_sees_it():
    scene = place((100, 150, 100.0, 150.0, 0.0))
    red = coloured(render(scene, [carpet_picture(100, 150)]), 0)
    corners = np.array(scene.carpets[0].corners) * [WIDTH, HEIGHT]
    rows, columns = np.nonzero(red)
    for found, expected in ((columns.min(), corners[:, 0].min()),
                            (columns.max() + 1, corners[:, 0].max()),
                            (rows.min(), corners[:, 1].min()),
                            (rows.max() + 1, corners[:, 1].max())):
        assert abs(found - expected) <= 0.01 * WIDTH
    assert floor_area_cm2(red) == pytest.approx(100 * 150, rel=0.02)


def test_twice_the_size_covers_four_times_the_floor_and_the_pattern_keeps_its_halves():
    small = render(place((100, 150, 100.0, 150.0, 0.0)), [carpet_picture(100, 150, True)])
    large = render(place((200, 300, 100.0, 150.0, 0.0)), [carpet_picture(200, 300, True)])
    areas = {}
    for name, picture in (("small", small), ("large", large)):
        areas[name] = floor_area_cm2(coloured(picture, 0)) + floor_area_cm2(coloured(picture, 2))
        # Left half red, right half blue: equal floor, whatever the perspective.
        assert floor_area_cm2(coloured(picture, 0)) == pytest.approx(
            floor_area_cm2(coloured(picture, 2)), rel=0.03)
    assert areas["large"] / areas["small"] == pytest.approx(4.0, rel=0.02)


def test_carpets_do_not_light_each_other_and_occluders_stay_in_front():
    alone = place((100, 150, 60.0, 150.0, 0.0))
    both = place((100, 150, 60.0, 150.0, 0.0), (80, 150, 170.0, 150.0, 0.0))
    pictures = [carpet_picture(100, 150), carpet_picture(80, 150, True)]
    first_alone = render(alone, pictures[:1])
    together = render(both, pictures)
    red = coloured(first_alone, 0)
    assert np.array_equal(first_alone[red], together[red])
    assert floor_area_cm2(coloured(together, 2)) == pytest.approx(40 * 150, rel=0.03)
    # A table leg standing on the first carpet: the room's own pixels there.
    centre = np.mean(both.carpets[0].corners, axis=0)
    leg = ((centre[0] - 0.02, centre[1] - 0.02), (centre[0] + 0.02, centre[1] - 0.02),
           (centre[0] + 0.02, centre[1] + 0.02), (centre[0] - 0.02, centre[1] + 0.02))
    hidden = render(place((100, 150, 60.0, 150.0, 0.0), (80, 150, 170.0, 150.0, 0.0),
                          occluders=[leg]), pictures)
    room = np.asarray(tiled_room(), dtype=np.int32)
    inside = (slice(int((centre[1] - 0.015) * HEIGHT), int((centre[1] + 0.015) * HEIGHT)),
              slice(int((centre[0] - 0.015) * WIDTH), int((centre[0] + 0.015) * WIDTH)))
    assert np.array_equal(hidden[inside], room[inside])
    assert coloured(together[inside], 0).all()


@pytest.mark.parametrize("spots,message", [
    ([(100, 150, 100.0, 150.0, 0.0), (100, 150, 150.0, 200.0, 0.0)],
     "carpets 1 and 2 overlap by about 50 cm on the floor: move them apart"),
    ([(200, 300, 100.0, 500.0, 0.0)],
     "carpet 1 (200 × 300 cm) leaves the photo: its near-right corner would be at"),
    ([(100, 150, 100.0, 1000.0, 0.0)], "carpet 1 (100 × 150 cm) reaches beyond the floor's "
                                       "horizon at its far-left corner: move it nearer"),
    ([(100, 150, 100.0, 150.0, 0.0)] * 4, "a render on a measured floor has 1 to 3 carpets"),
    ([(100, 150, math.nan, 150.0, 0.0)], "carpet 1: centre and rotation must be finite"),
])
def test_what_cannot_be_placed_is_refused_with_its_numbers(spots, message):
    with pytest.raises(InvalidArgument) as refused:
        place(*spots)
    assert message in refused.value.message


def test_carpets_laid_edge_to_edge_touch_without_overlapping():
    scene = place((100, 150, 50.0, 150.0, 0.0), (100, 150, 150.0, 150.0, 0.0))
    assert [carpet.fit.inside_floor for carpet in scene.carpets] == [True, True]
    # Sticking out of the measure is reported, not refused.
    out = place((100, 150, 180.0, 150.0, 0.0))
    assert out.carpets[0].fit == floor.Fit(False, 130.0, -30.0, 75.0, 75.0)


def test_a_bad_measure_is_refused():
    for bad, message in (
            (floor.Floor(MEASURE.rectangle[:3], 200, 300), "exactly 4 rectangle points"),
            (floor.Floor(MEASURE.rectangle, 0.5, 300), "width_cm must be between 1"),
            (floor.Floor(tuple(reversed(MEASURE.rectangle)), 200, 300), "floor rectangle:")):
        with pytest.raises(InvalidArgument) as refused:
            floor.place(bad, [floor.SizedSpot(floor.Spot(1, 100, 150, 0), 1, 100, 150)])
        assert message in refused.value.message
    assert floor.load(floor.dump(place((100, 150, 100.0, 150.0, 30.0)))) == place(
        (100, 150, 100.0, 150.0, 30.0))


# Measured by a line: the test camera is a level phone-like camera (principal point at the
# centre, square pixels), its focal length in 35 mm terms over the photo's diagonal.
FOCAL_MM = FOCAL * WIDTH / math.hypot(WIDTH, HEIGHT) * floor.FULL_FRAME_DIAGONAL_MM


def line_measure(turn: float, start=(150.0, 420.0), across=180.0, deep=60.0):
    """A FloorLine from `start` on the true floor to a point `across` and `deep` cm from it,
    the vanishing point that of the direction turned `turn` radians from the true y; with the
    true floor's position of each line-floor coordinate (origin at start, y towards the camera
    along the turned direction, x across it)."""
    towards = np.array([math.sin(turn), math.cos(turn)])
    right = np.array([math.cos(turn), -math.sin(turn)])
    origin = np.array(start)
    end = origin + across * right + deep * towards
    u, v, w = TRUE @ np.array([*towards, 0.0])
    line = floor.FloorLine(to_photo([origin])[0], to_photo([end])[0],
                           float(np.linalg.norm(end - origin)), (u / w, v / w), FOCAL_MM,
                           WIDTH / HEIGHT)
    return line, lambda x, y: tuple(origin + x * right + y * towards)


@pytest.mark.parametrize("turn", [0.0, 0.4, -0.3])
def test_a_line_and_its_vanishing_point_give_the_cameras_floor(turn):
    line, true_floor = line_measure(turn)
    matrix = floor.homography(line)
    for x, y in ((0, 0), (100, -200), (-50, 30), (200, 100)):
        (u, v, _), = floor.project(matrix, [(x, y)])
        (tu, tv), = to_photo([true_floor(x, y)])
        assert abs(u - tu) < 1e-9 and abs(v - tv) < 1e-9
    scene = floor.place(line, [floor.SizedSpot(floor.Spot(1, 50.0, -100.0, 20.0), 1, 100, 150)])
    expected = to_photo([true_floor(x, y) for x, y in
                         floor.floor_corners(floor.Spot(1, 50.0, -100.0, 20.0), 100, 150)])
    assert np.allclose(scene.carpets[0].corners, expected, atol=1e-9)
    assert scene.carpets[0].fit is None  # a line measures scale, not an area
    assert floor.load(floor.dump(scene)) == scene


def test_a_line_measured_with_another_focal_length_is_off_by_its_perspective():
    """The focal length is part of the measure: a phone's default (26 mm) on this camera
    (31 mm) still keeps the line's ends and their distance, and puts a point 1.5 m away within a
    few % of the photo."""
    line, true_floor = line_measure(0.0)
    default = floor.homography(dataclasses.replace(line, focal_length_mm=26.0))
    inverse = np.linalg.inv(default)
    ends = [inverse @ np.array([*point, 1.0]) for point in (line.start, line.end)]
    (x0, y0), (x1, y1) = ((end[0] / end[2], end[1] / end[2]) for end in ends)
    assert (x0, y0) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert math.hypot(x1, y1) == pytest.approx(line.length_cm, rel=1e-9)
    (u, v, _), = floor.project(default, [(0.0, -150.0)])
    (tu, tv), = to_photo([true_floor(0.0, -150.0)])
    assert 0.001 < math.hypot(u - tu, v - tv) < 0.05


def test_a_bad_line_is_refused():
    line, _ = line_measure(0.0)
    horizon = line.vanishing_point[1]
    for bad, message in (
            (dataclasses.replace(line, end=line.start), "at least 1 % of the photo apart"),
            (dataclasses.replace(line, end=(0.5, 1.2)), "end must lie inside the photo"),
            (dataclasses.replace(line, length_cm=0.0), "length_cm must be between 1"),
            (dataclasses.replace(line, vanishing_point=(0.5, math.inf)),
             "vanishing_point must be within"),
            (dataclasses.replace(line, vanishing_point=(0.5, 0.9)),
             "start is not below the floor's horizon"),
            (dataclasses.replace(line, focal_length_mm=5.0), "focal_length_mm must be between")):
        with pytest.raises(InvalidArgument) as refused:
            floor.place(bad, [floor.SizedSpot(floor.Spot(1, 0, 0, 0), 1, 100, 150)])
        assert message in refused.value.message, message
    assert horizon < 0  # the camera looks down: its horizon is above the photo
