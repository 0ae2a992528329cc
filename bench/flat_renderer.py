"""The local renderer as it was before it took the room's light: the carpet pasted flat at the
default place, hard-edged, PNG at zlib's default level. Kept only as the bench's comparison for
`render.local.*` (bench/renderer_latency.py); the geometry is the current renderer's own."""
from __future__ import annotations

import io

from PIL import Image

from render_service.renderers import RenderedImage, RenderError, RenderRequest
from render_service.renderers.local import (
    STANDARD_WIDTH,
    WIDTH_BY_MODE,
    carpet_quad,
    generated_room,
    perspective_coefficients,
)


class LocalRenderer:
    name = "flat"

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
