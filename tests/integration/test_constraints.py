"""Each data rule of docs/data-rules.md is enforced by the database itself, on both engines: the bad
row is refused even when written around the service code."""
import datetime

import pytest
from peewee import IntegrityError


@pytest.fixture
def credit(credit_db):
    from credit_service import models

    organization = models.Organization.create(name="Acme")
    models.CreditBalance.create(organization=organization, balance=10, held=0)
    user = models.User.create(organization=organization, name="Ada", email="ada@example.com",
                              role="ADMIN")
    return models, organization, user


def _refused(database, write):
    with pytest.raises(IntegrityError):
        with database.atomic():
            write()


def test_duplicate_email_in_any_letter_case_is_refused(credit_db, credit):
    models, organization, _ = credit
    _refused(credit_db, lambda: models.User.create(
        organization=organization, name="A2", email="ada@example.com", role="STAFF"))
    # Upper-case spelling of the same address: refused (emails are stored lower-cased).
    _refused(credit_db, lambda: models.User.create(
        organization=organization, name="A3", email="ADA@example.com", role="STAFF"))
    _refused(credit_db, lambda: models.User.create(
        organization=organization, name="A4", email="Bob@Example.com", role="STAFF"))
    assert models.User.select().count() == 1


def test_unknown_role_is_refused(credit_db, credit):
    models, organization, _ = credit
    _refused(credit_db, lambda: models.User.create(
        organization=organization, name="X", email="x@example.com", role="ROOT"))


def test_second_balance_row_for_an_organisation_is_refused(credit_db, credit):
    models, organization, _ = credit
    _refused(credit_db, lambda: models.CreditBalance.create(organization=organization, balance=1))


def test_negative_balance_is_refused(credit_db, credit):
    models, organization, _ = credit
    _refused(credit_db, lambda: models.CreditBalance.update(balance=-1)
             .where(models.CreditBalance.organization == organization).execute())


def test_negative_held_and_held_above_balance_are_refused(credit_db, credit):
    models, organization, _ = credit
    query = models.CreditBalance.update
    where = models.CreditBalance.organization == organization
    _refused(credit_db, lambda: query(held=-1).where(where).execute())
    _refused(credit_db, lambda: query(held=11).where(where).execute())
    assert query(held=10).where(where).execute() == 1  # exactly the balance is fine


def test_unknown_hold_state_and_non_positive_amount_are_refused(credit_db, credit):
    models, organization, _ = credit
    expires = datetime.datetime(2030, 1, 1)

    def hold(**fields):
        values = dict(organization=organization, amount=1, state="held", reference="r",
                      expires_at=expires)
        values.update(fields)
        return models.CreditHold.create(**values)

    _refused(credit_db, lambda: hold(state="pending"))
    _refused(credit_db, lambda: hold(amount=0, reference="r2"))
    hold(reference="r3")
    _refused(credit_db, lambda: hold(reference="r3"))  # one hold per (organisation, reference)


def test_zero_delta_and_unknown_kind_are_refused(credit_db, credit):
    models, organization, _ = credit

    def log(**fields):
        values = dict(organization=organization, delta=5, balance_after=5, kind="adjust",
                      reason="r")
        values.update(fields)
        return models.CreditLog.create(**values)

    _refused(credit_db, lambda: log(delta=0))
    _refused(credit_db, lambda: log(kind="gift"))
    _refused(credit_db, lambda: log(balance_after=-1))
    assert log().delta == 5


def test_foreign_keys_are_enforced(credit_db, credit):
    models, _, _ = credit
    _refused(credit_db, lambda: models.User.create(organization=999, name="Ghost",
                                                   email="ghost@example.com", role="STAFF"))


def test_render_job_rules(render_db):
    from render_service import models

    carpet = models.Carpet.create(sku="K-1", name="Kilim",
                                  image=b"png", image_content_type="image/png")

    def job(**fields):
        values = dict(organization_id=1, carpet=carpet, mode="preview", cost=1)
        values.update(fields)
        return models.RenderJob.create(**values)

    _refused(render_db, lambda: job(status="done"))
    _refused(render_db, lambda: job(status="success"))  # success must name its credit-log row
    # ... unless it is an uncharged local stand-in for a down image API, and only then.
    _refused(render_db, lambda: job(status="success", renderer="local"))
    _refused(render_db, lambda: job(status="success", renderer="local-fallback",
                                    credits_charged=1))
    assert job(status="success", renderer="local-fallback").credits_charged == 0
    _refused(render_db, lambda: job(cost=0))
    _refused(render_db, lambda: job(carpet=999))
    _refused(render_db, lambda: job(carpet_size=999))
    # A SKU is unique within its catalogue, not across catalogues.
    _refused(render_db, lambda: models.Carpet.create(
        sku="K-1", name="Dup", image=b"", image_content_type="x"))
    assert models.Carpet.create(organization_id=5, sku="K-1", name="Shop's", image=b"",
                                image_content_type="x").organization_id == 5
    _refused(render_db, lambda: models.Carpet.create(
        sku="", name="No SKU", image=b"", image_content_type="x"))

    def size(**fields):
        values = dict(carpet=carpet, width_cm=120, length_cm=180, position=0)
        values.update(fields)
        return models.CarpetSize.create(**values)

    _refused(render_db, lambda: size(width_cm=0))
    _refused(render_db, lambda: size(length_cm=10_001))
    _refused(render_db, lambda: size(carpet=999))
    # A size's SKU is unique among its carpet's sizes in use; archived ones keep theirs.
    first = size(sku="K-1-120")
    _refused(render_db, lambda: size(sku="K-1-120"))
    models.CarpetSize.update(archived_at=datetime.datetime(2026, 1, 1)).where(
        models.CarpetSize.id == first.id).execute()
    assert size(sku="K-1-120").id != first.id
    assert size().sku == size().sku == ""  # sizes without a SKU of their own
    for status in ("queued", "processing", "failed"):
        assert job(status=status).status == status
    assert job(status="success", credit_log_id=7).credit_log_id == 7
