"""Publishable keys as plain functions (render_service.publishable_keys): settings checked and
normalised, keys shown once and found by hash, rotation's overlap, revocation, origins, the
daily cap and the renders in progress, each change with its audit entry. Their wiring through
the gateway's public API is tests/integration/test_widget_api.py."""
import datetime

import pytest

from carpet_common import errors
from carpet_common.calls import Who
from render_service import publishable_keys as keys
from render_service.models import Carpet, PublishableKey, RenderAudit, RenderJob

SHOP = 7
STAFF = Who(actor="ayse@shop.example", role="STAFF", organization_id=SHOP)
SETTINGS = keys.KeySettings(name="Site", allowed_origins=("https://Shop.Example:443/",))


@pytest.fixture
def made(render_db, clock):
    return keys.create_key(SHOP, SETTINGS, now=clock(), who=STAFF)


def test_a_key_is_shown_once_kept_by_its_hash_and_audited(made, clock):
    row, key = made
    assert keys.KEY_PATTERN.fullmatch(key) and row.last4 == key[-4:]
    assert PublishableKey.select().where(PublishableKey.key_hash == key).count() == 0
    assert keys.active_key(key, clock()).id == row.id
    # The origin as a browser sends it: lower case, no default port, no path.
    assert keys.settings_of(row).allowed_origins == ("https://shop.example",)
    [entry] = RenderAudit.select()
    assert (entry.action, entry.actor, entry.target, entry.organization_id) == (
        keys.CREATE, STAFF.actor, f"publishable_key:{row.id}", SHOP)
    assert key not in entry.details  # the key itself is never written anywhere


@pytest.mark.parametrize("settings,message", [
    (keys.KeySettings(), "allowed_origins must name at least one origin"),
    (keys.KeySettings(allowed_origins=("https://*.shop.example",)), "is not like"),
    (keys.KeySettings(allowed_origins=("https://shop.example/cart",)), "is not like"),
    (keys.KeySettings(allowed_origins=("ftp://shop.example",)), "is not like"),
    (keys.KeySettings(allowed_origins=("https://shop.example:99999",)), "has a bad port"),
    (keys.KeySettings(allowed_origins=tuple(f"https://s{n}.example" for n in range(21))),
     "at most 20 origins"),
    (keys.KeySettings(allowed_origins=("https://a.example",), renders_per_day=0),
     "renders_per_day must be between 1"),
    (keys.KeySettings(allowed_origins=("https://a.example",), rate_per_visitor="lots"),
     "is not like '20/minute'"),
])
def test_bad_settings_are_refused_with_the_setting_named(render_db, clock, settings, message):
    with pytest.raises(errors.InvalidArgument) as refused:
        keys.create_key(SHOP, settings, now=clock(), who=STAFF)
    assert message in refused.value.message
    assert PublishableKey.select().count() == 0 and RenderAudit.select().count() == 0


def test_origins_are_matched_exactly_and_a_development_key_works_from_localhost(made, clock):
    row, key = made
    assert keys.key_for_origin(key, "https://shop.example", clock()).id == row.id
    for origin in ("https://shop.example.evil", "http://shop.example", "", "null"):
        with pytest.raises(errors.PermissionDenied):
            keys.key_for_origin(key, origin, clock())
    assert not keys.origin_allowed(row, "http://localhost:8080")
    development = keys.update_key(row.id, {"development": True}, organization_scope=SHOP,
                                  now=clock(), who=STAFF)
    assert keys.origin_allowed(development, "http://localhost:8080")
    assert keys.origin_allowed(development, "http://127.0.0.1")
    assert not keys.origin_allowed(development, "http://localhost.evil")


def test_rotation_keeps_the_old_key_for_its_overlap_and_revocation_ends_both(made, clock):
    row, old = made
    _, new = keys.rotate_key(row.id, 3600, organization_scope=SHOP, now=clock(), who=STAFF)
    assert keys.active_key(new, clock()).id == keys.active_key(old, clock()).id == row.id
    clock.advance(3600)
    with pytest.raises(errors.Unauthenticated):
        keys.active_key(old, clock())  # the overlap is over
    _, newest = keys.rotate_key(row.id, 0, organization_scope=SHOP, now=clock(), who=STAFF)
    keys.revoke_key(row.id, organization_scope=SHOP, now=clock(), who=STAFF)
    for key in (new, newest):  # both refused at once, the overlap notwithstanding
        with pytest.raises(errors.Unauthenticated):
            keys.active_key(key, clock())
    with pytest.raises(errors.FailedPrecondition) as again:
        keys.revoke_key(row.id, organization_scope=SHOP, now=clock(), who=STAFF)
    assert again.value.reason == "PUBLISHABLE_KEY_REVOKED"
    assert [entry.action for entry in RenderAudit.select().order_by(RenderAudit.id)] == [
        keys.CREATE, keys.ROTATE, keys.ROTATE, keys.REVOKE]


def test_another_shops_key_does_not_exist_for_its_staff(made, clock):
    row, _ = made
    for change in (lambda: keys.revoke_key(row.id, organization_scope=SHOP + 1, now=clock(),
                                           who=STAFF),
                   lambda: keys.rotate_key(row.id, 60, organization_scope=SHOP + 1,
                                           now=clock(), who=STAFF),
                   lambda: keys.update_key(row.id, {"name": "x"}, organization_scope=SHOP + 1,
                                           now=clock(), who=STAFF)):
        with pytest.raises(errors.NotFound):
            change()
    with pytest.raises(errors.InvalidArgument):
        keys.update_key(row.id, {"key_hash": "x"}, organization_scope=SHOP, now=clock(),
                        who=STAFF)


def test_the_daily_cap_and_the_renders_in_progress(made, clock):
    row, _ = made
    row = keys.update_key(row.id, {"renders_per_day": 3, "max_concurrent": 2},
                          organization_scope=SHOP, now=clock(), who=STAFF)
    carpet = Carpet.create(sku="K", name="Kilim", image=b"png", image_content_type="image/png")

    def in_progress():
        RenderJob.create(organization_id=SHOP, carpet=carpet, mode="preview", cost=1,
                         status="queued", hold_id=1, publishable_key_id=row.id)

    keys.take_render(row, clock())
    in_progress()
    keys.take_render(row, clock())
    in_progress()
    with pytest.raises(errors.ResourceExhausted) as busy:  # two in progress: wait
        keys.take_render(row, clock())
    assert busy.value.retry_after_s == 5
    assert keys.renders_today([row.id], clock().date()) == {row.id: 2}  # a refusal is not one
    RenderJob.update(status="failed", error_text="the image API refused it").execute()
    keys.take_render(row, clock())  # the third of the day
    with pytest.raises(errors.ResourceExhausted) as capped:
        keys.take_render(row, clock())
    midnight = datetime.datetime.combine(clock().date() + datetime.timedelta(days=1),
                                         datetime.time())
    assert (capped.value.reason, capped.value.retry_after_s) == (
        "KEY_DAILY_CAP_REACHED", int((midnight - clock()).total_seconds()))
    assert keys.renders_today([row.id], clock().date()) == {row.id: 3}
    clock.advance(days=1)
    keys.take_render(row, clock())
    assert keys.renders_today([row.id], clock().date()) == {row.id: 1}
