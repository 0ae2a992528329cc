"""Importing a catalogue from a spreadsheet the gateway has read (`docs/catalogue.md`): each
design created or updated by its SKU, a row at a time reported. The valid designs are written
in one transaction with the import's one audit entry (each design in a savepoint of its own, so
a refused one leaves the others); a dry run does the same work and rolls it back, so what it
answers is exactly what applying would do. Importing the same file again changes nothing."""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from peewee import IntegrityError

from carpet_common import sources
from carpet_common.calls import Who
from carpet_common.errors import DomainError, InvalidArgument, NotFound
from carpet_common.outbound import FetchFailed, TargetRefused
from render_service import audit_outbox, catalogue
from render_service.images import MAX_CARPET_ASPECT, check_image
from render_service.models import Carpet, CarpetImport, CarpetSize, database

MAX_ROWS = 10_000
FETCHES_AT_ONCE = 8  # pictures fetched by address at once
MAX_PROBLEM_CHARS = 200
IMPORT = audit_outbox.IMPORT_CARPETS


@dataclass(frozen=True)
class ImportedDesign:
    lines: Sequence[int]  # one per size, in the file's order
    sku: str
    name: str
    material: str
    sizes: Sequence[tuple[int, int]]  # (width_cm, length_cm)
    image: bytes  # b"": keep an existing design's picture (or take it from image_url)
    image_url: str = ""


@dataclass(frozen=True)
class Problem:
    column: str
    code: str
    message: str

    def __post_init__(self):  # bounded, whatever input it quotes
        object.__setattr__(self, "message", self.message[:MAX_PROBLEM_CHARS])


@dataclass
class RowOutcome:
    line: int
    sku: str
    outcome: str  # created, updated, unchanged, rejected
    problems: list[Problem] = field(default_factory=list)


OUTCOMES = ("created", "updated", "unchanged", "rejected")


@dataclass(frozen=True)
class ImportReport:
    import_id: str  # "" for a dry run (nothing kept)
    organization_id: int
    file_name: str
    created_at: datetime.datetime | None
    rows: list[RowOutcome]


class _Rejected(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class FetchedPictures:
    """The pictures designs name by address, fetched before the import's transaction (never
    while it holds its locks), FETCHES_AT_ONCE at a time, each written to a file of a private
    directory by the thread that fetched it, so memory holds at most that many pictures however
    many there are. `fetch(url) -> bytes` is the guarded GET (carpet_common.outbound.fetch with
    its limits)."""

    def __init__(self, designs: Sequence[ImportedDesign], fetch: Callable[[str], bytes]):
        self._directory = tempfile.TemporaryDirectory(prefix="carpet-import-")
        urls = sorted({design.image_url for design in designs if design.image_url})
        with ThreadPoolExecutor(FETCHES_AT_ONCE) as pool:
            spooled = pool.map(lambda number, url: self._spooled(number, url, fetch),
                               range(len(urls)), urls)
            self._found: dict[str, str | Problem] = dict(zip(urls, spooled, strict=True))

    def _spooled(self, number: int, url: str, fetch: Callable[[str], bytes]) -> str | Problem:
        """The file the picture at `url` was written to, or why there is none."""
        try:
            picture = fetch(url)
        except (FetchFailed, TargetRefused) as failed:
            return Problem("image", "PICTURE_UNREACHABLE", f"{url[:100]}: {failed}")
        path = os.path.join(self._directory.name, str(number))
        with open(path, "wb") as spool:
            spool.write(picture)
        return path

    def picture(self, url: str) -> bytes:
        found = self._found[url]
        if isinstance(found, Problem):
            raise _Rejected(found)
        with open(found, "rb") as spool:
            return spool.read()

    def close(self) -> None:
        self._directory.cleanup()


def import_carpets(organization_id: int, designs: Sequence[ImportedDesign], *, dry_run: bool,
                   file_name: str, catalogues: catalogue.Catalogues, now: datetime.datetime,
                   who: Who, fetch: Callable[[str], bytes]) -> ImportReport:
    """Every row's outcome, in the order given; an applied import's report is kept."""
    catalogue.check_changeable(organization_id, catalogues)
    if sum(len(design.lines) for design in designs) > MAX_ROWS:
        raise InvalidArgument(f"an import has at most {MAX_ROWS} rows")
    pictures = FetchedPictures(designs, fetch)
    try:
        return _import_all(organization_id, designs, dry_run, file_name, pictures, now, who)
    finally:
        pictures.close()


def _import_all(organization_id: int, designs: Sequence[ImportedDesign], dry_run: bool,
                file_name: str, pictures: FetchedPictures, now: datetime.datetime,
                who: Who) -> ImportReport:
    outcomes: list[RowOutcome] = []
    import_id = sources.unique_hex()  # names the import's audit entry, and what it created
    with database.atomic() as transaction:
        for design in designs:
            try:
                with database.atomic():  # a savepoint: a refused design leaves the others
                    result = _import_one(organization_id, design, pictures, import_id, now)
            except _Rejected as rejected:
                result = "rejected"
                problems = [rejected.problem]
            else:
                problems = []
            # The report names a row by at most a SKU's length: it must not echo a megabyte of
            # input once per row (10,000 rows would not fit one message).
            outcomes += [RowOutcome(line, design.sku[:64], result, list(problems))
                         for line in design.lines]
        if dry_run:
            transaction.rollback()
            return ImportReport("", organization_id, file_name, None, outcomes)
        counts = Counter(outcome.outcome for outcome in outcomes)
        totals = {kind: counts.get(kind, 0) for kind in OUTCOMES}
        CarpetImport.create(
            id=import_id, organization_id=organization_id, file_name=file_name[:200],
            actor=who.actor[:320], created_at=now, **totals,
            rows=json.dumps([[row.line, row.sku, row.outcome,
                              [[p.column, p.code, p.message] for p in row.problems]]
                             for row in outcomes], ensure_ascii=False))
        audit_outbox.record(IMPORT, who, outcome="ok", organization_id=organization_id,
                            target=f"import:{import_id}",
                            details={"file": file_name[:200], **totals}, now=now)
    return ImportReport(import_id, organization_id, file_name, now, outcomes)


def get_import(import_id: str, catalogues: catalogue.Catalogues) -> ImportReport:
    """An applied import's report: for every catalogue's caller any, for STAFF their own
    organisation's only (NOT_FOUND otherwise)."""
    kept = CarpetImport.get_or_none(CarpetImport.id == import_id[:32])
    if kept is None or catalogues.organization_id not in (None, kept.organization_id):
        raise NotFound(f"import {import_id[:40]!r} not found")
    rows = [RowOutcome(line, sku, outcome, [Problem(*problem) for problem in problems])
            for line, sku, outcome, problems in json.loads(kept.rows)]
    return ImportReport(kept.id, kept.organization_id, kept.file_name, kept.created_at, rows)


def _import_one(organization_id: int, design: ImportedDesign, pictures: FetchedPictures,
                import_id: str, now: datetime.datetime) -> str:
    sku = _checked(design.sku, "sku", 64)
    name = _checked(design.name, "name", 200)
    material = _checked(design.material, "material", 100, required=False)
    if len(set(design.sizes)) != len(design.sizes):
        raise _Rejected(Problem("width_cm", "DUPLICATE_SIZE",
                                "the same size is given twice for this sku"))
    if len(design.sizes) > catalogue.MAX_SIZES:
        raise _Rejected(Problem("sku", "TOO_MANY_SIZES",
                                f"a carpet has at most {catalogue.MAX_SIZES} sizes"))
    content_type = ""
    image = pictures.picture(design.image_url) if design.image_url else design.image
    if image:
        try:
            content_type = check_image(image, "picture", MAX_CARPET_ASPECT).content_type
        except DomainError as refused:
            raise _Rejected(Problem("image", "PICTURE_INVALID", refused.message)) from None
    existing = Carpet.get_or_none((Carpet.organization_id == organization_id)
                                  & (Carpet.sku == sku))
    try:
        if existing is None:
            if not image:
                raise _Rejected(Problem("image", "PICTURE_MISSING",
                                        "a new carpet needs a picture"))
            carpet = Carpet.create(organization_id=organization_id, sku=sku, name=name,
                                   material=material, image=image,
                                   image_content_type=content_type, created_at=now,
                                   updated_at=now, import_id=import_id)
            for position, (width, length) in enumerate(design.sizes):
                CarpetSize.create(carpet=carpet, width_cm=width, length_cm=length,
                                  position=position)
            return "created"
        changes: dict = {}
        if (existing.name, existing.material) != (name, material):
            changes.update(name=name, material=material)
        if image and bytes(existing.image) != image:
            changes.update(image=image, image_content_type=content_type)
        resized = _resize(existing.id, list(design.sizes), now)
        if not changes and not resized:
            return "unchanged"
        Carpet.update(updated_at=now, **changes).where(Carpet.id == existing.id).execute()
        return "updated"
    except IntegrityError as error:
        raise _Rejected(Problem("", "CONFLICT", f"not written: {error}"[:300])) from None


def _resize(carpet_id: int, wanted: list[tuple[int, int]], now: datetime.datetime) -> bool:
    """The design's sizes in use become `wanted`, matched by measurements (a file has no size
    ids): kept ones stay (and keep their ids and SKUs), new ones are added, the rest archived.
    Whether anything changed."""
    in_use = list(CarpetSize.select().where((CarpetSize.carpet == carpet_id)
                                            & CarpetSize.archived_at.is_null())
                  .order_by(CarpetSize.position))
    if [(size.width_cm, size.length_cm) for size in in_use] == wanted:
        return False
    by_measure = {(size.width_cm, size.length_cm): size for size in in_use}
    gone = [size.id for measure, size in by_measure.items() if measure not in wanted]
    if gone:
        CarpetSize.update(archived_at=now).where(CarpetSize.id.in_(gone)).execute()
    first = 1 + max((size.position for size in CarpetSize.select(CarpetSize.position).where(
        CarpetSize.carpet == carpet_id)), default=-1)
    for offset, (width, length) in enumerate(wanted):
        kept = by_measure.get((width, length))
        if kept is not None:
            CarpetSize.update(position=first + offset).where(CarpetSize.id == kept.id).execute()
        else:
            CarpetSize.create(carpet=carpet_id, width_cm=width, length_cm=length,
                              position=first + offset)
    return True


def _checked(value: str, column: str, limit: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise _Rejected(Problem(column, "REQUIRED", f"{column} is empty"))
    if len(value) > limit or "\x00" in value:
        raise _Rejected(Problem(column, "TOO_LONG", f"{column} is longer than {limit} "
                                                    f"characters"))
    return value
