"""Reading pictures without letting them take the process's memory.

Two steps, in this order wherever a picture comes from (an upload, the image API, a stored
render):

1. `read_header` parses only the file's header: its format and size, with no pixel decoded.
   Everything a caller can be refused for by size is refused here.
2. Decoding happens inside `DECODES.decoding(pixels)`: one budget per process of pixels being
   decoded at once (`DECODE_BUDGET_MP` megapixels). A progressive 4:4:4 JPEG costs about
   10 MB per megapixel while it decodes (libjpeg keeps every DCT coefficient, 6 bytes a pixel,
   next to the 3-byte RGB result), so the budget bounds that memory however many requests
   arrive at once; a decode waits for its share, and one that waits too long is refused with
   RESOURCE_EXHAUSTED (the caller retries later) instead of queueing without end.

After a large decode the freed memory is handed back to the system (`malloc_trim`): glibc
keeps freed blocks in per-thread arenas, so without it each gRPC thread that once decoded a
big picture would keep that memory, and the budget would bound the work but not the process.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import ExifTags, Image

from carpet_common.errors import InvalidArgument, ResourceExhausted

DEFAULT_BUDGET_PIXELS = 48_000_000
BUDGET_WAIT_S = 20.0
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
TRIM_AFTER_PIXELS = 4_000_000  # decodes this large give their memory back when done


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    height: int
    turned: bool = False  # its EXIF orientation shows it a quarter turn round (5 to 8)

    @property
    def upright_aspect(self) -> float:
        """Width over height as the picture is meant to be seen."""
        return self.height / self.width if self.turned else self.width / self.height

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def read_header(data: bytes, what: str) -> Header:
    """Format and size from the header alone; INVALID_ARGUMENT unless it is a PNG or JPEG."""
    try:
        with warnings.catch_warnings():
            # Size limits are the caller's to apply on the header; PIL's own bomb check would
            # only duplicate them with a less helpful message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                # A JPEG's EXIF sits before its pixels; PIL would decode a whole PNG to look
                # for one after them, so a PNG is taken as it is stored.
                orientation = (image.getexif().get(ExifTags.Base.Orientation, 1)
                               if image.format == "JPEG" else 1)
                header = Header(image.format or "", *image.size,
                                turned=orientation in (5, 6, 7, 8))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidArgument(f"{what} is not a readable PNG or JPEG picture") from None
    if header.format not in CONTENT_TYPES:
        raise InvalidArgument(f"{what} must be PNG or JPEG, not {header.format}")
    return header


class DecodeBudget:
    """At most `limit` pixels decoded at once in this process. A decode larger than the whole
    budget takes all of it (it runs alone), so nothing waits forever."""

    def __init__(self, limit: int = DEFAULT_BUDGET_PIXELS, patience_s: float = BUDGET_WAIT_S):
        self._limit = limit
        self.patience_s = patience_s  # how long a caller that can be told to retry waits
        self._in_use = 0
        self._changed = threading.Condition()

    def configure(self, limit: int) -> None:
        with self._changed:
            self._limit = limit
            self._changed.notify_all()

    @contextmanager
    def decoding(self, pixels: int, *, patient: bool = False) -> Iterator[None]:
        """Hold `pixels` of the budget while the body decodes. `patient` (background work)
        waits as long as it takes; otherwise RESOURCE_EXHAUSTED after `patience_s`."""
        share = max(1, min(pixels, self._limit))
        deadline = None if patient else time.monotonic() + self.patience_s
        with self._changed:
            while self._in_use + share > self._limit:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ResourceExhausted(
                        "too many pictures are being read at once; try again shortly",
                        retry_after_s=2, reason="DECODE_BUDGET_EXHAUSTED")
                self._changed.wait(remaining)
            self._in_use += share
        try:
            yield
        finally:
            if share >= TRIM_AFTER_PIXELS:
                _return_freed_memory()
            with self._changed:
                self._in_use -= share
                self._changed.notify_all()


def _load_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _load_trim()


def _return_freed_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# The process's one budget; each process's entry point sets its size from DECODE_BUDGET_MP.
DECODES = DecodeBudget()


@contextmanager
def decoded(data: bytes, what: str, header: Header) -> Iterator[Image.Image]:
    """The picture with every pixel decoded (a truncated or corrupt file fails here, as
    INVALID_ARGUMENT), within the budget while the caller uses it."""
    with DECODES.decoding(header.pixels):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise InvalidArgument(f"{what} is not a readable PNG or JPEG picture") from None
        with image:
            yield image


def decode_fully(data: bytes, what: str, header: Header) -> None:
    """Decode every pixel (a truncated or corrupt file fails here) within the budget."""
    with decoded(data, what, header):
        pass
