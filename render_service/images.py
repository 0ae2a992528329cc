"""Checking uploaded pictures by actually decoding them: only real PNG or JPEG files up to
10 MB (and a sane pixel count, so a small file cannot expand into gigabytes) get in."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from carpet_common.errors import InvalidArgument

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    content_type: str
    width: int
    height: int


def check_image(data: bytes, what: str = "image") -> CheckedImage:
    if not data:
        raise InvalidArgument(f"{what} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidArgument(f"{what} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format = image.format
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise InvalidArgument(f"{what} has too many pixels")
                image.load()  # decode every pixel: a truncated or corrupt file fails here
    except InvalidArgument:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise InvalidArgument(f"{what} is not a readable PNG or JPEG picture") from None
    if image_format not in CONTENT_TYPES:
        raise InvalidArgument(f"{what} must be PNG or JPEG")
    return CheckedImage(data, CONTENT_TYPES[image_format], width, height)
