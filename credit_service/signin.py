"""People signing in as themselves (`docs/security.md`): passwords, sessions, refresh-token
rotation, lockout. Plain functions over the models, like accounts.py; the servicer mints the access
JWT.

A session is one sign-in. It hands out a chain of refresh tokens: each is spent by its one use
and replaced by the next. A spent token presented again means someone holds a copy, so the
whole session ends (every token descended from that sign-in, and, through the ended-sessions
list, its access tokens). Tokens are stored as SHA-256 only.

Lockout: every attempt first writes a failure row for its account and for its client address,
in its own transaction that also counts them (serialised per key), and a correct password
removes them again; so attempts running at the same time count each other, and every replica
counts together. Five failures for an account, or
from an address, within 15 minutes refuse further attempts (RESOURCE_EXHAUSTED, Retry-After)
without checking the password. Unknown emails count like known ones and cost the same hashing
time, so neither the status, the lockout nor the timing says whether an account exists.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
from dataclasses import dataclass

from peewee import Expression, fn

from carpet_common import sources
from carpet_common.auth import MAX_JWT_LIFETIME_S
from carpet_common.db import is_postgres, tuples
from carpet_common.errors import (
    InvalidArgument,
    NotFound,
    OrganizationSuspended,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from carpet_common.ratelimit import client_key
from credit_service import accounts, controls, passwords
from credit_service.audit import AuditEntry, append_audit
from credit_service.emails import display_form, normalize_email
from credit_service.models import AuthSession, LoginFailure, RefreshToken, User, database

FAILURE_LIMIT = 5  # per account, and per client address
FAILURE_WINDOW = datetime.timedelta(minutes=15)
WRONG_CREDENTIALS = "email or password is wrong"
BAD_REFRESH_TOKEN = "refresh token is not valid: sign in again"
AUTH = "/carpet.credit.v1.AuthService"


@dataclass(frozen=True)
class SignedIn:
    user: accounts.UserRow  # accounts.get_user
    session_id: str
    refresh_token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Origin:
    """Where a sign-in call comes from, as its audit row names it: the person's address (the
    gateway passes it on), the call's request id and the service that relayed it — given by
    the servicer, so this module never reads the call's context."""

    client_ip: str = ""
    request_id: str = ""
    via: str = ""


def _audit(action: str, outcome: str, *, actor: str,
           user: User | accounts.UserRow | None = None,
           origin: Origin, details: dict[str, object] | None = None) -> None:
    """A sign-in event in the audit log, naming the person; never a password or token."""
    details = dict(details or {})
    if origin.via:
        details["via"] = origin.via
    append_audit(AuditEntry(
        actor=actor, role=user.role if user else "", action=f"{AUTH}/{action}", outcome=outcome,
        organization_id=user.organization_id if user else None,
        target=f"user:{user.id}" if user else "", details=json.dumps(details, sort_keys=True),
        peer=origin.client_ip, request_id=origin.request_id,
        actor_user_id=user.id if user else None))


def _failure_keys(account: str, client_ip: str) -> list[str]:
    keys = [f"account:{account}"[:400]]
    if client_ip:
        keys.append(f"ip:{client_key(client_ip)}"[:400])
    return keys


def _locked_for(keys: list[str], now: datetime.datetime) -> int:
    """Seconds until the busiest of `keys` is below the limit again (0: not locked)."""
    since = now - FAILURE_WINDOW
    longest = 0
    for key in keys:
        count, oldest = (LoginFailure.select(fn.COUNT(LoginFailure.id),
                                             fn.MIN(LoginFailure.created_at))
                         .where((LoginFailure.key == key) & (LoginFailure.created_at > since))
                         .scalar(as_tuple=True))
        if count >= FAILURE_LIMIT:
            oldest = _as_datetime(oldest)
            longest = max(longest, math.ceil((oldest + FAILURE_WINDOW - now).total_seconds()))
    return max(longest, 1) if longest else 0


def _as_datetime(value: datetime.datetime | str) -> datetime.datetime:
    # SQLite hands an aggregate back as text.
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value


def _start_attempt(keys: list[str], now: datetime.datetime) -> list[int]:
    """The attempt's failure rows (removed again if the password is right), or
    ResourceExhausted when a key is locked. Counting and writing are one step per key: SQLite's
    transactions take the write lock up front; on PostgreSQL a transaction-scoped advisory lock
    per key (taken in a fixed order) makes concurrent attempts on one key wait for each other."""
    with database.atomic():
        if is_postgres(database.obj):
            for key in sorted(keys):
                database.execute_sql("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                     (key,))
        retry_after = _locked_for(keys, now)
        if not retry_after:
            return [LoginFailure.create(key=key, created_at=now).id for key in keys]
    raise ResourceExhausted("too many failed sign-ins: try again later",
                            retry_after_s=retry_after, reason="TOO_MANY_SIGN_IN_FAILURES")


def _first_refusal(keys: list[str], now: datetime.datetime) -> bool:
    """Whether this lockout is new: its refusals are audited once per window (the failures
    that caused it are audited one by one), so hammering a locked account cannot flood the
    audit chain, whose head every audit row locks."""
    marks = [f"locked:{key}"[:400] for key in keys]
    with database.atomic():
        seen = (LoginFailure.select().where(LoginFailure.key.in_(marks)
                                            & (LoginFailure.created_at > now - FAILURE_WINDOW))
                .exists())
        if seen:
            return False
        for mark in marks:
            LoginFailure.create(key=mark, created_at=now)
    return True


def _new_session(user: accounts.UserRow, now: datetime.datetime, refresh_ttl_s: int
                 ) -> SignedIn:
    session = AuthSession.create(id=sources.token_hex(16), user=user.id, created_at=now)
    return SignedIn(user, session.id, _next_token(session.id, now, refresh_ttl_s))


def _next_token(session_id: str, now: datetime.datetime, refresh_ttl_s: int) -> str:
    token = sources.token_urlsafe(32)
    RefreshToken.create(session=session_id, token_hash=_digest(token), created_at=now,
                        expires_at=now + datetime.timedelta(seconds=refresh_ttl_s))
    return token


def _end_sessions(condition: Expression, reason: str, now: datetime.datetime) -> int:
    ended: int = (AuthSession.update(ended_at=now, end_reason=reason)
                  .where(condition & AuthSession.ended_at.is_null()).execute())
    return ended


def login(email: str, password: str, client_ip: str, now: datetime.datetime, *,
          refresh_ttl_s: int, request_id: str = "", via: str = "") -> SignedIn:
    origin = Origin(client_ip, request_id, via)
    try:
        account = normalize_email(email)
    except InvalidArgument:
        account = display_form(email)[:320]  # not an address: fails like an unknown one
    keys = _failure_keys(account, client_ip)
    try:
        attempt = _start_attempt(keys, now)
    except ResourceExhausted as error:
        if _first_refusal(keys, now):
            _audit("Login", "denied:RESOURCE_EXHAUSTED", actor=account, origin=origin,
                   details={"error": error.message, "retry_after_s": error.retry_after_s,
                            "note": "further refusals in this window are not written"})
        raise
    user = User.get_or_none(User.email == account)
    # Checked without a user too, so an unknown email costs the time a wrong password does.
    if not passwords.verify_password(user.password_hash if user else "", password) \
            or user is None:
        _audit("Login", "denied:UNAUTHENTICATED", actor=account, user=user, origin=origin,
               details={"error": WRONG_CREDENTIALS})
        raise Unauthenticated(WRONG_CREDENTIALS)
    if not user.active:
        _audit("Login", "denied:PERMISSION_DENIED", actor=account, user=user,
               origin=origin, details={"error": "user is deactivated"})
        raise PermissionDenied("this user is deactivated", reason="USER_DEACTIVATED")
    _refuse_if_suspended(user, account, origin)
    with database.atomic():
        # The right password: this attempt was no failure, and the account starts afresh.
        (LoginFailure.delete().where(LoginFailure.id.in_(attempt)
                                     | (LoginFailure.key == keys[0])).execute())
        if passwords.needs_rehash(user.password_hash):
            User.update(password_hash=passwords.hash_password(password)).where(
                User.id == user.id).execute()
        signed_in = _new_session(accounts.get_user(user.id), now, refresh_ttl_s)
        _audit("Login", "ok", actor=account, user=user, origin=origin,
               details={"session": signed_in.session_id})
    return signed_in


def _refuse_if_suspended(user: User, account: str, origin: Origin) -> None:
    """The right credentials of a suspended organisation's user: refused, saying why."""
    try:
        controls.check_not_suspended(user.organization_id)
    except OrganizationSuspended as error:
        _audit("Login", "denied:FAILED_PRECONDITION", actor=account, user=user,
               origin=origin, details={"error": "organisation suspended"})
        raise error from None


def login_as(email: str, client_ip: str, now: datetime.datetime, *,
             refresh_ttl_s: int, provider: str, request_id: str = "", via: str = ""
             ) -> SignedIn:
    """A sign-in proved by an outside identity provider's token for `email`."""
    origin = Origin(client_ip, request_id, via)
    try:
        account = normalize_email(email)
    except InvalidArgument:
        raise Unauthenticated("the identity provider's token names no valid email") from None
    user = User.get_or_none(User.email == account)
    if user is None:
        _audit("Login", "denied:UNAUTHENTICATED", actor=account, origin=origin,
               details={"error": "no user with this email", "provider": provider})
        raise Unauthenticated("no user has the email this token names")
    if not user.active:
        _audit("Login", "denied:PERMISSION_DENIED", actor=account, user=user,
               origin=origin, details={"error": "user is deactivated"})
        raise PermissionDenied("this user is deactivated", reason="USER_DEACTIVATED")
    _refuse_if_suspended(user, account, origin)
    with database.atomic():
        signed_in = _new_session(accounts.get_user(user.id), now, refresh_ttl_s)
        _audit("Login", "ok", actor=account, user=user, origin=origin,
               details={"session": signed_in.session_id, "provider": provider})
    return signed_in


def refresh(token: str, client_ip: str, now: datetime.datetime, *,
            refresh_ttl_s: int, request_id: str = "", via: str = "") -> SignedIn:
    """The next refresh token of the session; the presented one is spent. A spent one again
    ends the session (committed before the refusal is raised)."""
    origin = Origin(client_ip, request_id, via)
    with database.atomic():
        row = (RefreshToken.select(RefreshToken, AuthSession).join(AuthSession)
               .where(RefreshToken.token_hash == _digest(token)).first()) if token else None
        if row is None or row.session.ended_at is not None or row.expires_at <= now:
            raise Unauthenticated(BAD_REFRESH_TOKEN)
        spent = (RefreshToken.update(spent_at=now)
                 .where((RefreshToken.id == row.id) & RefreshToken.spent_at.is_null()).execute())
        user = accounts.get_user(row.session.user_id)
        if not spent:  # spent before (or by a concurrent call): a copy is in other hands
            _end_sessions(AuthSession.id == row.session.id, "refresh token reused", now)
            _audit("Refresh", "denied:UNAUTHENTICATED", actor=user.email, user=user,
                   origin=origin, details={"error": "spent refresh token presented "
                                                          "again: session ended",
                                                 "session": row.session.id})
        elif not user.active:
            raise Unauthenticated(BAD_REFRESH_TOKEN)
        else:
            controls.check_not_suspended(user.organization_id)
            return SignedIn(user, row.session.id,
                            _next_token(row.session.id, now, refresh_ttl_s))
    raise Unauthenticated(BAD_REFRESH_TOKEN)


def logout(token: str, client_ip: str, now: datetime.datetime, *, request_id: str = "",
           via: str = "") -> None:
    """Ends the session of any of its refresh tokens (again: nothing more to do)."""
    origin = Origin(client_ip, request_id, via)
    with database.atomic():
        row = (RefreshToken.select(RefreshToken, AuthSession).join(AuthSession)
               .where(RefreshToken.token_hash == _digest(token)).first()) if token else None
        if row is None:
            raise Unauthenticated(BAD_REFRESH_TOKEN)
        if _end_sessions(AuthSession.id == row.session.id, "logout", now):
            user = accounts.get_user(row.session.user_id)
            _audit("Logout", "ok", actor=user.email, user=user, origin=origin,
                   details={"session": row.session.id})


def _signed_in_user(user_id: int | None) -> User:
    if user_id is None:
        raise PermissionDenied("only a signed-in user has a password to change (tokens and "
                               "services do not)")
    user = User.get_or_none(User.id == user_id)
    if user is None or not user.active:
        raise Unauthenticated("this user can no longer sign in")
    return user


def start_password_check(user_id: int | None, client_ip: str, now: datetime.datetime, *,
                         request_id: str = "", via: str = "") -> list[int]:
    """A password change's check of the current password counts like a sign-in: its failure
    rows (account and address) are written and committed before the change runs, so a wrong
    password, which rolls the change back, still counts, and a stolen access token cannot
    try passwords without end. RESOURCE_EXHAUSTED while the account is locked."""
    user = _signed_in_user(user_id)
    origin = Origin(client_ip, request_id, via)
    keys = _failure_keys(user.email, client_ip)
    try:
        return _start_attempt(keys, now)
    except ResourceExhausted as error:
        if _first_refusal(keys, now):
            _audit("ChangePassword", "denied:RESOURCE_EXHAUSTED", actor=user.email, user=user,
                   origin=origin, details={"error": error.message,
                                                 "retry_after_s": error.retry_after_s})
        raise


def change_password(user_id: int | None, session_id: str, current: str, new: str,
                    attempt: list[int], now: datetime.datetime) -> int:
    """The person's own password; their other sessions end. Returns how many ended.
    `attempt`: start_password_check's failure rows, removed when the password is right."""
    user = _signed_in_user(user_id)
    if not passwords.verify_password(user.password_hash, current):
        raise PermissionDenied("the current password is wrong", reason="WRONG_PASSWORD")
    new = passwords.check_new_password(new, user.email)
    with database.atomic():
        LoginFailure.delete().where(LoginFailure.id.in_(attempt)).execute()
        User.update(password_hash=passwords.hash_password(new)).where(User.id == user.id).execute()
        return _end_sessions((AuthSession.user == user.id) & (AuthSession.id != session_id),
                             "password changed", now)


def set_password(user_id: int, password: str,
                 now: datetime.datetime) -> accounts.UserRow:
    """An admin sets a user's password; every session of the user ends."""
    user = User.get_or_none(User.id == user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    password = passwords.check_new_password(password, user.email)
    with database.atomic():
        User.update(password_hash=passwords.hash_password(password)).where(
            User.id == user_id).execute()
        _end_sessions(AuthSession.user == user_id, "password set by an admin", now)
    return accounts.get_user(user_id)


def set_active(user_id: int, active: bool,
               now: datetime.datetime) -> accounts.UserRow:
    """Deactivation also ends every session, so live access tokens stop within
    SESSION_CHECK_INTERVAL (carpet_common.sessions)."""
    with database.atomic():
        if not User.update(active=active).where(User.id == user_id).execute():
            raise NotFound(f"user {user_id} not found")
        if not active:
            _end_sessions(AuthSession.user == user_id, "deactivated", now)
    return accounts.get_user(user_id)


def revoked_session_ids(now: datetime.datetime) -> list[str]:
    """Sessions ended recently enough that one of their access tokens may still be unexpired
    (an access token lives at most MAX_JWT_LIFETIME_S)."""
    since = now - datetime.timedelta(seconds=MAX_JWT_LIFETIME_S)
    return [session_id for (session_id,) in
            tuples(AuthSession.select(AuthSession.id).where(AuthSession.ended_at > since))]


def forget_old(now: datetime.datetime) -> None:
    """Failure rows past the window and refresh tokens long expired are no longer needed."""
    LoginFailure.delete().where(LoginFailure.created_at <= now - FAILURE_WINDOW).execute()
    (RefreshToken.delete()
     .where(RefreshToken.expires_at <= now - datetime.timedelta(days=1)).execute())
