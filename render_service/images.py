"""Checking uploaded pictures by actually decoding them: only real PNG or JPEG files within the
limits below get in. Each refusal is INVALID_ARGUMENT naming the limit and the value, so a
caller can tell what to change. The limits also bound the renderer's work: the output's height
follows the room photo's shape, so a thin picture could otherwise ask for an enormous canvas.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from carpet_common.errors import InvalidArgument

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 16
# Longest side over shortest side. A room photo sets the output's shape (hd: 1600 px wide, so
# at most 6400 px high); a carpet picture only fills the carpet's outline, and runners are long.
MAX_ROOM_ASPECT = 4
MAX_CARPET_ASPECT = 10
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    content_type: str
    width: int
    height: int


def check_image(data: bytes, what: str = "image", max_aspect: int = MAX_ROOM_ASPECT
                ) -> CheckedImage:
    if not data:
        raise InvalidArgument(f"{what} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidArgument(f"{what} is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} "
                              f"bytes ({MAX_IMAGE_BYTES // (1024 * 1024)} MB)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format = image.format
                width, height = image.size
                _check_shape(what, width, height, max_aspect)
                image.load()  # decode every pixel: a truncated or corrupt file fails here
    except InvalidArgument:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise InvalidArgument(f"{what} is not a readable PNG or JPEG picture") from None
    if image_format not in CONTENT_TYPES:
        raise InvalidArgument(f"{what} must be PNG or JPEG, not {image_format}")
    return CheckedImage(data, CONTENT_TYPES[image_format], width, height)


def _check_shape(what: str, width: int, height: int, max_aspect: int) -> None:
    """Before any pixel is decoded: the header's size is all it takes to refuse."""
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidArgument(f"{what} has {width * height} pixels ({width}×{height}); the "
                              f"limit is {MAX_IMAGE_PIXELS}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidArgument(f"{what} is {width}×{height}; each side must be at least "
                              f"{MIN_IMAGE_SIDE} pixels")
    if max(width, height) > max_aspect * min(width, height):
        raise InvalidArgument(f"{what} is {width}×{height}; its longer side may be at most "
                              f"{max_aspect} times its shorter side")
