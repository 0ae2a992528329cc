"""Publishable keys (`docs/widget.md`): the key a shop's web pages show so the widget can render
for that shop. A key is safe to show because it does little: it names one organisation, works
only from the origins listed with it, and is capped in renders per day, renders in progress and
requests per visitor. It is stored as its SHA-256 (32 random characters: a fast hash is as safe
as a slow one) with its last four characters; the whole key is shown once, when made.

Every change is written with its audit entry in one transaction; a refusal is audited on its
own. A key is never deleted: revoked, it stops at once and stays listed.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
import string
import urllib.parse
from dataclasses import dataclass, replace
from typing import Any

from limits import parse as parse_rate

from carpet_common import sources
from carpet_common.calls import Who
from carpet_common.db import Statement, is_postgres
from carpet_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from carpet_common.ratelimit import RateLimiter
from render_service import audit_outbox
from render_service.models import PublishableKey, PublishableKeyDay, RenderJob, database

PREFIX = "pk_live_"
ALPHABET = string.ascii_letters + string.digits
RANDOM_CHARACTERS = 32
KEY_PATTERN = re.compile(rf"{PREFIX}[A-Za-z0-9]{{{RANDOM_CHARACTERS}}}")
MAX_ORIGINS = 20
MAX_OVERLAP_S = 7 * 24 * 3600
DEFAULT_OVERLAP_S = 24 * 3600
WIDGET_PRIORITY = 10  # workers take the lowest first; backends and staff submit with 0
WIDGET_MODES = ("preview", "standard")
UPDATABLE = ("name", "allowed_origins", "development", "renders_per_day", "max_concurrent",
             "rate_per_visitor")
# A development key also works from any port of the machine the shop's developer works on.
DEVELOPMENT_ORIGIN = re.compile(r"http://(localhost|127\.0\.0\.1)(:\d{1,5})?")
DEFAULT_PORTS = {"http": 80, "https": 443}

CREATE = audit_outbox.CREATE_PUBLISHABLE_KEY
UPDATE = audit_outbox.UPDATE_PUBLISHABLE_KEY
ROTATE = audit_outbox.ROTATE_PUBLISHABLE_KEY
REVOKE = audit_outbox.REVOKE_PUBLISHABLE_KEY


@dataclass(frozen=True)
class KeySettings:
    """What a key allows; the defaults are what a new key gets when a field is left out."""

    name: str = ""
    allowed_origins: tuple[str, ...] = ()
    development: bool = False
    renders_per_day: int = 200
    max_concurrent: int = 3
    rate_per_visitor: str = "60/minute"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return PREFIX + "".join(sources.choice(ALPHABET) for _ in range(RANDOM_CHARACTERS))


def normalized_origin(text: str) -> str:
    """`scheme://host[:port]` as a browser sends it in `Origin` (lower case, no default port,
    nothing after the port); InvalidArgument for anything else."""
    shown = text[:100]
    parsed = urllib.parse.urlsplit(text.strip())
    try:
        port = parsed.port
    except ValueError:
        raise InvalidArgument(f"origin {shown!r} has a bad port") from None
    if (parsed.scheme not in DEFAULT_PORTS or not parsed.hostname or parsed.username
            or parsed.password or parsed.path not in ("", "/") or parsed.query
            or parsed.fragment or "*" in text):
        raise InvalidArgument(f"origin {shown!r} is not like https://shop.example "
                              f"(scheme, host and port only)")
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    if port is None or port == DEFAULT_PORTS[parsed.scheme]:
        return f"{parsed.scheme}://{host}"
    return f"{parsed.scheme}://{host}:{port}"


def checked(settings: KeySettings) -> KeySettings:
    """The settings as stored, or InvalidArgument naming the first wrong one."""
    name = settings.name.strip()
    if len(name) > 100 or "\x00" in name:
        raise InvalidArgument("name must be at most 100 characters")
    origins = tuple(dict.fromkeys(normalized_origin(origin)
                                  for origin in settings.allowed_origins))
    if not origins and not settings.development:
        raise InvalidArgument("allowed_origins must name at least one origin (a development "
                              "key may have none: it works from localhost)")
    if len(origins) > MAX_ORIGINS:
        raise InvalidArgument(f"allowed_origins holds at most {MAX_ORIGINS} origins")
    if not 1 <= settings.renders_per_day <= 1_000_000:
        raise InvalidArgument("renders_per_day must be between 1 and 1,000,000")
    if not 1 <= settings.max_concurrent <= 1000:
        raise InvalidArgument("max_concurrent must be between 1 and 1,000")
    rate = settings.rate_per_visitor.strip()
    try:
        parse_rate(rate)
    except ValueError:
        raise InvalidArgument(f"rate_per_visitor {rate[:32]!r} is not like '20/minute'"
                              ) from None
    if len(rate) > 32:
        raise InvalidArgument("rate_per_visitor is at most 32 characters")
    return KeySettings(name, origins, settings.development, settings.renders_per_day,
                       settings.max_concurrent, rate)


def settings_of(row: PublishableKey) -> KeySettings:
    return KeySettings(row.name, tuple(json.loads(row.allowed_origins)), row.development,
                       row.renders_per_day, row.max_concurrent, row.rate_per_visitor)


def _audited_details(row: PublishableKey) -> dict[str, object]:
    """What an audit entry says about a key: its settings, never the key."""
    settings = settings_of(row)
    return {"id": row.id, "last4": row.last4, "name": settings.name,
            "allowed_origins": list(settings.allowed_origins),
            "development": settings.development, "renders_per_day": settings.renders_per_day,
            "max_concurrent": settings.max_concurrent,
            "rate_per_visitor": settings.rate_per_visitor}


def create_key(organization_id: int, settings: KeySettings, *, now: datetime.datetime,
               who: Who) -> tuple[PublishableKey, str]:
    """A new key of `organization_id` and the key itself (shown this once)."""
    if organization_id <= 0:
        raise InvalidArgument("organization_id is required")
    settings = checked(settings)
    key = _new_key()
    with database.atomic():
        row = PublishableKey.create(
            organization_id=organization_id, name=settings.name, key_hash=key_hash(key),
            last4=key[-4:], allowed_origins=json.dumps(list(settings.allowed_origins)),
            development=settings.development, renders_per_day=settings.renders_per_day,
            max_concurrent=settings.max_concurrent, rate_per_visitor=settings.rate_per_visitor,
            created_at=now, updated_at=now)
        audit_outbox.record(CREATE, who, outcome="ok", organization_id=organization_id,
                            target=f"publishable_key:{row.id}", details=_audited_details(row),
                            now=now)
    return row, key


def list_keys(organization_id: int) -> list[PublishableKey]:
    """An organisation's keys (0: every organisation's), newest first, revoked ones too."""
    rows = PublishableKey.select()
    if organization_id:
        rows = rows.where(PublishableKey.organization_id == organization_id)
    return list(rows.order_by(PublishableKey.id.desc()).limit(1000))


def _own_key(key_id: int, organization_scope: int | None) -> PublishableKey:
    """The key, locked for the change; NOT_FOUND for another organisation's (STAFF)."""
    rows = PublishableKey.select().where(PublishableKey.id == key_id)
    row: PublishableKey | None = (rows.for_update().first() if is_postgres(database.obj)
                                  else rows.first())
    if row is None or organization_scope not in (None, row.organization_id):
        raise NotFound(f"publishable key {key_id} not found")
    return row


def update_key(key_id: int, changes: dict[str, Any], *, organization_scope: int | None,
               now: datetime.datetime, who: Who) -> PublishableKey:
    """The fields `changes` names (a subset of UPDATABLE) set; a revoked key is not changed."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown or not changes:
        raise InvalidArgument(f"update_mask must name some of {', '.join(UPDATABLE)}"
                              + (f"; not {', '.join(unknown)[:100]}" if unknown else ""))
    with database.atomic():
        row = _own_key(key_id, organization_scope)
        _check_not_revoked(row)
        settings = checked(replace(settings_of(row), **changes))
        row.name, row.development = settings.name, settings.development
        row.allowed_origins = json.dumps(list(settings.allowed_origins))
        row.renders_per_day, row.max_concurrent = (settings.renders_per_day,
                                                   settings.max_concurrent)
        row.rate_per_visitor, row.updated_at = settings.rate_per_visitor, now
        row.save()
        audit_outbox.record(UPDATE, who, outcome="ok", organization_id=row.organization_id,
                            target=f"publishable_key:{row.id}",
                            details={**_audited_details(row), "changed": sorted(changes)},
                            now=now)
    return row


def rotate_key(key_id: int, overlap_s: int, *, organization_scope: int | None,
               now: datetime.datetime, who: Who) -> tuple[PublishableKey, str]:
    """A new key for the same settings; the old one keeps working for `overlap_s` seconds
    (0: a day), so pages still holding it go on working until they are updated."""
    overlap_s = overlap_s or DEFAULT_OVERLAP_S
    if not 0 < overlap_s <= MAX_OVERLAP_S:
        raise InvalidArgument(f"overlap_seconds must be between 1 and {MAX_OVERLAP_S}")
    key = _new_key()
    with database.atomic():
        row = _own_key(key_id, organization_scope)
        _check_not_revoked(row)
        row.previous_hash, row.key_hash, row.last4 = row.key_hash, key_hash(key), key[-4:]
        row.previous_expires_at = now + datetime.timedelta(seconds=overlap_s)
        row.updated_at = now
        row.save()
        audit_outbox.record(ROTATE, who, outcome="ok", organization_id=row.organization_id,
                            target=f"publishable_key:{row.id}",
                            details={"id": row.id, "last4": row.last4,
                                     "overlap_seconds": overlap_s}, now=now)
    return row, key


def revoke_key(key_id: int, *, organization_scope: int | None, now: datetime.datetime,
               who: Who) -> PublishableKey:
    """The key (and a rotated-out predecessor) refused from now on."""
    with database.atomic():
        row = _own_key(key_id, organization_scope)
        _check_not_revoked(row)
        row.revoked_at, row.updated_at = now, now
        row.previous_hash, row.previous_expires_at = None, None
        row.save()
        audit_outbox.record(REVOKE, who, outcome="ok", organization_id=row.organization_id,
                            target=f"publishable_key:{row.id}",
                            details={"id": row.id, "last4": row.last4}, now=now)
    return row


def _check_not_revoked(row: PublishableKey) -> None:
    if row.revoked_at is not None:
        raise FailedPrecondition(f"publishable key {row.id} is revoked",
                                 reason="PUBLISHABLE_KEY_REVOKED")


# --- the public API ---------------------------------------------------------------------------

def active_key(key: str, now: datetime.datetime) -> PublishableKey:
    """The key's row, or UNAUTHENTICATED (PUBLISHABLE_KEY_INVALID) for a key that is malformed,
    unknown, revoked, or rotated out more than its overlap ago."""
    if KEY_PATTERN.fullmatch(key or ""):
        hashed = key_hash(key)
        row = PublishableKey.get_or_none(PublishableKey.key_hash == hashed)
        if row is None:
            row = PublishableKey.get_or_none((PublishableKey.previous_hash == hashed)
                                             & (PublishableKey.previous_expires_at > now))
        if row is not None and row.revoked_at is None:
            return row
    raise Unauthenticated("the publishable key is not valid (unknown, revoked or expired)",
                          reason="PUBLISHABLE_KEY_INVALID")


def origin_allowed(row: PublishableKey, origin: str) -> bool:
    """Whether a page of `origin` (the request's `Origin`, exactly) may use the key."""
    if not origin:
        return False
    if origin in json.loads(row.allowed_origins):
        return True
    return row.development and DEVELOPMENT_ORIGIN.fullmatch(origin) is not None


def key_for_origin(key: str, origin: str, now: datetime.datetime) -> PublishableKey:
    """The key if it is valid and `origin` is on its list, else the refusal."""
    row = active_key(key, now)
    if not origin_allowed(row, origin):
        raise PermissionDenied(f"the origin {origin[:100]!r} is not on this key's allowed "
                               f"origins", reason="ORIGIN_NOT_ALLOWED")
    return row


# One more render today unless the cap is reached (then no row comes back).
_TAKE_RENDER = Statement("""
    INSERT INTO publishable_key_day (key_id, day, renders) VALUES ({key_id}, {day}, 1)
    ON CONFLICT (key_id, day) DO UPDATE SET renders = publishable_key_day.renders + 1
    WHERE publishable_key_day.renders < {cap}
    RETURNING renders""")


def take_render(row: PublishableKey, now: datetime.datetime) -> None:
    """Count one render of today (UTC) under the key's daily cap, refused with
    KEY_DAILY_CAP_REACHED (Retry-After: the next UTC midnight) when it is reached, or with
    RATE_LIMITED while the key has max_concurrent renders queued or in progress. The count is
    one conditional upsert, so every replica counts the same row and a bot on many addresses
    gets no more than the cap; it locks the key's row for today, so concurrent submissions of
    one key check the renders in progress one after another."""
    with database.atomic():
        if _TAKE_RENDER.row(database, key_id=row.id, day=now.date(),
                            cap=row.renders_per_day) is None:
            midnight = datetime.datetime.combine(now.date() + datetime.timedelta(days=1),
                                                 datetime.time())
            raise ResourceExhausted(
                f"this key has made its {row.renders_per_day} renders for today",
                retry_after_s=max(1, int((midnight - now).total_seconds())),
                reason="KEY_DAILY_CAP_REACHED")
        running = (RenderJob.select().where((RenderJob.publishable_key_id == row.id)
                                            & RenderJob.status.in_(("queued", "processing")))
                   .count())
        if running >= row.max_concurrent:
            raise ResourceExhausted(f"this key already has {running} renders in progress",
                                    retry_after_s=5)


def renders_today(key_ids: list[int], today: datetime.date) -> dict[int, int]:
    """Renders submitted through each key today (a key without any is left out)."""
    if not key_ids:
        return {}
    days = PublishableKeyDay.select().where(PublishableKeyDay.key.in_(key_ids)
                                            & (PublishableKeyDay.day == today))
    return {day.key_id: day.renders for day in days}


class VisitorLimits:
    """Each key's per-visitor rate (`20/minute`): one limiter per distinct rate, counted per
    key and visitor address in RATE_LIMIT_STORAGE (Redis: shared by every replica)."""

    def __init__(self, storage_uri: str):
        self._storage_uri = storage_uri
        self._limiters: dict[str, RateLimiter] = {}

    def check(self, row: PublishableKey, visitor: str) -> None:
        limiter = self._limiters.get(row.rate_per_visitor)
        if limiter is None:
            limiter = self._limiters.setdefault(row.rate_per_visitor, RateLimiter(
                row.rate_per_visitor, self._storage_uri, namespace="publishable-key"))
        limiter.check(visitor or "unknown", scope=str(row.id))
