"""Share links and quote requests as plain functions (render_service.shares and .leads): a link
shows one kept render until it is revoked or expires; a lead's contact is checked and
normalised, one open request per phone and render, its status changed and audited without
anything of the shopper. The pages and the widget's forms that reach them:
tests/integration/test_shares_and_leads.py."""
import datetime

import pytest

from carpet_common import errors
from carpet_common.calls import Who
from render_service import leads, shares
from render_service.models import Carpet, Lead, RenderAudit, RenderJob, RenderShare

SHOP = 3
STAFF = Who(actor="ayse@shop.example", role="STAFF", organization_id=SHOP)
SESSION = "visit-0001"  # the widget's anonymous visit


@pytest.fixture
def job(render_db, clock):
    """A finished render of the shop, its picture kept."""
    carpet = Carpet.create(sku="K", name="Kilim", image=b"png", image_content_type="image/png")
    return RenderJob.create(organization_id=SHOP, carpet=carpet, mode="preview", cost=1,
                            status="success", hold_id=1, credits_charged=1, credit_log_id=1,
                            output_path="1.png", created_at=clock(), finished_at=clock())


def contact(**changes):
    fields = dict(name=" Zeynep ", phone="0532 123 45 67", email=" Zeynep@Example.COM ",
                  message="Price for 160 × 230?", consent_text="I agree to be contacted.",
                  consent_version="widget-1", consent_accepted_at=None)
    return leads.Contact(**{**fields, **changes})


def test_a_link_shows_its_render_until_revoked_or_expired(job, clock):
    row, token = shares.create_share(job, shop_name="Halıcı", session_id=SESSION, now=clock())
    assert RenderShare.select().where(RenderShare.token_hash == token).count() == 0  # hashed
    assert shares.shared_render(token, clock())[1].id == job.id
    for unknown in ("", "x" * 32, token[:-1], token + "a", token.replace(token[0], "-", 1)):
        with pytest.raises(errors.NotFound):
            shares.shared_render(unknown, clock())
    clock.advance(days=30)
    with pytest.raises(errors.FailedPrecondition) as expired:
        shares.shared_render(token, clock())
    assert (expired.value.reason, expired.value.message) == ("SHARE_GONE",
                                                             "this link has expired")
    second_row, second = shares.create_share(job, shop_name="Halıcı", session_id=SESSION,
                                             now=clock())
    shares.revoke_share(second_row.id, organization_scope=SHOP, now=clock(), who=STAFF)
    with pytest.raises(errors.FailedPrecondition) as withdrawn:
        shares.shared_render(second, clock())
    assert withdrawn.value.message == "this link was withdrawn"
    with pytest.raises(errors.NotFound):  # another shop's link does not exist for its staff
        shares.revoke_share(row.id, organization_scope=SHOP + 1, now=clock(), who=STAFF)
    [entry] = RenderAudit.select()
    assert (entry.action, entry.target) == (shares.REVOKE, f"share:{second_row.id}")


def test_only_a_kept_finished_render_is_shared_and_at_most_twenty_times(job, clock):
    for _ in range(shares.MAX_LINKS_PER_RENDER):
        shares.create_share(job, shop_name="", session_id="", now=clock())
    with pytest.raises(errors.FailedPrecondition, match="at most 20 share links"):
        shares.create_share(job, shop_name="", session_id="", now=clock())
    RenderJob.update(output_expired=True).execute()
    with pytest.raises(errors.FailedPrecondition) as gone:
        shares.create_share(RenderJob.get_by_id(job.id), shop_name="", session_id="",
                            now=clock())
    assert gone.value.reason == "RENDER_NOT_READY"


@pytest.mark.parametrize("phone,e164", [
    ("0532 123 45 67", "+905321234567"), ("532 123 4567", "+905321234567"),
    ("+90 (532) 123-45-67", "+905321234567"), ("0090 532 123 45 67", "+905321234567"),
    ("0212 555 00 11", "+902125550011"), ("+44 20 7946 0958", "+442079460958"),
])
def test_phone_numbers_as_people_write_them(phone, e164):
    assert leads.e164(phone) == e164


@pytest.mark.parametrize("changes,reason", [
    (dict(phone="12345"), "PHONE_INVALID"), (dict(phone="0132 123 45 67"), "PHONE_INVALID"),
    (dict(email="not an address"), "EMAIL_INVALID"), (dict(name="  "), "NAME_INVALID"),
    (dict(consent_text=""), "CONSENT_REQUIRED"), (dict(consent_version=" "), "CONSENT_REQUIRED"),
    (dict(consent_accepted_at=datetime.datetime(2020, 1, 1)), "CONSENT_REQUIRED"),
])
def test_a_bad_contact_is_refused_naming_the_field(clock, changes, reason):
    with pytest.raises(errors.InvalidArgument) as refused:
        leads.checked(contact(**changes), clock())
    assert refused.value.reason == reason


def test_one_open_request_per_phone_and_render_and_its_status_audited(job, clock):
    checked = leads.checked(contact(), clock())
    assert (checked.name, checked.phone, checked.email, checked.consent_accepted_at) == (
        "Zeynep", "+905321234567", "zeynep@example.com", clock())
    lead = leads.submit_lead(job, checked, publishable_key_id=None, session_id=SESSION,
                             now=clock())
    with pytest.raises(errors.AlreadyExists):
        leads.submit_lead(job, leads.checked(contact(phone="+90 532 123 45 67"), clock()),
                          publishable_key_id=None, session_id=SESSION, now=clock())
    leads.update_lead(lead.id, status="won", note="sold the 160 × 230",
                      organization_scope=SHOP, now=clock(), who=STAFF)
    # Closed: the same phone may ask again about the same render.
    again = leads.submit_lead(job, checked, publishable_key_id=None, session_id=SESSION,
                              now=clock())
    with pytest.raises(errors.AlreadyExists):  # reopening the first would make two open
        leads.update_lead(lead.id, status="new", note=None, organization_scope=SHOP,
                          now=clock(), who=STAFF)
    with pytest.raises(errors.NotFound):
        leads.update_lead(again.id, status="won", note=None, organization_scope=SHOP + 1,
                          now=clock(), who=STAFF)
    with pytest.raises(errors.InvalidArgument):
        leads.update_lead(again.id, status="maybe", note=None, organization_scope=SHOP,
                          now=clock(), who=STAFF)
    [entry] = RenderAudit.select()
    assert entry.target == f"lead:{lead.id}"
    for private in ("Zeynep", "532", "sold"):  # nothing of the shopper, not the note
        assert private not in entry.details
    assert Lead.get_by_id(lead.id).note == "sold the 160 × 230"
