"""Catalogues as plain functions (render_service.catalogue): a shop changes its own catalogue
and only sees the shared one; sizes checked, kept by id, never re-measured, archived when left
out; what a render may show. The RPCs and the console over them:
tests/integration/test_catalogue.py and tests/e2e/test_admin_catalogue_page.py."""
import pytest

from carpet_common import errors
from carpet_common.calls import Who
from render_service import catalogue
from render_service.catalogue import Catalogues, SizeSpec
from render_service.models import RenderAudit
from tests.fake_image_api import tiny_png

SHOP, OTHER, SHARED = 5, 6, 0
STAFF = Who(actor="ayse@shop.example", role="STAFF", organization_id=SHOP)
ADMIN = Who(actor="admin@example.com", role="ADMIN")
OWN = Catalogues(SHOP)  # what the shop's STAFF sees and changes
ONE_SIZE = (SizeSpec(160, 230),)


def create(clock, organization_id=SHOP, sku="KLM-1", sizes=ONE_SIZE, catalogues=OWN,
           who=STAFF, idempotent=False, name="Kilim"):
    return catalogue.create_carpet(organization_id=organization_id, sku=sku, name=name,
                                   material="wool", image=tiny_png(), sizes=list(sizes),
                                   idempotent=idempotent, catalogues=catalogues, now=clock(),
                                   who=who)


def test_a_shop_changes_its_own_catalogue_and_only_sees_the_shared_one(render_db, clock):
    own = create(clock)
    shared = create(clock, organization_id=SHARED, catalogues=catalogue.EVERY_CATALOGUE,
                    who=ADMIN)
    other = create(clock, organization_id=OTHER, sku="OTH-1",
                   catalogues=catalogue.EVERY_CATALOGUE, who=ADMIN)
    with pytest.raises(errors.PermissionDenied, match="only ADMIN changes the shared"):
        create(clock, organization_id=SHARED, sku="MINE")
    with pytest.raises(errors.NotFound):  # another shop's catalogue does not exist for it
        create(clock, organization_id=OTHER, sku="MINE")
    with pytest.raises(errors.PermissionDenied):
        catalogue.set_archived(shared.carpet.id, True, catalogues=OWN,
                               now=clock(), who=STAFF)
    with pytest.raises(errors.NotFound):
        catalogue.set_archived(other.carpet.id, True, catalogues=OWN,
                               now=clock(), who=STAFF)
    # The same SKU in two catalogues is two carpets; twice in one is refused...
    assert create(clock, organization_id=OTHER, sku="KLM-1", catalogues=Catalogues(OTHER),
                  who=ADMIN).carpet.id != own.carpet.id
    with pytest.raises(errors.AlreadyExists):
        create(clock)
    # ... unless it is the same request again, with its key.
    assert create(clock, idempotent=True).carpet.id == own.carpet.id
    with pytest.raises(errors.AlreadyExists):
        create(clock, idempotent=True, name="Another")
    assert [entry.target for entry in RenderAudit.select().order_by(RenderAudit.id)] == [
        f"carpet:{carpet.carpet.id}" for carpet in (own, shared, other)] + [
        f"carpet:{other.carpet.id + 1}"]


@pytest.mark.parametrize("sizes,message", [
    ([], "a carpet has 1..20 sizes"),
    ([SizeSpec(160, 230)] * 21, "a carpet has 1..20 sizes"),
    ([SizeSpec(0, 230)], "size 1: width_cm must be between 1"),
    ([SizeSpec(160, 230), SizeSpec(80, 10_001)], "size 2: length_cm must be between 1"),
    ([SizeSpec(160, 230, "A"), SizeSpec(80, 150, "A")], "size 2: sku 'A' is given twice"),
    ([SizeSpec(160, 230, size_id=9)], "a new carpet's sizes have no id yet"),
])
def test_bad_sizes_are_refused_naming_the_size(render_db, clock, sizes, message):
    with pytest.raises(errors.InvalidArgument) as refused:
        create(clock, sizes=sizes)
    assert message in refused.value.message


def test_sizes_are_kept_by_id_never_re_measured_and_archived_when_left_out(render_db, clock):
    made = create(clock, sizes=[SizeSpec(160, 230, "L"), SizeSpec(80, 150, "S")])
    large, small = made.sizes
    changed = catalogue.update_carpet(
        made.carpet.id, {"sizes": [SizeSpec(80, 150, "S", small.id), SizeSpec(200, 300, "XL")]},
        catalogues=OWN, now=clock(), who=STAFF)
    assert [(size.id, size.width_cm, size.sku) for size in changed.sizes][:1] == [
        (small.id, 80, "S")]  # kept, in the order given
    assert [size.width_cm for size in changed.sizes] == [80, 200]
    # The size left out is archived: a render may no longer show it, the others yes.
    with pytest.raises(errors.FailedPrecondition) as archived:
        catalogue.renderable_size(made.carpet.id, large.id, SHOP)
    assert archived.value.reason == "CARPET_ARCHIVED"
    assert catalogue.renderable_size(made.carpet.id, 0, SHOP) == small.id  # the first in use
    with pytest.raises(errors.InvalidArgument, match="measurements never change"):
        catalogue.update_carpet(made.carpet.id, {"sizes": [SizeSpec(90, 150, "S", small.id)]},
                                catalogues=OWN, now=clock(), who=STAFF)
    with pytest.raises(errors.InvalidArgument, match="update_mask must name some of"):
        catalogue.update_carpet(made.carpet.id, {"sku": "NEW"}, catalogues=OWN,
                                now=clock(), who=STAFF)


def test_what_a_render_may_show(render_db, clock):
    own = create(clock)
    shared = create(clock, organization_id=SHARED, catalogues=catalogue.EVERY_CATALOGUE,
                    who=ADMIN)
    other = create(clock, organization_id=OTHER, catalogues=catalogue.EVERY_CATALOGUE,
                   who=ADMIN)
    assert catalogue.renderable_size(own.carpet.id, 0, SHOP) == own.sizes[0].id
    assert catalogue.renderable_size(shared.carpet.id, 0, SHOP) == shared.sizes[0].id
    with pytest.raises(errors.NotFound):
        catalogue.renderable_size(other.carpet.id, 0, SHOP)
    with pytest.raises(errors.NotFound, match="has no size"):
        catalogue.renderable_size(own.carpet.id, shared.sizes[0].id, SHOP)
    catalogue.set_archived(own.carpet.id, True, catalogues=OWN, now=clock(),
                           who=STAFF)
    catalogue.set_archived(own.carpet.id, True, catalogues=OWN, now=clock(),
                           who=STAFF)  # again: no error, no second entry
    with pytest.raises(errors.FailedPrecondition, match="restore it to render it"):
        catalogue.renderable_size(own.carpet.id, 0, SHOP)
    assert [entry.action for entry in RenderAudit.select()].count(catalogue.ARCHIVE) == 1
