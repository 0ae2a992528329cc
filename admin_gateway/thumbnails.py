"""Small pictures for the console's render list: made once from the rendered image by the
gateway and kept in a bounded in-memory cache (a finished render's image never changes, and the
caller's right to see it is checked on every request before the cache is read)."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict

from PIL import Image

from carpet_common.pictures import DECODES, read_header

THUMBNAIL_BOX = (320, 240)
JPEG_QUALITY = 72
CONTENT_TYPE = "image/jpeg"
CACHED = 2000  # entries, ~10 kB each


def make_thumbnail(image: bytes) -> bytes:
    """A JPEG of at most THUMBNAIL_BOX; the decode draws from the process's pixel budget (a
    JPEG is decoded at the smallest scale that still covers the box)."""
    header = read_header(image, "picture")
    with DECODES.decoding(header.pixels), Image.open(io.BytesIO(image)) as picture:
        picture.draft("RGB", THUMBNAIL_BOX)
        picture = picture.convert("RGB")
        picture.thumbnail(THUMBNAIL_BOX, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()


class ThumbnailCache:
    def __init__(self, capacity: int = CACHED):
        self._capacity = capacity
        self._entries: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: int) -> bytes | None:
        with self._lock:
            found = self._entries.get(job_id)
            if found is not None:
                self._entries.move_to_end(job_id)
            return found

    def put(self, job_id: int, thumbnail: bytes) -> None:
        with self._lock:
            self._entries[job_id] = thumbnail
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
