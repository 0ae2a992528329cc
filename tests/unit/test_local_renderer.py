"""The local renderer: a real picture, deterministic, the carpet scaled by its size."""
import io

import numpy as np
from PIL import Image

from render_service.renderers import RenderRequest
from render_service.renderers.local import LocalRenderer
from tests.fake_image_api import tiny_png

RED = (200, 20, 30)


def render(width_cm=160, length_cm=230, mode="preview", room=None):
    request = RenderRequest(job_id=1, mode=mode, carpet_image=tiny_png(RED, (60, 90)),
                            carpet_width_cm=width_cm, carpet_length_cm=length_cm,
                            room_image=room)
    return LocalRenderer().render(request)


def carpet_pixels(data: bytes) -> int:
    """Pixels that show the red carpet (lit by the room, so not exactly RED)."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 120) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).sum())


def test_output_is_a_png_of_the_mode_width_and_deterministic():
    first = render()
    assert first.content_type == "image/png"
    assert Image.open(io.BytesIO(first.data)).size == (640, 480)
    assert render().data == first.data
    assert Image.open(io.BytesIO(render(mode="hd").data)).size == (1600, 1200)


def test_bigger_carpets_cover_more_floor():
    small, large = carpet_pixels(render(80, 120).data), carpet_pixels(render(200, 300).data)
    assert 0 < small < large


def test_room_photo_keeps_its_shape():
    room = io.BytesIO()
    Image.new("RGB", (400, 400), (240, 240, 240)).save(room, format="JPEG")
    picture = Image.open(io.BytesIO(render(room=room.getvalue()).data))
    assert picture.size == (640, 640)
    assert picture.getpixel((5, 5))[0] > 200  # the photo, not the generated room
