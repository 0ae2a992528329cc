"""The carpet catalogues (`docs/catalogue.md`): each organisation its own, plus the shared one
(organization_id 0) every organisation sees. A design has one or more sizes; designs and sizes
are archived, never deleted, so renders keep pointing at what they showed. Every change is
written with its audit entry in one transaction."""
from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from peewee import IntegrityError, ModelSelect

from carpet_common.calls import Who
from carpet_common.db import Statement, tuples
from carpet_common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from carpet_common.paging import Page, paginate
from render_service import audit_outbox
from render_service.floor import SizedSpot, Spot
from render_service.images import MAX_CARPET_ASPECT, check_image
from render_service.models import Carpet, CarpetSize, RenderJob, database, size_id_of

SHARED = 0  # the shared catalogue's organization_id
MAX_SIZE_CM = 10_000
MAX_SIZES = 20
UPDATABLE = ("name", "material", "image", "sizes")

# The audit actions of catalogue changes.
CREATE = audit_outbox.CREATE_CARPET
UPDATE = audit_outbox.UPDATE_CARPET
ARCHIVE = audit_outbox.ARCHIVE_CARPET
RESTORE = audit_outbox.RESTORE_CARPET


@dataclass(frozen=True)
class Catalogues:
    """The catalogues a caller sees and changes: every one (`organization_id` None: ADMIN and
    the internal backends, which act for any organisation), or one organisation's, which it
    changes, and the shared one, which it only sees (STAFF)."""

    organization_id: int | None

    def sees(self, organization_id: int) -> bool:
        return self.organization_id is None or organization_id in (SHARED,
                                                                   self.organization_id)

    def changes(self, organization_id: int) -> bool:
        return self.organization_id is None or organization_id == self.organization_id


EVERY_CATALOGUE = Catalogues(None)


@dataclass(frozen=True)
class SizeSpec:
    """A size as asked for: `size_id` 0 for a new one."""

    width_cm: int
    length_cm: int
    sku: str = ""
    size_id: int = 0


@dataclass(frozen=True)
class ShownCarpet:
    """A design with its sizes in use (archived sizes left out), without its picture."""

    carpet: Carpet
    sizes: list[CarpetSize]


def _text(value: str, what: str, limit: int, required: bool = True) -> str:
    value = value.strip()
    if (required and not value) or len(value) > limit or "\x00" in value:
        raise InvalidArgument(f"{what} must be {'1' if required else '0'}..{limit} characters")
    return value


def _checked_sizes(sizes: Sequence[SizeSpec]) -> list[SizeSpec]:
    if not 1 <= len(sizes) <= MAX_SIZES:
        raise InvalidArgument(f"a carpet has 1..{MAX_SIZES} sizes")
    checked, skus = [], set()
    for number, size in enumerate(sizes, start=1):
        for value, what in ((size.width_cm, "width_cm"), (size.length_cm, "length_cm")):
            if not 0 < value <= MAX_SIZE_CM:
                raise InvalidArgument(f"size {number}: {what} must be between 1 and "
                                      f"{MAX_SIZE_CM}")
        sku = _text(size.sku, f"size {number}: sku", 64, required=False)
        if sku and sku in skus:
            raise InvalidArgument(f"size {number}: sku {sku!r} is given twice")
        skus.add(sku)
        checked.append(SizeSpec(size.width_cm, size.length_cm, sku, size.size_id))
    return checked


def create_carpet(*, organization_id: int, sku: str, name: str, material: str, image: bytes,
                  sizes: Sequence[SizeSpec], idempotent: bool, catalogues: Catalogues,
                  now: datetime.datetime, who: Who) -> ShownCarpet:
    """The new design, its sizes and its audit entry naming `who`, in one transaction.
    `idempotent` (the request carried a key): the same request again answers the carpet it
    made instead of ALREADY_EXISTS."""
    check_changeable(organization_id, catalogues)
    sku = _text(sku, "sku", 64)
    name = _text(name, "name", 200)
    material = _text(material, "material", 100, required=False)
    sizes = _checked_sizes(sizes)
    if any(size.size_id for size in sizes):
        raise InvalidArgument("a new carpet's sizes have no id yet")
    picture = check_image(image, "carpet image", MAX_CARPET_ASPECT)
    try:
        with database.atomic():
            carpet = Carpet.create(organization_id=organization_id, sku=sku, name=name,
                                   material=material, image=image,
                                   image_content_type=picture.content_type, created_at=now,
                                   updated_at=now)
            rows = [CarpetSize.create(carpet=carpet, sku=size.sku, width_cm=size.width_cm,
                                      length_cm=size.length_cm, position=position)
                    for position, size in enumerate(sizes)]
            audit_outbox.record(CREATE, who, outcome="ok", organization_id=organization_id,
                                target=f"carpet:{carpet.id}",
                                details={"sku": sku, "sizes": _sizes_text(rows)}, now=now)
    except IntegrityError:
        existing = Carpet.get_or_none((Carpet.organization_id == organization_id)
                                      & (Carpet.sku == sku))
        if idempotent and existing is not None and _same_carpet(existing, name, material,
                                                                image, sizes):
            return shown(existing)
        raise AlreadyExists(f"the catalogue already has a carpet with sku {sku!r}") from None
    return ShownCarpet(carpet, rows)


def _same_carpet(carpet: Carpet, name: str, material: str, image: bytes,
                 sizes: list[SizeSpec]) -> bool:
    """Whether `carpet` is what this very request made (a retry of it)."""
    kept = [(size.width_cm, size.length_cm, size.sku) for size in _sizes_in_use([carpet.id])
            .get(carpet.id, [])]
    return (carpet.name, carpet.material, bytes(carpet.image)) == (name, material, image) and \
        kept == [(size.width_cm, size.length_cm, size.sku) for size in sizes]


def check_changeable(organization_id: int, catalogues: Catalogues) -> None:
    """Refused unless the caller may change `organization_id`'s catalogue."""
    if organization_id < 0:
        raise InvalidArgument("organization_id must be 0 (the shared catalogue) or an id")
    if not catalogues.changes(organization_id):
        _refuse_change(organization_id)


def _refuse_change(organization_id: int) -> NoReturn:
    """A catalogue the caller may not change: the shared one (STAFF) is said so; another
    organisation's does not exist for it."""
    if organization_id == SHARED:
        raise PermissionDenied("only ADMIN changes the shared catalogue")
    raise NotFound(f"organisation {organization_id}'s catalogue not found")


def update_carpet(carpet_id: int, changes: dict[str, Any], *, catalogues: Catalogues,
                  now: datetime.datetime, who: Who) -> ShownCarpet:
    """Change the fields `changes` names (UPDATABLE; "sizes" a list of SizeSpec: one with an
    id keeps that size, one without is added, one left out is archived), with its audit entry,
    in one transaction."""
    unknown = set(changes) - set(UPDATABLE)
    if not changes or unknown:
        named = ", ".join(sorted(name[:40] for name in unknown)[:5])
        raise InvalidArgument(f"update_mask must name some of {', '.join(UPDATABLE)}"
                              + (f" (not {named})" if unknown else ""))
    values: dict[str, object] = {}
    if "name" in changes:
        values["name"] = _text(changes["name"], "name", 200)
    if "material" in changes:
        values["material"] = _text(changes["material"], "material", 100, required=False)
    if "image" in changes:
        picture = check_image(changes["image"], "carpet image", MAX_CARPET_ASPECT)
        values.update(image=changes["image"], image_content_type=picture.content_type)
    sizes = _checked_sizes(changes["sizes"]) if "sizes" in changes else None
    with database.atomic():
        carpet = _changeable(carpet_id, catalogues)
        Carpet.update(updated_at=now, **values).where(Carpet.id == carpet.id).execute()
        if sizes is not None:
            _replace_sizes(carpet.id, sizes, now)
        result = get_carpet(carpet.id)
        audit_outbox.record(UPDATE, who, outcome="ok", organization_id=carpet.organization_id,
                            target=f"carpet:{carpet.id}",
                            details={"changed": sorted(changes),
                                     **({"sizes": _sizes_text(result.sizes)}
                                        if sizes is not None else {})}, now=now)
    return result


def _replace_sizes(carpet_id: int, sizes: list[SizeSpec], now: datetime.datetime) -> None:
    current = {size.id: size for size in CarpetSize.select().where(
        CarpetSize.carpet == carpet_id)}
    kept = {size.size_id for size in sizes if size.size_id}
    for size in sizes:
        if size.size_id and size.size_id not in current:
            raise InvalidArgument(f"size {size.size_id} is not one of this carpet's sizes")
        old = current.get(size.size_id)
        if old is not None and (old.width_cm, old.length_cm) != (size.width_cm, size.length_cm):
            raise InvalidArgument(
                f"size {old.id} measures {old.width_cm} x {old.length_cm} cm: a size's "
                f"measurements never change (renders show them); leave it out and add a new one")
    # Sizes left out are archived first, so their SKUs are free for the sizes given (a SKU is
    # unique among a carpet's sizes in use).
    CarpetSize.update(archived_at=now).where(
        (CarpetSize.carpet == carpet_id) & CarpetSize.archived_at.is_null()
        & CarpetSize.id.not_in(kept or {0})).execute()
    first = 1 + max((size.position for size in current.values()), default=-1)
    for offset, size in enumerate(sizes):
        position = first + offset  # the order given, after every earlier one
        try:
            with database.atomic():  # a savepoint: a duplicate SKU is said, not a 500
                if size.size_id:
                    CarpetSize.update(sku=size.sku, position=position, archived_at=None).where(
                        CarpetSize.id == size.size_id).execute()
                else:
                    CarpetSize.create(carpet=carpet_id, sku=size.sku, width_cm=size.width_cm,
                                      length_cm=size.length_cm, position=position)
        except IntegrityError:
            raise InvalidArgument(f"size sku {size.sku!r} is used by another of this "
                                  f"carpet's sizes") from None


def set_archived(carpet_id: int, archived: bool, *, catalogues: Catalogues,
                 now: datetime.datetime, who: Who) -> ShownCarpet:
    """Archive (or restore) a design, with its audit entry. Doing it twice is no error and
    writes no second entry."""
    with database.atomic():
        carpet = _changeable(carpet_id, catalogues)
        if (carpet.archived_at is not None) != archived:
            Carpet.update(archived_at=now if archived else None, updated_at=now).where(
                Carpet.id == carpet.id).execute()
            audit_outbox.record(ARCHIVE if archived else RESTORE, who, outcome="ok",
                                organization_id=carpet.organization_id,
                                target=f"carpet:{carpet.id}", details={"sku": carpet.sku},
                                now=now)
        return get_carpet(carpet.id)


def _changeable(carpet_id: int, catalogues: Catalogues) -> Carpet:
    carpet: Carpet | None = _without_image().where(Carpet.id == carpet_id).first()
    if carpet is None or not catalogues.sees(carpet.organization_id):
        raise NotFound(f"carpet {carpet_id} not found")
    if not catalogues.changes(carpet.organization_id):
        _refuse_change(carpet.organization_id)
    return carpet


def _without_image() -> ModelSelect[Carpet]:
    """Carpet rows without their picture: listings never need the bytes."""
    return Carpet.select(*[f for f in Carpet._meta.sorted_fields if f is not Carpet.image])


def _sizes_in_use(carpet_ids: Sequence[int]) -> dict[int, list[CarpetSize]]:
    """The sizes in use of each carpet, in order: one query for a whole page."""
    by_carpet: dict[int, list[CarpetSize]] = {}
    for size in (CarpetSize.select()
                 .where(CarpetSize.carpet.in_(list(carpet_ids)) & CarpetSize.archived_at.is_null())
                 .order_by(CarpetSize.carpet, CarpetSize.position)):
        by_carpet.setdefault(size.carpet_id, []).append(size)
    return by_carpet


def shown(carpet: Carpet) -> ShownCarpet:
    return ShownCarpet(carpet, _sizes_in_use([carpet.id]).get(carpet.id, []))


def get_carpet(carpet_id: int, catalogues: Catalogues = EVERY_CATALOGUE) -> ShownCarpet:
    """The design, archived or not; NOT_FOUND outside `catalogues`."""
    carpet = _without_image().where(Carpet.id == carpet_id).first()
    if carpet is None or not catalogues.sees(carpet.organization_id):
        raise NotFound(f"carpet {carpet_id} not found")
    return shown(carpet)


@dataclass(frozen=True)
class RenderedCarpet:
    """The design and size a render shows, by name (a share link's page)."""

    name: str
    width_cm: int
    length_cm: int


def rendered_carpet(job: RenderJob) -> RenderedCarpet:
    carpet = Carpet.select(Carpet.name).where(Carpet.id == job.carpet_id).first()
    size = CarpetSize.get_or_none(CarpetSize.id == size_id_of(job))
    return RenderedCarpet(carpet.name if carpet else "", size.width_cm if size else 0,
                          size.length_cm if size else 0)


def carpet_names(carpet_ids: Sequence[int]) -> dict[int, str]:
    """Each carpet's name, in one query."""
    if not carpet_ids:
        return {}
    return dict(tuples(Carpet.select(Carpet.id, Carpet.name)
                       .where(Carpet.id.in_(list(carpet_ids)))))


def carpet_image(carpet_id: int, catalogues: Catalogues) -> tuple[bytes, str]:
    """The design's picture and its content type, in one query; NOT_FOUND outside
    `catalogues`."""
    carpet = (Carpet.select(Carpet.organization_id, Carpet.image, Carpet.image_content_type)
              .where(Carpet.id == carpet_id).first())
    if carpet is None or not catalogues.sees(carpet.organization_id):
        raise NotFound(f"carpet {carpet_id} not found")
    return bytes(carpet.image), carpet.image_content_type


def list_carpets(page_size: int, page_token: str, *, catalogues: Catalogues,
                 organization_id: int = 0, material: str = "", query: str = "",
                 include_archived: bool = False, sku: str = ""
                 ) -> tuple[Page, dict[int, list[CarpetSize]]]:
    """A page of the designs `catalogues` sees (with `organization_id`: that organisation's
    and the shared ones), newest first, with their sizes; with `sku`, only the design of
    that SKU or with a size in use of that SKU."""
    rows = _without_image()
    scope = catalogues.organization_id if catalogues.organization_id is not None \
        else organization_id
    if scope:
        rows = rows.where(Carpet.organization_id.in_([SHARED, scope]))
    if material:
        rows = rows.where(Carpet.material == material)
    if query.strip():
        text = query.strip()[:100]
        rows = rows.where(Carpet.name.contains(text) | Carpet.sku.contains(text))
    if sku:
        sized = CarpetSize.select(CarpetSize.carpet).where((CarpetSize.sku == sku)
                                                          & CarpetSize.archived_at.is_null())
        rows = rows.where((Carpet.sku == sku) | Carpet.id.in_(sized))
    if not include_archived:
        rows = rows.where(Carpet.archived_at.is_null())
    page = paginate(rows, Carpet.created_at, Carpet.id, page_size, page_token)
    return page, _sizes_in_use([carpet.id for carpet in page.rows])


# A carpet's catalogue and state with each of its sizes, in their order (a submission's first
# statement, so written once: carpet_common.db.Statement).
RENDERABLE = Statement("""
    SELECT carpet.organization_id, carpet.archived_at AS carpet_archived_at,
           carpet_size.id AS size_id, carpet_size.archived_at AS size_archived_at
    FROM carpet LEFT JOIN carpet_size ON carpet_size.carpet_id = carpet.id
    WHERE carpet.id = {carpet_id}
    ORDER BY carpet_size.position""")


def renderable_size(carpet_id: int, size_id: int, organization_id: int) -> int:
    """The size a render of `organization_id` shows (`size_id` 0: the carpet's first): the
    carpet in that organisation's catalogue or the shared one, neither archived. NOT_FOUND for
    a carpet it does not see, FAILED_PRECONDITION for an archived one."""
    rows = RENDERABLE.rows(database, carpet_id=carpet_id)
    if not rows or rows[0].organization_id not in (SHARED, organization_id):
        raise NotFound(f"carpet {carpet_id} not found")
    if rows[0].carpet_archived_at is not None:
        raise FailedPrecondition(f"carpet {carpet_id} is archived: restore it to render it",
                                 reason="CARPET_ARCHIVED")
    archived_at: dict[int, datetime.datetime | None] = {
        row.size_id: row.size_archived_at for row in rows if row.size_id is not None}
    if size_id:
        if size_id not in archived_at:
            raise NotFound(f"carpet {carpet_id} has no size {size_id}")
        if archived_at[size_id] is not None:
            raise FailedPrecondition(f"size {size_id} of carpet {carpet_id} is no longer sold",
                                     reason="CARPET_ARCHIVED")
        return size_id
    in_use = next((size for size, archived in archived_at.items() if archived is None), None)
    if in_use is None:
        raise FailedPrecondition(f"carpet {carpet_id} has no size in use",
                                 reason="CARPET_ARCHIVED")
    return in_use


def sized_spots(spots: Sequence[Spot]) -> list[SizedSpot]:
    """Each spot of a measured floor (render_service.floor.Spot) with the design and the
    measurements of the size it names; NOT_FOUND for a size no catalogue has (whether the
    organisation may render it is checked with renderable_size)."""
    ids = [spot.carpet_size_id for spot in spots]
    sizes = {size.id: size for size in CarpetSize.select().where(CarpetSize.id.in_(ids))}
    missing = [size_id for size_id in ids if size_id not in sizes]
    if missing:
        raise NotFound(f"carpet size {missing[0]} not found")
    return [SizedSpot(spot, sizes[spot.carpet_size_id].carpet_id,
                      sizes[spot.carpet_size_id].width_cm, sizes[spot.carpet_size_id].length_cm)
            for spot in spots]


def _sizes_text(sizes: Sequence[CarpetSize]) -> str:
    return ", ".join(f"{size.width_cm}x{size.length_cm}" + (f" {size.sku}" if size.sku else "")
                     for size in sizes)
