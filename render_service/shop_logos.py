"""A shop's logo on its share pages (`docs/shares-and-leads.md`). The file is checked like every
picture the service accepts (render_service.images: its header's limits, then every pixel
decoded, once, while it is reduced), then kept reduced to at most 512 × 256
pixels, so a page's logo is a few kilobytes whatever was uploaded. Setting and removing it are
audited in the change's transaction, the audit entry naming the organisation and the stored
size, never the picture.
"""
from __future__ import annotations

import datetime

from carpet_common.calls import Who
from carpet_common.errors import InvalidArgument, NotFound
from carpet_common.thumbnails import make_logo
from render_service import audit_outbox
from render_service.images import check_header
from render_service.models import ShopLogo, database

MAX_LOGO_BYTES = 2 * 1024 * 1024
MAX_LOGO_ASPECT = 8  # a wordmark is wide
SET = audit_outbox.SET_SHOP_LOGO
DELETE = audit_outbox.DELETE_SHOP_LOGO


def set_logo(organization_id: int, image: bytes, *, now: datetime.datetime,
             who: Who) -> ShopLogo:
    if len(image) > MAX_LOGO_BYTES:
        raise InvalidArgument(f"the logo is {len(image)} bytes; the limit is {MAX_LOGO_BYTES} "
                              f"bytes (2 MiB)")
    reduced, content_type = make_logo(image, check_header(image, "the logo", MAX_LOGO_ASPECT))
    with database.atomic():
        (ShopLogo.insert(organization_id=organization_id, image=reduced,
                         content_type=content_type, updated_at=now)
         .on_conflict(conflict_target=[ShopLogo.organization_id],
                      update={ShopLogo.image: reduced, ShopLogo.content_type: content_type,
                              ShopLogo.updated_at: now})
         .execute())
        audit_outbox.record(SET, who, outcome="ok", organization_id=organization_id,
                            target=f"organization:{organization_id}",
                            details={"bytes": len(reduced)}, now=now)
    return ShopLogo(organization_id=organization_id, image=b"", content_type=content_type,
                    updated_at=now)


def logo(organization_id: int) -> ShopLogo:
    row = ShopLogo.get_or_none(ShopLogo.organization_id == organization_id)
    if row is None:
        raise NotFound(f"organisation {organization_id} has no logo")
    return row


def has_logo(organization_id: int) -> bool:
    return ShopLogo.select().where(ShopLogo.organization_id == organization_id).exists()


def delete_logo(organization_id: int, *, now: datetime.datetime,
                who: Who) -> ShopLogo:
    with database.atomic():
        removed = logo(organization_id)
        removed.delete_instance()
        audit_outbox.record(DELETE, who, outcome="ok", organization_id=organization_id,
                            target=f"organization:{organization_id}", details={}, now=now)
    removed.image = b""
    return removed
