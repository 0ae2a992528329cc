"""The built-in renderer: a fast, free preview that lays the carpet's picture in perspective on
the floor of the room photo (or of a plain generated room) — where the user placed it
(`placement`, `docs/render-api.md`) or at a default place scaled by the carpet's size — in the
room's light. No network; deterministic: the same inputs give the same PNG bytes.

What it does to look right (pixel work in numpy and Pillow's C paths, no per-pixel Python):
- orientation: phone photos are turned upright by their EXIF orientation first;
- proportions: a carpet picture whose proportions differ from its size in cm is centre-cropped
  to them (never stretched);
- light: the carpet takes the floor's lighting under it — the room's blurred luminance over the
  carpet's area, divided by its mean there, multiplies the carpet's colours, so shadows and
  brightness gradients of the photo continue across the carpet;
- edges: coverage from a 4× supersampled outline (anti-aliased), a slightly darker rim, and a
  soft contact shadow on the floor at most 2 px wide.

What it is not: it does not find the floor by itself, model the pile's depth, or hide the
carpet behind furniture; the external image API (`RENDERER=http`) is for photographic results.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from carpet_common.errors import InvalidArgument
from carpet_common.pictures import DECODES, read_header
from render_service.images import GENERATED_ROOM_ASPECT
from render_service.renderers import RenderedImage, RenderError, RenderRequest

# Output width per mode; a mode not listed here renders at the standard width.
WIDTH_BY_MODE = {"preview": 640, "standard": 1024, "hd": 1600}
STANDARD_WIDTH = 1024
ROOM_WIDTH_CM = 500  # what the bottom edge of the picture spans on the floor
HORIZON = 0.55  # where the floor meets the wall, as a fraction of the height
NEAR_EDGE = 0.93  # where the carpet's near edge lies
SUPERSAMPLE = 4  # the outline is drawn this many times larger, then averaged down
PAD = 4  # carpet edge pixels repeated around it before the warp
LIGHT_BLUR = 1 / 120  # the light estimate's blur radius, as a fraction of the width
GAIN_RANGE = (0.2, 1.8)  # how far the room's light may darken or brighten the carpet
RIM_DARKENING = 0.12  # the carpet's outermost pixel row
CONTACT_SHADOW = (0.28, 0.12)  # floor darkening 1 px and 2 px outside the carpet
# PNG compression: the preview is about speed, the larger modes about size.
PNG_LEVEL = {"preview": 1, "standard": 3, "hd": 3}
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _solve(matrix: list[list[float]], values: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting for the 8x8 perspective system."""
    size = len(values)
    rows = [row[:] + [value] for row, value in zip(matrix, values, strict=True)]
    for column in range(size):
        pivot = max(range(column, size), key=lambda r: abs(rows[r][column]))
        rows[column], rows[pivot] = rows[pivot], rows[column]
        if abs(rows[column][column]) < 1e-12:
            raise RenderError("carpet placement is degenerate")
        for row in range(size):
            if row != column:
                factor = rows[row][column] / rows[column][column]
                rows[row] = [a - factor * b for a, b in zip(rows[row], rows[column], strict=True)]
    return [rows[i][size] / rows[i][i] for i in range(size)]


def perspective_coefficients(destination, source) -> list[float]:
    """Coefficients PIL's PERSPECTIVE transform needs: they map each output (destination)
    point back to the source picture."""
    matrix, values = [], []
    for (x, y), (u, v) in zip(destination, source, strict=True):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        values.append(u)
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.append(v)
    return _solve(matrix, values)


def generated_room(width: int, height: int) -> Image.Image:
    room = Image.new("RGB", (width, height), (226, 220, 208))
    draw = ImageDraw.Draw(room)
    horizon = int(height * HORIZON)
    for y in range(horizon, height):  # a wooden floor, darker towards the viewer
        shade = int(150 - 40 * (y - horizon) / max(1, height - horizon))
        draw.line([(0, y), (width, y)], fill=(shade + 40, shade + 10, shade - 30))
    draw.line([(0, horizon), (width, horizon)], fill=(120, 110, 100), width=2)
    return room


def carpet_quad(width: int, height: int, width_cm: int, length_cm: int):
    """The default placement: centred on the floor, scaled by the carpet's size."""
    horizon, near_y = height * HORIZON, height * NEAR_EDGE
    near_width = min(width * 0.95, width * width_cm / ROOM_WIDTH_CM)
    depth = length_cm / (length_cm + 300)  # longer carpets reach further, never the horizon
    far_y = near_y - (near_y - horizon) * depth
    far_width = near_width * (far_y - horizon) / (near_y - horizon) * 1.6
    far_width = min(far_width, near_width)
    center = width / 2
    return [(center - far_width / 2, far_y), (center + far_width / 2, far_y),
            (center + near_width / 2, near_y), (center - near_width / 2, near_y)]


def upright(data: bytes, mode: str) -> Image.Image:
    """The picture as it was meant to be seen (EXIF orientation applied), in `mode`; no copy is
    made that is not needed."""
    image = Image.open(io.BytesIO(data))
    ImageOps.exif_transpose(image, in_place=True)
    return image if image.mode == mode else image.convert(mode)


def crop_to_proportions(carpet: Image.Image, width_cm: int, length_cm: int) -> Image.Image:
    """Centre-crop the picture to the carpet's width:length, so it is never stretched."""
    if width_cm <= 0 or length_cm <= 0:
        return carpet
    wanted = width_cm / length_cm
    actual = carpet.width / carpet.height
    if abs(actual - wanted) / wanted < 0.01:
        return carpet
    if actual > wanted:  # too wide: trim the sides
        keep = max(1, round(carpet.height * wanted))
        left = (carpet.width - keep) // 2
        return carpet.crop((left, 0, left + keep, carpet.height))
    keep = max(1, round(carpet.width / wanted))
    top = (carpet.height - keep) // 2
    return carpet.crop((0, top, carpet.width, top + keep))


def coverage(size: tuple[int, int], quad: Sequence[tuple[float, float]]) -> np.ndarray:
    """How much of each pixel the carpet covers (0..1): the outline drawn SUPERSAMPLE times
    larger and averaged down, so edges are anti-aliased."""
    width, height = size
    big = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    ImageDraw.Draw(big).polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in quad], fill=255)
    small = big.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def floor_light(luminance: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The room's light under the carpet, relative to its mean there: blurred luminance over
    its average where the carpet lies (1.0 = average light)."""
    inside = mask > 0.5
    mean = float(luminance[inside].mean()) if inside.any() else 0.0
    if mean < 1.0:
        return np.ones_like(luminance)
    return np.clip(luminance / mean, *GAIN_RANGE)


def _grow(solid: np.ndarray) -> np.ndarray:
    """The shape one pixel larger (8-neighbourhood), by shifted maxima."""
    grown = solid.copy()
    grown[1:, :] = np.maximum(grown[1:, :], solid[:-1, :])
    grown[:-1, :] = np.maximum(grown[:-1, :], solid[1:, :])
    wide = grown.copy()
    wide[:, 1:] = np.maximum(wide[:, 1:], grown[:, :-1])
    wide[:, :-1] = np.maximum(wide[:, :-1], grown[:, 1:])
    return wide


def _rings(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The carpet's outermost inner pixel row, and the floor 1 px and 2 px outside it."""
    inside = (mask >= 0.5).astype(np.float32)  # pixels mostly covered
    grown1 = _grow(inside)
    grown2 = _grow(grown1)
    shrunk = 1.0 - _grow(1.0 - inside)
    return inside - shrunk, grown1 - inside, grown2 - grown1


def _window(size: tuple[int, int], quad, margin: int) -> tuple[int, int, int, int]:
    """The quad's bounding box grown by `margin`, inside the picture."""
    xs, ys = [x for x, _ in quad], [y for _, y in quad]
    return (max(0, int(min(xs)) - margin), max(0, int(min(ys)) - margin),
            min(size[0], int(max(xs)) + 2 + margin), min(size[1], int(max(ys)) + 2 + margin))


def compose(room: Image.Image, carpet: Image.Image, quad: Sequence[tuple[float, float]],
            lit_by: Image.Image | None = None) -> Image.Image:
    """The room with the carpet laid on `quad` (pixel corners: far-left, far-right,
    near-right, near-left), lit by the room (`lit_by`: the bare room, when `room` already
    holds other carpets, so their colours do not light this one). Only the carpet's
    neighbourhood is computed."""
    radius = max(2.0, room.width * LIGHT_BLUR)
    # The light is estimated over a wider window than the carpet, so the blur near its edges
    # sees the floor around it, as in the whole picture.
    left, top, right, bottom = _window(room.size, quad, 3)
    wide = _window(room.size, quad, 3 + int(3 * radius))
    window = (right - left, bottom - top)
    local = [(x - left, y - top) for x, y in quad]
    # The carpet's edge pixels repeated around it: pixels the outline only partly covers
    # sample carpet, not emptiness, so their coverage alone decides how much carpet they show.
    padded = Image.fromarray(np.pad(np.asarray(carpet), ((PAD, PAD), (PAD, PAD), (0, 0)),
                                    mode="edge"), "RGBA")
    corners = [(PAD, PAD), (PAD + carpet.width, PAD), (PAD + carpet.width, PAD + carpet.height),
               (PAD, PAD + carpet.height)]
    warped = padded.transform(window, Image.Transform.PERSPECTIVE,
                              perspective_coefficients(local, corners),
                              Image.Resampling.BICUBIC, fillcolor=(0, 0, 0, 0))
    pixels = np.asarray(warped, dtype=np.float32)
    mask = coverage(window, local)
    alpha = mask * (pixels[..., 3] / 255.0)
    rim, outer1, outer2 = _rings(mask)
    blurred = (lit_by or room).crop(wide).convert("L").filter(ImageFilter.GaussianBlur(radius))
    luminance = np.asarray(blurred, dtype=np.float32)[top - wide[1]:bottom - wide[1],
                                                      left - wide[0]:right - wide[0]]
    light = floor_light(luminance, mask) * (1.0 - RIM_DARKENING * rim)
    shadow = 1.0 - (CONTACT_SHADOW[0] * outer1 + CONTACT_SHADOW[1] * outer2)
    floor = np.asarray(room.crop((left, top, right, bottom)), dtype=np.float32) * shadow[..., None]
    lit_carpet = pixels[..., :3] * light[..., None]
    blended = floor + (lit_carpet - floor) * alpha[..., None]
    scene = room.copy()
    scene.paste(Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), "RGB"),
                (left, top))
    return scene


def occluded(scene: Image.Image, room: Image.Image, occluders) -> Image.Image:
    """The room's own pixels inside each occluder's outline (what stands on the carpets),
    over the scene, with an anti-aliased edge (drawn SUPERSAMPLE× larger)."""
    width, height = scene.size
    mask = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    for polygon in occluders:
        draw.polygon([(x * width * SUPERSAMPLE, y * height * SUPERSAMPLE) for x, y in polygon],
                     fill=255)
    mask = mask.resize((width, height), Image.Resampling.BOX)
    return Image.composite(room, scene, mask)


class LocalRenderer:
    name = "local"

    def render(self, request: RenderRequest) -> RenderedImage:
        width = WIDTH_BY_MODE.get(request.mode, STANDARD_WIDTH)
        try:
            pictures = [request.carpet_image, *(layer.carpet_image
                                                for layer in request.extra_carpets)]
            pictures += [request.room_image] if request.room_image else []
            pixels = sum(read_header(data, "picture").pixels for data in pictures)
            # Decoding the inputs is what takes memory (tens of MB per picture); the budget is
            # the process's, shared with submissions. A worker waits for its share.
            with DECODES.decoding(pixels, patient=True):
                carpet = upright(request.carpet_image, "RGBA")
                others = [upright(layer.carpet_image, "RGBA")
                          for layer in request.extra_carpets]
                if request.room_image:
                    room = upright(request.room_image, "RGB")
                    height = max(1, round(room.height * width / room.width))
                    # reducing_gap: a fast integer reduction first (a phone photo is several
                    # times the output's width), then the filter over what is left.
                    room = room.resize((width, height), Image.Resampling.BILINEAR,
                                       reducing_gap=2.0)
                else:
                    height = round(width / GENERATED_ROOM_ASPECT)
                    room = generated_room(width, height)
        except (OSError, InvalidArgument):
            raise RenderError("could not read the carpet or room picture") from None
        carpet = crop_to_proportions(carpet, request.carpet_width_cm, request.carpet_length_cm)
        if request.placement:
            quad = [(x * width, y * height) for x, y in request.placement]
        else:
            quad = carpet_quad(width, height, request.carpet_width_cm, request.carpet_length_cm)
        layers = [(carpet, quad)] + [
            (crop_to_proportions(picture, layer.carpet_width_cm, layer.carpet_length_cm),
             [(x * width, y * height) for x, y in layer.placement])
            for picture, layer in zip(others, request.extra_carpets, strict=True)]
        # Farther carpets first (their nearest point higher in the picture), so a nearer one's
        # rim and contact shadow lie over a farther one's, as they would.
        scene = room
        for picture, corners in sorted(layers, key=lambda layer: max(y for _, y in layer[1])):
            scene = compose(scene, picture, corners, lit_by=room)
        if request.occluders:
            scene = occluded(scene, room, request.occluders)
        output = io.BytesIO()
        scene.save(output, format="PNG", compress_level=PNG_LEVEL.get(request.mode, 3))
        return RenderedImage(output.getvalue(), "image/png")
