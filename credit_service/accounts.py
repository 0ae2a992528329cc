"""Organisations and users: plain functions over the models, one transaction per change."""
from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import NamedTuple

from peewee import JOIN, IntegrityError, ModelSelect, fn

from carpet_common.db import Statement
from carpet_common.errors import AlreadyExists, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from credit_service import grants, passwords
from credit_service.emails import display_form, normalize_email
from credit_service.models import ROLES, CreditBalance, CreditLog, Organization, User, database

MAX_NAME_LENGTH = 200
MAX_BATCH_IDS = 500
MAX_INITIAL_CREDITS = 10**12


def _required_name(name: str, what: str = "name") -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise InvalidArgument(f"{what} must be 1..{MAX_NAME_LENGTH} characters")
    return name


INITIAL_CREDIT = "initial credit"  # the reason of an organisation's first credit-log row


def create_organization(name: str, initial_credits: int, *, actor: str, now: datetime.datetime,
                        reason: str = INITIAL_CREDIT) -> Organization:
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


def with_balance(query: ModelSelect[Organization]) -> ModelSelect[Organization]:
    """Organisations joined with their balance row (`.balance_row`)."""
    return (query.select_extend(CreditBalance.balance, CreditBalance.held)
            .join(CreditBalance, JOIN.LEFT_OUTER,
                  on=(CreditBalance.organization == Organization.id), attr="balance_row"))


def get_organization(organization_id: int) -> Organization:
    row: Organization | None = (with_balance(Organization.select())
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


class UserRow(NamedTuple):
    """A user as a User message shows it, with its organisation's name and balance: read flat,
    since building a user, an organisation and a balance model per row cost more than the
    query. Never the password hash itself, only whether there is one."""

    id: int
    organization_id: int
    organization_name: str
    name: str
    email: str
    role: str
    credit: int
    created_at: datetime.datetime
    active: bool
    has_password: bool
    display_email: str


def get_user(user_id: int) -> UserRow:
    found = batch_get_users([user_id])
    if not found:
        raise NotFound(f"user {user_id} not found")
    return found[0]


def batch_get_users(ids: list[int]) -> list[UserRow]:
    """The users of these ids (unknown ones left out). The admin listing asks for every page's
    users, so this one is a hand-written statement (the query builder spent ~0.25 ms of CPU
    composing its SQL), one per power of two of ids, the list padded with its last id: at most
    ten statements, each prepared once per PostgreSQL connection."""
    if len(ids) > MAX_BATCH_IDS:
        raise InvalidArgument(f"at most {MAX_BATCH_IDS} ids per call")
    wanted = sorted(set(ids))
    if not wanted:
        return []
    size = 1 << (len(wanted) - 1).bit_length()
    padded = wanted + [wanted[-1]] * (size - len(wanted))
    # SQLite gives the text back
    read_time: Callable[[object], datetime.datetime] = User.created_at.python_value
    ids_by_name = {f"id_{index}": user_id for index, user_id in enumerate(padded)}
    return [UserRow(**{**row._asdict(), "created_at": read_time(row.created_at),
                       "active": bool(row.active), "has_password": bool(row.has_password)})
            for row in _users_by_id(size).rows(database, **ids_by_name)]


@functools.cache
def _users_by_id(count: int) -> Statement:
    return Statement(f"""
        SELECT u.id, u.organization_id, o.name AS organization_name, u.name, u.email, u.role,
               COALESCE(b.balance, 0) AS credit, u.created_at, u.active,
               u.password_hash <> '' AS has_password, u.display_email
        FROM "user" u JOIN organization o ON o.id = u.organization_id
        LEFT JOIN credit_balance b ON b.organization_id = u.organization_id
        WHERE u.id IN ({", ".join(f"{{id_{index}}}" for index in range(count))})""")


def list_users(page_size: int, page_token: str, *, organization_id: int = 0,
               role: str = "") -> Page:
    """A page of users (UserRow), through the query builder: filtered and paged, and not a hot
    path, unlike batch_get_users."""
    query = (User.select(User.id, User.organization.alias("organization_id"),
                         Organization.name.alias("organization_name"), User.name, User.email,
                         User.role, fn.COALESCE(CreditBalance.balance, 0).alias("credit"),
                         User.created_at, User.active,
                         (User.password_hash != "").alias("has_password"), User.display_email)
             .join(Organization, on=(User.organization == Organization.id))
             .join(CreditBalance, JOIN.LEFT_OUTER,
                   on=(CreditBalance.organization == Organization.id))
             .switch(User)
             .objects(UserRow))
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
    organizations, balance, held = balances.scalar(as_tuple=True)
    return int(organizations), int(users.scalar()), int(balance), int(held)
