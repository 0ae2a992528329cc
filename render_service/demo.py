"""A demo catalogue for a new database (`python -m render_service seed`, run by `make run`), so
a fresh clone renders at once: three carpets with pictures drawn here (deterministic, no files
to ship) and a room photo to place them in. Never touches a catalogue that has carpets."""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

from render_service import audit_outbox, catalogue
from render_service.models import Carpet, database


@dataclass(frozen=True)
class DemoCarpet:
    sku: str
    name: str
    width_cm: int
    length_cm: int
    material: str
    draw: str  # which pattern below


DEMO_CARPETS = (
    DemoCarpet("DEMO-KILIM-160x230", "Demo kilim", 160, 230, "wool", "kilim"),
    DemoCarpet("DEMO-MEDALLION-200x300", "Demo medallion", 200, 300, "wool", "medallion"),
    DemoCarpet("DEMO-RUNNER-80x250", "Demo runner", 80, 250, "cotton", "stripes"),
)
PIXELS_PER_CM = 2


def _kilim(draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    colours = [(150, 35, 40), (215, 170, 70), (35, 60, 110), (235, 225, 200)]
    band = height // 12
    for index, top in enumerate(range(0, height, band)):
        draw.rectangle([0, top, width, top + band], fill=colours[index % len(colours)])
        for x in range(0, width, band):  # a row of diamonds in each band
            middle = top + band // 2
            draw.polygon([(x, middle), (x + band // 2, top + 3), (x + band, middle),
                          (x + band // 2, top + band - 3)],
                         fill=colours[(index + 2) % len(colours)])


def _medallion(draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    draw.rectangle([0, 0, width, height], fill=(120, 25, 35))
    border = width // 10
    draw.rectangle([border, border, width - border, height - border], outline=(220, 190, 120),
                   width=border // 3)
    for scale, colour in ((0.36, (30, 45, 90)), (0.26, (220, 190, 120)), (0.12, (120, 25, 35))):
        rx, ry = width * scale, height * scale * 0.8
        centre_x, centre_y = width / 2, height / 2
        draw.polygon([(centre_x, centre_y - ry), (centre_x + rx, centre_y),
                      (centre_x, centre_y + ry), (centre_x - rx, centre_y)], fill=colour)


def _stripes(draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    colours = [(60, 80, 70), (200, 195, 180), (170, 95, 55)]
    stripe = height // 25
    for index, top in enumerate(range(0, height, stripe)):
        draw.rectangle([0, top, width, top + stripe], fill=colours[index % len(colours)])


PATTERNS = {"kilim": _kilim, "medallion": _medallion, "stripes": _stripes}


def carpet_picture(carpet: DemoCarpet) -> bytes:
    width, height = carpet.width_cm * PIXELS_PER_CM, carpet.length_cm * PIXELS_PER_CM
    picture = Image.new("RGB", (width, height))
    PATTERNS[carpet.draw](ImageDraw.Draw(picture), width, height)
    picture = picture.filter(ImageFilter.GaussianBlur(0.6))  # woven, not vector-sharp
    output = io.BytesIO()
    picture.save(output, format="PNG", optimize=True)
    return output.getvalue()


def room_photo() -> bytes:
    """A plain living room: a wall with a window's light, a wooden floor."""
    width, height = 1280, 960
    room = Image.new("RGB", (width, height), (214, 206, 192))
    draw = ImageDraw.Draw(room)
    horizon = int(height * 0.52)
    draw.rectangle([int(width * 0.62), int(height * 0.12), int(width * 0.86), horizon - 40],
                   fill=(240, 244, 248))  # the window
    for y in range(horizon, height):
        shade = int(140 - 50 * (y - horizon) / (height - horizon))
        draw.line([(0, y), (width, y)], fill=(shade + 45, shade + 15, shade - 25))
    for x in range(-width, 2 * width, 90):  # floor boards towards a vanishing point
        draw.line([(width / 2 + (x - width / 2) * 0.35, horizon), (x, height)],
                  fill=(95, 65, 40), width=2)
    output = io.BytesIO()
    room.filter(ImageFilter.GaussianBlur(1.0)).save(output, format="JPEG", quality=88)
    return output.getvalue()


def seed_demo_catalogue(now) -> list[Carpet]:
    """The demo carpets, when the catalogue is empty (else nothing: [])."""
    with database.atomic():
        if Carpet.select().exists():
            return []
        return [catalogue.create_carpet(
            organization_id=catalogue.SHARED, sku=carpet.sku, name=carpet.name,
            material=carpet.material, image=carpet_picture(carpet),
            sizes=[catalogue.SizeSpec(carpet.width_cm, carpet.length_cm)], idempotent=False,
            catalogues=catalogue.EVERY_CATALOGUE, now=now, who=audit_outbox.SEED).carpet
            for carpet in DEMO_CARPETS]
