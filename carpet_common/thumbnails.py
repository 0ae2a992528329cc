"""Small pictures: for the console (a render's, a carpet's) and the widget (a carpet's), made
once from the full picture and kept in a bounded in-memory cache by whoever serves them (the
picture behind a cached thumbnail never changes, and the caller's right to see it is checked
on every request before the cache is read); a shop's logo, reduced once when it is set and
stored so."""
from __future__ import annotations

import io

from PIL import Image

from carpet_common.pictures import DECODES, Header, decoded, read_header

THUMBNAIL_BOX = (320, 240)
JPEG_QUALITY = 72
CONTENT_TYPE = "image/jpeg"
CACHED = 2000  # thumbnails kept (carpet_common.lru), ~10 kB each


def make_thumbnail(image: bytes) -> bytes:
    """A JPEG of at most THUMBNAIL_BOX; the decode draws from the process's pixel budget (a
    JPEG is decoded at the smallest scale that still covers the box)."""
    header = read_header(image, "picture")
    with DECODES.decoding(header.pixels), Image.open(io.BytesIO(image)) as opened:
        opened.draft("RGB", THUMBNAIL_BOX)
        picture = opened.convert("RGB")
        picture.thumbnail(THUMBNAIL_BOX, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()


LOGO_BOX = (512, 256)


def make_logo(image: bytes, header: Header) -> tuple[bytes, str]:
    """A shop's logo reduced to at most LOGO_BOX, and its content type: a PNG stays a PNG (a
    logo's transparency is kept), a JPEG a JPEG. Decoded once, here: a file that is not a
    whole picture is INVALID_ARGUMENT."""
    with decoded(image, "the logo", header) as opened:
        keeps_alpha = opened.format == "PNG"
        picture = opened.convert("RGBA" if keeps_alpha else "RGB")
        picture.thumbnail(LOGO_BOX, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if keeps_alpha:
            picture.save(out, "PNG", optimize=True)
            return out.getvalue(), "image/png"
        picture.save(out, "JPEG", quality=85, optimize=True)
        return out.getvalue(), CONTENT_TYPE
