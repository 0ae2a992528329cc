"""True-size placement on a measured floor (`docs/render-api.md`, "A measured floor").

The floor is measured in one of two ways. A rectangle: the user marks a rectangle they know
on the floor of the photo (a rug, a tile grid, a marked area): its four corners as fractions
of the photo, far-left, far-right, near-right, near-left, and its real width (far-left to
far-right) and length (far-left to near-left) in cm. The four point pairs fix the floor
plane's homography: floor centimetres -> photo fractions.

Floor coordinates: origin at the rectangle's far-left corner, x towards far-right, y towards
near-left, in cm. A carpet is placed by its size (the chosen size variant), its centre and its
rotation (at 0 its width runs along x, its length along y; positive turns x towards y); its
corners in the photo follow from the homography, so a carpet twice as long covers twice the
floor whatever the perspective. Up to MAX_CARPETS carpets share one render; they may not overlap
on the floor, and each must stay inside the photo. How each lies against the measured
rectangle (its clearance to each edge, negative where it sticks out) is reported, not refused:
the rectangle is a measure, not a wall.

A line (`FloorLine`), for a photo without a rectangle to mark: two points on the floor, the real
distance between them, and the vanishing point of the floor's lines that run away from the
camera. With a phone photo's camera (its principal point at the centre, square pixels, held
level, a known focal length) that fixes the floor plane's homography too; floor coordinates
then start at the first point, y runs towards the camera along those lines and x across them.
A line measures scale, not an area: there is no fit to report.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from carpet_common.errors import InvalidArgument
from render_service.placement import check_corners

MAX_CARPETS = 3
MAX_OCCLUDERS = 20
MAX_OCCLUDER_POINTS = 100
MAX_FLOOR_CM = 100_000.0
CORNER_NAMES = ("far-left", "far-right", "near-right", "near-left")
# A phone's main camera, in 35 mm terms, when the caller does not say; the 35 mm frame's diagonal.
DEFAULT_FOCAL_LENGTH_MM = 26.0
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
FOCAL_LENGTH_RANGE_MM = (10.0, 300.0)
MAX_VANISHING_POINT = 50.0  # fractions of the photo: farther is a view straight down
OVERLAP_TOLERANCE_CM = 0.5  # carpets laid edge to edge touch; more than this is an overlap

Point = tuple[float, float]


@dataclass(frozen=True)
class Floor:
    rectangle: tuple[Point, ...]  # photo fractions, far-left, far-right, near-right, near-left
    width_cm: float
    length_cm: float


@dataclass(frozen=True)
class FloorLine:
    """Two points on the floor (photo fractions), the real distance between them, and where the
    floor's lines running away from the camera meet (photo fractions, may lie outside it)."""

    start: Point
    end: Point
    length_cm: float
    vanishing_point: Point
    focal_length_mm: float = DEFAULT_FOCAL_LENGTH_MM  # 35 mm terms
    photo_aspect: float = 4 / 3  # the upright photo's width over its height


Measure = Floor | FloorLine


@dataclass(frozen=True)
class Spot:
    """Where one carpet goes on the floor, as asked."""

    carpet_size_id: int
    center_x_cm: float
    center_y_cm: float
    rotation_deg: float


@dataclass(frozen=True)
class Fit:
    inside_floor: bool
    clearance_left_cm: float
    clearance_right_cm: float
    clearance_far_cm: float
    clearance_near_cm: float


@dataclass(frozen=True)
class PlacedCarpet:
    carpet_id: int
    carpet_size_id: int
    width_cm: int
    length_cm: int
    spot: Spot
    corners: tuple[Point, ...]  # photo fractions, far-left, far-right, near-right, near-left
    fit: Fit | None  # None on a floor measured by a line: no edges to measure against


@dataclass(frozen=True)
class Scene:
    """What a render on a measured floor holds: kept with its job as JSON."""

    floor: Measure
    carpets: tuple[PlacedCarpet, ...]
    occluders: tuple[tuple[Point, ...], ...]


def check_floor(floor: Floor) -> Floor:
    if len(floor.rectangle) != 4:
        raise InvalidArgument(f"floor needs exactly 4 rectangle points ({', '.join(CORNER_NAMES)})"
                              f", not {len(floor.rectangle)}")
    try:
        check_corners(list(floor.rectangle))
    except InvalidArgument as error:
        raise InvalidArgument(f"floor rectangle: {error.message.removeprefix('placement ')}"
                              ) from None
    for value, what in ((floor.width_cm, "width_cm"), (floor.length_cm, "length_cm")):
        if not (math.isfinite(value) and 1.0 <= value <= MAX_FLOOR_CM):
            raise InvalidArgument(f"floor {what} must be between 1 and {MAX_FLOOR_CM:,.0f} cm")
    return floor


def check_line(line: FloorLine) -> FloorLine:
    for point, what in ((line.start, "start"), (line.end, "end")):
        if not all(math.isfinite(value) and 0.0 <= value <= 1.0 for value in point):
            raise InvalidArgument(f"floor line {what} must lie inside the photo (0..1)")
    if math.dist(line.start, line.end) < 0.01:
        raise InvalidArgument("floor line start and end must be at least 1 % of the photo apart")
    if not (math.isfinite(line.length_cm) and 1.0 <= line.length_cm <= MAX_FLOOR_CM):
        raise InvalidArgument(f"floor line length_cm must be between 1 and {MAX_FLOOR_CM:,.0f} cm")
    if not all(math.isfinite(value) and abs(value) <= MAX_VANISHING_POINT
               for value in line.vanishing_point):
        raise InvalidArgument(f"floor line vanishing_point must be within "
                              f"{MAX_VANISHING_POINT:.0f} photo widths of the photo")
    low, high = FOCAL_LENGTH_RANGE_MM
    if not low <= line.focal_length_mm <= high:
        raise InvalidArgument(f"floor line focal_length_mm must be between {low:.0f} and "
                              f"{high:.0f} (35 mm terms; 0: {DEFAULT_FOCAL_LENGTH_MM:.0f})")
    horizon = line.vanishing_point[1]
    for point, what in ((line.start, "start"), (line.end, "end")):
        # A floor point lies below the horizon, the level line through the vanishing point.
        if point[1] <= horizon + 0.005:
            raise InvalidArgument(f"floor line {what} is not below the floor's horizon (the "
                                  f"vanishing point's height, y {horizon:.0%}): mark points on "
                                  f"the floor and where its lines meet")
    return line


def homography(floor: Measure) -> np.ndarray:
    """The 3×3 matrix taking floor cm (x, y, 1) to photo fractions (homogeneous)."""
    if isinstance(floor, FloorLine):
        return _line_homography(floor)
    source = ((0.0, 0.0), (floor.width_cm, 0.0), (floor.width_cm, floor.length_cm),
              (0.0, floor.length_cm))
    rows, values = [], []
    for (x, y), (u, v) in zip(source, floor.rectangle, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    try:
        solved = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(values))
    except np.linalg.LinAlgError:
        raise InvalidArgument("floor rectangle is degenerate") from None
    return np.append(solved, 1.0).reshape(3, 3)


def _line_homography(line: FloorLine) -> np.ndarray:
    """The camera of a level phone photo, in pixels of a photo `photo_aspect` wide and 1 high:
    the principal point at the centre, the focal length from its 35 mm equivalent over the
    diagonal. The horizon is the level line through the vanishing point, so the floor's normal
    is K^T·horizon; the two points' rays meet the floor (camera height 1), their distance gives
    the scale; y runs against the vanishing direction (towards the camera), x = y × normal."""
    width, height = line.photo_aspect, 1.0
    focal = line.focal_length_mm / FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)
    intrinsic = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(intrinsic)

    def ray(point: Point) -> np.ndarray:
        direction: np.ndarray = inverse @ np.array([point[0] * width, point[1] * height, 1.0])
        return direction

    normal = intrinsic.T @ np.array([0.0, 1.0, -line.vanishing_point[1] * height])
    normal /= np.linalg.norm(normal)
    start, end = (ray(point) / (normal @ ray(point)) for point in (line.start, line.end))
    scale = line.length_cm / float(np.linalg.norm(end - start))
    towards_camera = -ray(line.vanishing_point)
    towards_camera /= np.linalg.norm(towards_camera)
    across = np.cross(towards_camera, normal)
    to_pixels = intrinsic @ np.column_stack([across, towards_camera, start * scale])
    matrix: np.ndarray = np.diag([1 / width, 1 / height, 1.0]) @ to_pixels
    return matrix


def floor_corners(spot: Spot, width_cm: float, length_cm: float) -> list[Point]:
    """The carpet's corners on the floor (cm), far-left, far-right, near-right, near-left."""
    angle = math.radians(spot.rotation_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in ((-width_cm / 2, -length_cm / 2), (width_cm / 2, -length_cm / 2),
                   (width_cm / 2, length_cm / 2), (-width_cm / 2, length_cm / 2)):
        corners.append((spot.center_x_cm + dx * cos - dy * sin,
                        spot.center_y_cm + dx * sin + dy * cos))
    return corners


def project(matrix: np.ndarray, points: Sequence[Point]) -> list[tuple[float, float, float]]:
    """(u, v, w) of each floor point: the photo fractions and the homogeneous weight (its sign
    says which side of the horizon the point is on)."""
    result = []
    for x, y in points:
        u, v, w = matrix @ np.array([x, y, 1.0])
        result.append((float(u / w) if w else math.inf, float(v / w) if w else math.inf,
                       float(w)))
    return result


def fit_of(corners_cm: Sequence[Point], floor: Floor) -> Fit:
    xs, ys = [x for x, _ in corners_cm], [y for _, y in corners_cm]
    clearances = (min(xs), floor.width_cm - max(xs), min(ys), floor.length_cm - max(ys))
    left, right, far, near = (round(value, 1) for value in clearances)
    return Fit(all(value >= -0.05 for value in clearances), left, right, far, near)


def overlap_cm(first: Sequence[Point], second: Sequence[Point]) -> float:
    """How deep two convex outlines on the floor overlap (0: apart or touching), by the
    separating-axis test: the smallest overlap of their shadows over every edge's normal."""
    deepest = math.inf
    for shape in (first, second):
        for index in range(len(shape)):
            (ax, ay), (bx, by) = shape[index], shape[(index + 1) % len(shape)]
            normal = (ay - by, bx - ax)
            length = math.hypot(*normal)
            if length == 0:
                continue
            axis = (normal[0] / length, normal[1] / length)
            a = [x * axis[0] + y * axis[1] for x, y in first]
            b = [x * axis[0] + y * axis[1] for x, y in second]
            shared = min(max(a), max(b)) - max(min(a), min(b))
            if shared <= 0:
                return 0.0
            deepest = min(deepest, shared)
    return deepest


@dataclass(frozen=True)
class SizedSpot:
    """A spot with the size it names, as the catalogue has it."""

    spot: Spot
    carpet_id: int
    width_cm: int
    length_cm: int


def place(floor: Measure, spots: Sequence[SizedSpot],
          occluders: Sequence[Sequence[Point]] = ()) -> Scene:
    """Every carpet's corners in the photo and its fit, or InvalidArgument naming the carpet
    (by its position in the request, its size) and the numbers."""
    floor = check_line(floor) if isinstance(floor, FloorLine) else check_floor(floor)
    if not 1 <= len(spots) <= MAX_CARPETS:
        raise InvalidArgument(f"a render on a measured floor has 1 to {MAX_CARPETS} carpets")
    matrix = homography(floor)
    horizon_side = np.sign(project(matrix, [(0.0, 0.0)])[0][2])
    placed: list[PlacedCarpet] = []
    outlines: list[list[Point]] = []
    for number, sized in enumerate(spots, start=1):
        spot = sized.spot
        if not all(math.isfinite(value) for value in (spot.center_x_cm, spot.center_y_cm,
                                                      spot.rotation_deg)) \
                or max(abs(spot.center_x_cm), abs(spot.center_y_cm)) > MAX_FLOOR_CM:
            raise InvalidArgument(f"carpet {number}: centre and rotation must be finite numbers "
                                  f"within {MAX_FLOOR_CM:,.0f} cm")
        name = f"carpet {number} ({sized.width_cm} × {sized.length_cm} cm)"
        on_floor = floor_corners(spot, sized.width_cm, sized.length_cm)
        in_photo = project(matrix, on_floor)
        for corner, (u, v, w) in zip(CORNER_NAMES, in_photo, strict=True):
            if np.sign(w) != horizon_side:
                raise InvalidArgument(f"{name} reaches beyond the floor's horizon at its "
                                      f"{corner} corner: move it nearer")
            if not (0.0 <= u <= 1.0 and 0.0 <= v <= 1.0):
                raise InvalidArgument(
                    f"{name} leaves the photo: its {corner} corner would be at "
                    f"x {u:.0%}, y {v:.0%} of the photo; move it or choose a smaller size")
        corners = tuple((u, v) for u, v, _ in in_photo)
        try:
            check_corners(list(corners))
        except InvalidArgument as error:
            raise InvalidArgument(f"{name}: {error.message}") from None
        for other_number, other in enumerate(outlines, start=1):
            depth = overlap_cm(on_floor, other)
            if depth > OVERLAP_TOLERANCE_CM:
                raise InvalidArgument(f"carpets {other_number} and {number} overlap by about "
                                      f"{depth:.0f} cm on the floor: move them apart")
        outlines.append(on_floor)
        fit = fit_of(on_floor, floor) if isinstance(floor, Floor) else None
        placed.append(PlacedCarpet(sized.carpet_id, spot.carpet_size_id, sized.width_cm,
                                   sized.length_cm, spot, corners, fit))
    return Scene(floor, tuple(placed), check_occluders(occluders))


def check_occluders(polygons: Sequence[Sequence[Point]]) -> tuple[tuple[Point, ...], ...]:
    """Outlines of what stands on the carpets (a sofa's legs), drawn back over them."""
    if len(polygons) > MAX_OCCLUDERS:
        raise InvalidArgument(f"at most {MAX_OCCLUDERS} occluders")
    checked = []
    for number, polygon in enumerate(polygons, start=1):
        if not 3 <= len(polygon) <= MAX_OCCLUDER_POINTS:
            raise InvalidArgument(f"occluder {number} needs 3 to {MAX_OCCLUDER_POINTS} points")
        for x, y in polygon:
            if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= 1 and 0 <= y <= 1):
                raise InvalidArgument(f"occluder {number}: points must lie inside the photo "
                                      f"(0..1)")
        checked.append(tuple((float(x), float(y)) for x, y in polygon))
    return tuple(checked)


def dump(scene: Scene | None) -> str:
    return json.dumps(asdict(scene), separators=(",", ":")) if scene else ""


def load(text: str | None) -> Scene | None:
    if not text:
        return None
    data = json.loads(text)
    floor = data["floor"]
    measure: Measure
    if "rectangle" in floor:
        measure = Floor(tuple(tuple(point) for point in floor["rectangle"]), floor["width_cm"],
                        floor["length_cm"])
    else:
        measure = FloorLine(tuple(floor["start"]), tuple(floor["end"]), floor["length_cm"],
                            tuple(floor["vanishing_point"]), floor["focal_length_mm"],
                            floor["photo_aspect"])
    return Scene(
        measure,
        tuple(PlacedCarpet(carpet["carpet_id"], carpet["carpet_size_id"], carpet["width_cm"],
                           carpet["length_cm"], Spot(**carpet["spot"]),
                           tuple(tuple(point) for point in carpet["corners"]),
                           Fit(**carpet["fit"]) if carpet["fit"] else None)
              for carpet in data["carpets"]),
        tuple(tuple(tuple(point) for point in polygon) for polygon in data["occluders"]))
