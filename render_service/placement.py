"""Where the carpet goes in the room photo (`docs/render-api.md`): four corners as fractions of the
picture's width and height, in the order far-left, far-right, near-right, near-left. Checked
once at submission; stored with the job as text; given to the renderers as it is."""
from __future__ import annotations

import json
import math

from carpet_common.errors import InvalidArgument

Corners = tuple[tuple[float, float], ...]
MIN_AREA = 0.002  # of the picture: a carpet smaller than this would be a few pixels
ORDER = "far-left, far-right, near-right, near-left"


def check_corners(points: list[tuple[float, float]]) -> Corners | None:
    """The corners to store (None without a placement), or InvalidArgument saying why not."""
    if not points:
        return None
    if len(points) != 4:
        raise InvalidArgument(f"placement needs exactly 4 carpet_corners ({ORDER}), "
                              f"not {len(points)}")
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise InvalidArgument("placement corners must lie inside the picture (0..1)")
    # With y pointing down, the order far-left, far-right, near-right, near-left turns
    # clockwise: every turn has the same (positive) sign when the quad is convex.
    turns = []
    for index in range(4):
        (ax, ay), (bx, by), (cx, cy) = (points[index], points[(index + 1) % 4],
                                        points[(index + 2) % 4])
        turns.append((bx - ax) * (cy - by) - (by - ay) * (cx - bx))
    if not all(turn > 0 for turn in turns):
        raise InvalidArgument(f"placement must be a convex quadrilateral, corners in the order "
                              f"{ORDER}")
    area = 0.5 * abs(sum(points[i][0] * points[(i + 1) % 4][1]
                         - points[(i + 1) % 4][0] * points[i][1] for i in range(4)))
    if area < MIN_AREA:
        raise InvalidArgument(f"placement is too small (under {MIN_AREA:.1%} of the picture)")
    return tuple((float(x), float(y)) for x, y in points)


def dump(corners: Corners | None) -> str:
    return json.dumps(corners) if corners else ""


def load(text: str | None) -> Corners | None:
    return tuple((x, y) for x, y in json.loads(text)) if text else None
