"""`seed` creates the default organisation, its ADMIN user and the initial credit with its
`seed` credit-log row; running it again changes nothing."""
import dataclasses

from carpet_common.settings import load_settings
from credit_service.seed import seed
from credit_service.verify import verify_credit


def _snapshot(models):
    return {model.__name__: sorted(model.select().tuples()) for model in models.ALL_MODELS}


def test_seed_creates_defaults_once(credit_db):
    from credit_service import models

    settings = dataclasses.replace(load_settings({}), seed_org_name="Halı Evi",
                                   seed_admin_email="Boss@Example.com", seed_credits=250)
    first = seed(settings)
    assert first.created == ("organization", "admin user")

    organization = models.Organization.get_by_id(first.organization_id)
    assert organization.name == "Halı Evi"
    admin = models.User.get_by_id(first.admin_user_id)
    assert (admin.email, admin.role, admin.organization_id) == (
        "boss@example.com", "ADMIN", organization.id)
    balance = models.CreditBalance.get(models.CreditBalance.organization == organization)
    assert (balance.balance, balance.held) == (250, 0)
    logs = list(models.CreditLog.select())
    assert [(log.kind, log.delta, log.balance_after) for log in logs] == [("seed", 250, 250)]
    assert verify_credit() == []

    before = _snapshot(models)
    second = seed(settings)
    assert second.created == ()
    assert (second.organization_id, second.admin_user_id) == (first.organization_id,
                                                              first.admin_user_id)
    assert _snapshot(models) == before
