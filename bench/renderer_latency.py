"""`render.local.<mode>[.room]`: one image at a time through the local renderer, in this
process, against the flat renderer it replaced (bench/flat_renderer.py) in the same run. The
target: at most 2× the flat renderer's cost at hd, below it for preview. Also writes a
before/after picture of a room with a light gradient and a hard shadow band."""
from __future__ import annotations

import io
import os
import statistics
import time

import numpy as np
from PIL import Image

from bench.flat_renderer import LocalRenderer as FlatRenderer
from render_service.renderers import RenderRequest
from render_service.renderers.local import LocalRenderer

ROUNDS = 15
MODES = ("preview", "standard", "hd")


def _png(image: Image.Image) -> bytes:
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


def sample_carpet() -> bytes:
    """A kilim-like pattern, 240×360 (a 160×240 cm carpet)."""
    y, x = np.mgrid[0:360, 0:240]
    pattern = ((x // 24 + y // 24) % 2).astype(np.uint8)
    colours = np.array([[150, 30, 40], [230, 200, 150]], dtype=np.uint8)
    border = (x < 12) | (x >= 228) | (y < 12) | (y >= 348)
    picture = colours[pattern]
    picture[border] = (40, 40, 90)
    return _png(Image.fromarray(picture, "RGB"))


def sample_room() -> bytes:
    """A 1600×1200 room: wall, a floor brighter towards a window on the right, and the hard
    shadow of a sofa across the floor."""
    height, width = 1200, 1600
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 0.55 + 0.45 * x / width
    floor = y > height * 0.55
    light = np.where(floor & (y > 960) & (y < 1040) & (x < 820), light * 0.45, light)
    base = np.where(floor[..., None], [[[170, 130, 90]]], [[[225, 220, 210]]])
    return _png(Image.fromarray(np.clip(base * light[..., None], 0, 255).astype(np.uint8)))


def _p50_ms(renderer, request: RenderRequest) -> float:
    renderer.render(request)  # warm
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        renderer.render(request)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure() -> list[dict]:
    carpet, room = sample_carpet(), sample_room()
    rows = []
    for mode in MODES:
        for suffix, room_image in (("", None), (".room", room)):
            request = RenderRequest(job_id=1, mode=mode, carpet_image=carpet,
                                    carpet_width_cm=160, carpet_length_cm=240,
                                    room_image=room_image)
            flat, local = _p50_ms(FlatRenderer(), request), _p50_ms(LocalRenderer(), request)
            rows.append({"name": f"render.local.{mode}{suffix}", "p50_ms": round(local, 2),
                         "ceiling": f"render.flat.{mode}{suffix}",
                         "ceiling_p50_ms": round(flat, 2),
                         "cost_ratio": round(local / flat, 3)})
            print(f"render.local.{mode}{suffix:6s} p50 {local:7.1f} ms   flat {flat:7.1f} ms   "
                  f"cost ×{local / flat:.2f}", flush=True)
    return rows


def before_after(path: str) -> None:
    """Flat paste (left) and the lit renderer (right), standard mode, side by side."""
    request = RenderRequest(job_id=1, mode="standard", carpet_image=sample_carpet(),
                            carpet_width_cm=160, carpet_length_cm=240,
                            room_image=sample_room())
    pictures = [Image.open(io.BytesIO(renderer.render(request).data))
                for renderer in (FlatRenderer(), LocalRenderer())]
    width, height = pictures[0].size
    pair = Image.new("RGB", (width * 2 + 16, height), (255, 255, 255))
    pair.paste(pictures[0], (0, 0))
    pair.paste(pictures[1], (width + 16, 0))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pair.resize((pair.width // 2, pair.height // 2), Image.Resampling.LANCZOS).save(path)


# A measured floor in the sample room: a 200 × 300 cm rectangle in the middle of its floor.
SAMPLE_FLOOR = ((0.3, 0.62), (0.7, 0.62), (0.82, 0.95), (0.18, 0.95))


def measure_carpets() -> list[dict]:
    """`render.local.hd.floor.<n>`: hd with the room photo and 1 or 3 carpets placed on a
    measured floor, against today's single four-corner carpet (render.local.hd.room) in the
    same run. The target: three carpets at most 1.5× one."""
    from render_service import floor
    from render_service.renderers import CarpetLayer

    carpet, room = sample_carpet(), sample_room()
    measure = floor.Floor(SAMPLE_FLOOR, 200.0, 300.0)
    sizes = [(100, 150, 55.0, 150.0, 0.0), (80, 150, 150.0, 120.0, 0.0),
             (60, 90, 150.0, 250.0, 90.0)]
    scene = floor.place(measure, [floor.SizedSpot(floor.Spot(index, x, y, turn), index, w, h)
                                  for index, (w, h, x, y, turn) in enumerate(sizes, 1)])
    single = RenderRequest(job_id=1, mode="hd", carpet_image=carpet, carpet_width_cm=160,
                           carpet_length_cm=240, room_image=room)
    baseline = _p50_ms(LocalRenderer(), single)
    rows = []
    for count in (1, 3):
        first, *others = scene.carpets[:count]
        request = RenderRequest(
            job_id=1, mode="hd", carpet_image=carpet, carpet_width_cm=first.width_cm,
            carpet_length_cm=first.length_cm, room_image=room, placement=first.corners,
            extra_carpets=tuple(CarpetLayer(carpet, other.width_cm, other.length_cm,
                                            other.corners) for other in others))
        took = _p50_ms(LocalRenderer(), request)
        rows.append({"name": f"render.local.hd.floor.{count}", "p50_ms": round(took, 2),
                     "ceiling": "render.local.hd.room", "ceiling_p50_ms": round(baseline, 2),
                     "cost_ratio": round(took / baseline, 3)})
        print(f"render.local.hd.floor.{count} p50 {took:7.1f} ms   one carpet today "
              f"{baseline:7.1f} ms   cost ×{took / baseline:.2f}", flush=True)
    return rows


if __name__ == "__main__":
    measure_carpets()
