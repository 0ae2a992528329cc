"""The carpet catalogue."""
from __future__ import annotations

import datetime

from peewee import IntegrityError

from carpet_common.errors import AlreadyExists, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from render_service import audit_outbox
from render_service.images import MAX_CARPET_ASPECT, check_image
from render_service.models import Carpet, database

MAX_SIZE_CM = 10_000


def _text(value: str, what: str, limit: int, required: bool = True) -> str:
    value = value.strip()
    if (required and not value) or len(value) > limit or "\x00" in value:
        raise InvalidArgument(f"{what} must be {'1' if required else '0'}..{limit} characters")
    return value


def create_carpet(sku: str, name: str, width_cm: int, length_cm: int, material: str,
                  image: bytes, *, now: datetime.datetime, who: audit_outbox.Who) -> Carpet:
    """The new carpet and its audit entry naming `who` added it, in one transaction: a carpet
    never exists without it."""
    sku = _text(sku, "sku", 64)
    name = _text(name, "name", 200)
    material = _text(material, "material", 100, required=False)
    for value, what in ((width_cm, "width_cm"), (length_cm, "length_cm")):
        if not 0 < value <= MAX_SIZE_CM:
            raise InvalidArgument(f"{what} must be between 1 and {MAX_SIZE_CM}")
    picture = check_image(image, "carpet image", MAX_CARPET_ASPECT)
    try:
        with database.atomic():
            carpet = Carpet.create(sku=sku, name=name, width_cm=width_cm, length_cm=length_cm,
                                   material=material, image=image,
                                   image_content_type=picture.content_type, created_at=now)
            audit_outbox.record(audit_outbox.CREATE_CARPET, who, outcome="ok",
                                organization_id=None, target=f"carpet:{carpet.id}",
                                details={"sku": sku}, now=now)
            return carpet
    except IntegrityError:
        raise AlreadyExists(f"a carpet with sku {sku!r} already exists") from None


def _without_image():
    """Carpet rows without their picture: listings never need the bytes."""
    return Carpet.select(*[f for f in Carpet._meta.sorted_fields if f is not Carpet.image])


def get_carpet(carpet_id: int, *, with_image: bool = False) -> Carpet:
    query = Carpet.select() if with_image else _without_image()
    carpet = query.where(Carpet.id == carpet_id).first()
    if carpet is None:
        raise NotFound(f"carpet {carpet_id} not found")
    return carpet


def list_carpets(page_size: int, page_token: str, *, material: str = "") -> Page:
    query = _without_image()
    if material:
        query = query.where(Carpet.material == material)
    return paginate(query, Carpet.created_at, Carpet.id, page_size, page_token)
