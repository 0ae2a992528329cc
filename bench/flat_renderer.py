"""The local renderer as it was before it took the room's light (a flat paste at a fixed
place), kept only as the bench's comparison for `render.local.*` (bench/renderer_latency.py)."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

from render_service.renderers import RenderedImage, RenderError, RenderRequest

# Output width per mode; a mode not listed here renders at the standard width.
WIDTH_BY_MODE = {"preview": 640, "standard": 1024, "hd": 1600}
STANDARD_WIDTH = 1024
ROOM_WIDTH_CM = 500  # what the bottom edge of the picture spans on the floor
HORIZON = 0.55  # where the floor meets the wall, as a fraction of the height
NEAR_EDGE = 0.93  # where the carpet's near edge lies


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
    horizon, near_y = height * HORIZON, height * NEAR_EDGE
    near_width = min(width * 0.95, width * width_cm / ROOM_WIDTH_CM)
    depth = length_cm / (length_cm + 300)  # longer carpets reach further, never the horizon
    far_y = near_y - (near_y - horizon) * depth
    far_width = near_width * (far_y - horizon) / (near_y - horizon) * 1.6
    far_width = min(far_width, near_width)
    center = width / 2
    return [(center - far_width / 2, far_y), (center + far_width / 2, far_y),
            (center + near_width / 2, near_y), (center - near_width / 2, near_y)]


class LocalRenderer:
    def render(self, request: RenderRequest) -> RenderedImage:
        width = WIDTH_BY_MODE.get(request.mode, STANDARD_WIDTH)
        try:
            carpet = Image.open(io.BytesIO(request.carpet_image)).convert("RGBA")
            if request.room_image:
                room = Image.open(io.BytesIO(request.room_image)).convert("RGB")
                height = max(1, round(room.height * width / room.width))
                room = room.resize((width, height), Image.Resampling.BILINEAR)
            else:
                height = width * 3 // 4
                room = generated_room(width, height)
        except OSError:
            raise RenderError("could not read the carpet or room picture") from None
        quad = carpet_quad(width, height, request.carpet_width_cm, request.carpet_length_cm)
        corners = [(0, 0), (carpet.width, 0), (carpet.width, carpet.height), (0, carpet.height)]
        placed = carpet.transform((width, height), Image.Transform.PERSPECTIVE,
                                  perspective_coefficients(quad, corners),
                                  Image.Resampling.BILINEAR, fillcolor=(0, 0, 0, 0))
        scene = room.convert("RGBA")
        scene.alpha_composite(placed)
        output = io.BytesIO()
        scene.convert("RGB").save(output, format="PNG", optimize=False)
        return RenderedImage(output.getvalue(), "image/png")
