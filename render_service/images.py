"""Limits of the pictures the render service accepts: only real PNG or JPEG files within the
limits below get in. Each refusal is INVALID_ARGUMENT naming the limit and the value, so a
caller can tell what to change. The limits also bound the renderer's work: the output's height
follows the room photo's shape, so a thin picture could otherwise ask for an enormous canvas.

`check_header` applies every limit from the file's header alone (no pixel decoded);
`check_image` then decodes the whole picture within the process's decode budget
(carpet_common.pictures). A submission checks the header, reserves its credit, then decodes:
a caller without credit never gets a picture decoded.
"""
from __future__ import annotations

from carpet_common.errors import InvalidArgument
from carpet_common.pictures import Header, decode_fully, read_header

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 16
# Longest side over shortest side. A room photo sets the output's shape (hd: 1600 px wide, so
# at most 6400 px high); a carpet picture only fills the carpet's outline, and runners are long.
MAX_ROOM_ASPECT = 4
MAX_CARPET_ASPECT = 10
# The plain room the local renderer draws when a render has no photo: 4:3.
GENERATED_ROOM_ASPECT = 4 / 3


def check_header(data: bytes, what: str = "image", max_aspect: int = MAX_ROOM_ASPECT) -> Header:
    if not data:
        raise InvalidArgument(f"{what} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidArgument(f"{what} is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} "
                              f"bytes ({MAX_IMAGE_BYTES // (1024 * 1024)} MB)")
    header = read_header(data, what)
    _check_shape(what, header.width, header.height, max_aspect)
    return header


def check_image(data: bytes, what: str = "image", max_aspect: int = MAX_ROOM_ASPECT) -> Header:
    """The header's limits, then every pixel decoded (a truncated or corrupt file fails)."""
    header = check_header(data, what, max_aspect)
    decode_fully(data, what, header)
    return header


def _check_shape(what: str, width: int, height: int, max_aspect: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidArgument(f"{what} has {width * height} pixels ({width}×{height}); the "
                              f"limit is {MAX_IMAGE_PIXELS}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidArgument(f"{what} is {width}×{height}; each side must be at least "
                              f"{MIN_IMAGE_SIDE} pixels")
    if max(width, height) > max_aspect * min(width, height):
        raise InvalidArgument(f"{what} is {width}×{height}; its longer side may be at most "
                              f"{max_aspect} times its shorter side")
