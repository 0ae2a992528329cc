"""`python -m credit_service seed`: the default organisation, its ADMIN user and its initial
credit (with the `seed` credit-log row). Running it again changes nothing."""
from __future__ import annotations

import json
from dataclasses import dataclass

from carpet_common import sources
from carpet_common.settings import Settings
from credit_service import accounts, passwords
from credit_service.audit import AuditEntry, append_audit
from credit_service.emails import normalize_email
from credit_service.models import Organization, User, database


@dataclass(frozen=True)
class SeedResult:
    organization_id: int
    admin_user_id: int
    created: tuple[str, ...]  # what this run created; empty when everything existed


def _audit(action: str, organization_id: int, target: str, details: dict) -> None:
    append_audit(AuditEntry(actor="seed", role="", action=action, outcome="ok",
                            organization_id=organization_id, target=target,
                            details=json.dumps(details, sort_keys=True)))


def seed(settings: Settings) -> SeedResult:
    created: list[str] = []
    email = normalize_email(settings.seed_admin_email)
    with database.atomic():
        organization = Organization.get_or_none(Organization.name == settings.seed_org_name.strip())
        if organization is None:
            organization = accounts.create_organization(
                settings.seed_org_name, settings.seed_credits, actor="seed", reason="seed",
                now=sources.now())
            _audit("seed.CreateOrganization", organization.id, f"organization:{organization.id}",
                   {"name": organization.name, "initial_credits": settings.seed_credits})
            created.append("organization")
        admin = User.get_or_none(User.email == email)
        has_password = admin is not None and bool(admin.password_hash)
        if admin is not None:
            admin_id = admin.id
        else:  # created without a password
            admin_id = accounts.create_user(organization.id, settings.seed_admin_name,
                                            settings.seed_admin_email, "ADMIN",
                                            now=sources.now()).id
            _audit("seed.CreateUser", organization.id, f"user:{admin_id}",
                   {"email": email, "role": "ADMIN"})
            created.append("admin user")
        if settings.seed_admin_password and not has_password:
            # Only a user without a password gets the seeded one: a password the admin has
            # changed since is never reset by running seed again.
            password = passwords.check_new_password(settings.seed_admin_password, email)
            User.update(password_hash=passwords.hash_password(password)).where(
                User.id == admin_id).execute()
            _audit("seed.SetUserPassword", organization.id, f"user:{admin_id}", {})
            created.append("admin password")
    return SeedResult(organization.id, admin_id, tuple(created))
