"""The local renderer's picture judged on synthetic rooms whose truth is known
(`docs/render-api.md`): the carpet lands where it was placed (corners within 1 px), takes the
floor's light (a gradient and a hard shadow band continue across it within 15 %), its edges are
blended, nothing more than 2 px outside it changes; phone photos are turned upright and carpet
pictures are cropped, never stretched, to the carpet's proportions."""
import io

import numpy as np
from PIL import Image

from render_service.renderers import RenderRequest
from render_service.renderers.local import LocalRenderer, crop_to_proportions

WIDTH, HEIGHT = 640, 480  # the preview mode's size for a 4:3 room
BAND = (300, 372)  # rows of the hard shadow band
QUAD = ((0.25, 0.5), (0.75, 0.5), (0.75, 0.9), (0.25, 0.9))  # x 160..480, y 240..432


def png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=options.pop("format", "PNG"), **options)
    return out.getvalue()


def lit_floor() -> np.ndarray:
    """Grey floor, brighter to the right (0.6 → 1.0), half as bright in a hard band."""
    columns = 0.6 + 0.4 * np.arange(WIDTH) / WIDTH
    light = np.tile(columns, (HEIGHT, 1))
    light[BAND[0]:BAND[1], :] *= 0.5
    return np.repeat((200 * light)[..., None], 3, axis=2).round().astype(np.uint8)


def render(room: np.ndarray, carpet_colour=(200, 200, 200), placement=QUAD) -> np.ndarray:
    carpet = Image.new("RGB", (100, 100), carpet_colour)
    request = RenderRequest(job_id=1, mode="preview", carpet_image=png(carpet),
                            carpet_width_cm=100, carpet_length_cm=100,
                            room_image=png(Image.fromarray(room)), placement=placement)
    return np.asarray(Image.open(io.BytesIO(LocalRenderer().render(request).data)),
                      dtype=np.float32)


def luminance(picture: np.ndarray, x: int, y: int) -> float:
    return float(picture[y - 2:y + 3, x - 2:x + 3].mean())  # a 5x5 patch


def test_the_carpet_takes_the_floors_light():
    room = lit_floor()
    out = render(room)
    floor = room.astype(np.float32)
    # Shadow band against lit floor, at the same column, away from the band's edges.
    shadow, lit = (336, 320), (262, 320)
    carpet_ratio = luminance(out, lit[1], shadow[0]) / luminance(out, lit[1], lit[0])
    floor_ratio = luminance(floor, lit[1], shadow[0]) / luminance(floor, lit[1], lit[0])
    assert abs(carpet_ratio / floor_ratio - 1) <= 0.15, (carpet_ratio, floor_ratio)
    # The left-to-right gradient continues across the carpet too.
    carpet_ratio = luminance(out, 200, 262) / luminance(out, 440, 262)
    floor_ratio = luminance(floor, 200, 262) / luminance(floor, 440, 262)
    assert abs(carpet_ratio / floor_ratio - 1) <= 0.15, (carpet_ratio, floor_ratio)


def test_nothing_more_than_2px_outside_the_carpet_changes():
    room = lit_floor()
    out = render(room)
    changed = np.abs(out - room.astype(np.float32)).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    left, top, right, bottom = 160, 240, 480, 432
    assert xs.min() >= left - 2 and xs.max() <= right + 1 and ys.min() >= top - 2 \
        and ys.max() <= bottom + 1
    assert changed[top - 1, 300] and changed[bottom, 300]  # the contact shadow is there


def test_corners_land_on_the_requested_points_and_edges_are_blended():
    room = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    trapezoid = ((0.3512, 0.5031), (0.6418, 0.5031), (0.8527, 0.9044), (0.1473, 0.9044))
    out = render(room, carpet_colour=(0, 255, 0), placement=trapezoid)
    greenness = (out[..., 1] - out[..., 0]) / 255  # 0 on the floor, ~1 on the carpet
    covered = np.argwhere(greenness > 0.25)  # (y, x) of pixels mostly carpet
    for fx, fy in trapezoid:
        corner = np.array([fy * HEIGHT, fx * WIDTH])
        centres = covered + 0.5
        assert np.min(np.linalg.norm(centres - corner, axis=1)) <= 1.0 + 0.71, (fx, fy)
    # Along the slanted left edge, pixels are partly carpet and partly floor: in most rows
    # the pixel the edge crosses shows both.
    blended_rows = 0
    for row in range(260, 420):
        edge = out[row, 60:240, 1] - out[row, 60:240, 0]
        blended_rows += any(25 < value < 230 for value in edge)
    assert blended_rows > 160 * 0.6, blended_rows


def test_same_inputs_same_bytes():
    room = lit_floor()
    assert (render(room) == render(room)).all()


def test_phone_photos_are_turned_upright():
    landscape = Image.new("RGB", (400, 300), (90, 90, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": a portrait shot
    request = RenderRequest(job_id=1, mode="preview",
                            carpet_image=png(Image.new("RGB", (100, 150), (200, 0, 0))),
                            carpet_width_cm=100, carpet_length_cm=150,
                            room_image=png(landscape, format="JPEG", exif=exif))
    picture = Image.open(io.BytesIO(LocalRenderer().render(request).data))
    assert picture.size == (640, 853)  # portrait, as the phone showed it


def test_carpet_pictures_are_cropped_to_the_carpets_proportions():
    picture = Image.new("RGB", (200, 100), (0, 0, 255))
    picture.paste((0, 255, 0), (50, 0, 150, 100))
    cropped = crop_to_proportions(picture, width_cm=100, length_cm=100)
    assert cropped.size == (100, 100)
    colours = np.unique(np.asarray(cropped).reshape(-1, 3), axis=0)
    assert colours.tolist() == [[0, 255, 0]]  # the middle, not squeezed sides
    tall = crop_to_proportions(Image.new("RGB", (100, 300)), width_cm=120, length_cm=180)
    assert tall.size == (100, 150)
