"""Organisations and users: plain functions over the models, one transaction per change."""
from __future__ import annotations

import datetime

from peewee import JOIN, IntegrityError, fn

from carpet_common.errors import AlreadyExists, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from credit_service import grants, passwords
from credit_service.emails import display_form, normalize_email
from credit_service.models import ROLES, CreditBalance, CreditLog, Organization, User, database

MAX_NAME_LENGTH = 200
MAX_BATCH_IDS = 500
MAX_INITIAL_CREDITS = 10**12

# A user as a User message shows it: a named tuple of _users_with_organization's columns.
UserRow = tuple


def _required_name(name: str, what: str = "name") -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise InvalidArgument(f"{what} must be 1..{MAX_NAME_LENGTH} characters")
    return name


def create_organization(name: str, initial_credits: int, *, actor: str, now: datetime.datetime,
                        reason: str = "initial credit") -> Organization:
    name = _required_name(name)
    if not 0 <= initial_credits <= MAX_INITIAL_CREDITS:
        raise InvalidArgument(f"initial_credits must be between 0 and {MAX_INITIAL_CREDITS}")
    try:
        with database.atomic():
            organization = Organization.create(name=name, created_at=now)
            CreditBalance.create(organization=organization, balance=initial_credits, held=0,
                                 updated_at=now)
            if initial_credits:  # one paid grant, never expiring
                grant = grants.add_grant(organization.id, initial_credits, grants.GrantTerms(),
                                         reason=reason, reference="", now=now)
                CreditLog.create(organization=organization, delta=initial_credits,
                                 balance_after=initial_credits, kind="seed", reason=reason,
                                 actor=actor, created_at=now, grant=grant)
    except IntegrityError:
        raise AlreadyExists(f"an organisation named {name!r} already exists") from None
    return with_balance(Organization.select()).where(Organization.id == organization.id).get()


def with_balance(query):
    """Organisations joined with their balance row (`.balance_row`)."""
    return (query.select_extend(CreditBalance.balance, CreditBalance.held)
            .join(CreditBalance, JOIN.LEFT_OUTER,
                  on=(CreditBalance.organization == Organization.id), attr="balance_row"))


def get_organization(organization_id: int) -> Organization:
    row = (with_balance(Organization.select())
           .where(Organization.id == organization_id).first())
    if row is None:
        raise NotFound(f"organisation {organization_id} not found")
    return row


def list_organizations(page_size: int, page_token: str) -> Page:
    return paginate(with_balance(Organization.select()), Organization.created_at,
                    Organization.id, page_size, page_token)


def create_user(organization_id: int, name: str, email: str, role: str, *,
                now: datetime.datetime, password: str = "") -> UserRow:
    """A user; `email` is unique in its normal form (credit_service.emails) and kept as typed
    for display. Without a password the user cannot sign in until an admin sets one."""
    name = _required_name(name)
    normalized = normalize_email(email)
    if role not in ROLES:
        raise InvalidArgument("role must be ROLE_ADMIN or ROLE_STAFF")
    password_hash = ""
    if password:
        password_hash = passwords.hash_password(
            passwords.check_new_password(password, normalized))
    try:
        with database.atomic():
            if not Organization.select().where(Organization.id == organization_id).exists():
                raise NotFound(f"organisation {organization_id} not found")
            user = User.create(organization=organization_id, name=name, email=normalized,
                               display_email=display_form(email), role=role,
                               password_hash=password_hash, created_at=now)
    except IntegrityError:
        raise AlreadyExists("a user with this email already exists") from None
    return get_user(user.id)


def _users_with_organization():
    """Users as what a User message shows, with their organisation's name and balance, as
    flat named tuples: building a user, organisation and balance model per row cost more than
    the query (a page of 50 for the admin listing). Never the password hash itself."""
    return (User.select(User.id, User.organization.alias("organization_id"),
                        Organization.name.alias("organization_name"), User.name, User.email,
                        User.role, fn.COALESCE(CreditBalance.balance, 0).alias("credit"),
                        User.created_at, User.active,
                        (User.password_hash != "").alias("has_password"), User.display_email)
            .join(Organization, on=(User.organization == Organization.id))
            .join(CreditBalance, JOIN.LEFT_OUTER,
                  on=(CreditBalance.organization == Organization.id))
            .switch(User)
            .namedtuples())


def get_user(user_id: int) -> UserRow:
    row = _users_with_organization().where(User.id == user_id).first()
    if row is None:
        raise NotFound(f"user {user_id} not found")
    return row


def batch_get_users(ids: list[int]) -> list[UserRow]:
    if len(ids) > MAX_BATCH_IDS:
        raise InvalidArgument(f"at most {MAX_BATCH_IDS} ids per call")
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(_users_with_organization().where(User.id.in_(wanted)))


def list_users(page_size: int, page_token: str, *, organization_id: int = 0,
               role: str = "") -> Page:
    query = _users_with_organization()
    if organization_id:
        query = query.where(User.organization == organization_id)
    if role:
        query = query.where(User.role == role)
    return paginate(query, User.created_at, User.id, page_size, page_token)


def account_totals(organization_id: int = 0) -> tuple[int, int, int, int]:
    """(organisations, users, sum of balances, sum of held), for one organisation or all."""
    balances = CreditBalance.select(fn.COUNT(CreditBalance.id),
                                    fn.COALESCE(fn.SUM(CreditBalance.balance), 0),
                                    fn.COALESCE(fn.SUM(CreditBalance.held), 0))
    users = User.select(fn.COUNT(User.id))
    if organization_id:
        balances = balances.where(CreditBalance.organization == organization_id)
        users = users.where(User.organization == organization_id)
    organizations, balance, held = balances.tuples().get()
    return int(organizations), int(users.scalar()), int(balance), int(held)
