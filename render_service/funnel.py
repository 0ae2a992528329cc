"""The shop's funnel (`docs/shares-and-leads.md`): what shoppers do with the widget, per carpet
and UTC day, kept as roll-ups (one row per organisation, day and carpet, counted by upsert so
every replica adds to the same row).

Steps: opened → photo_added → rendered → shared → lead. The widget reports the first three with
an anonymous session id (kept in the page's storage; no cookie, nothing personal); a share link
and a quote request are counted by the service where they are made, so those two are exact.
Each step also notes the carpet the session last looked at, so a sale the shop's backend
reports (`record_conversion`) within 7 days is attributed to that carpet; a sale may name a
render instead.
"""
from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field

from peewee import IntegrityError, fn

from carpet_common.db import require_transaction, tuples
from carpet_common.errors import FailedPrecondition, InvalidArgument
from render_service.models import (
    FUNNEL_STEPS,
    FunnelConversion,
    FunnelDaily,
    FunnelSession,
    RenderJob,
    database,
)

PAGE_STEPS = ("opened", "photo_added", "rendered")  # what a page reports; the rest counted here
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
ATTRIBUTION_WINDOW = datetime.timedelta(days=7)
MAX_DAYS = 366
MAX_VALUE = 1_000_000_000

def checked_session(session_id: str) -> str:
    """The session id, '' when none was given; InvalidArgument for a malformed one."""
    if session_id and not SESSION_ID.fullmatch(session_id):
        raise InvalidArgument("sessionId must be 8 to 64 of A-Z a-z 0-9 _ -")
    return session_id


def count_step(organization_id: int, carpet_id: int, step: str, session_id: str,
               now: datetime.datetime) -> None:
    """Count one `step` of `carpet_id` today, in the caller's transaction."""
    require_transaction(database)
    column = getattr(FunnelDaily, step)
    (FunnelDaily.insert(organization_id=organization_id, day=now.date(), carpet_id=carpet_id,
                        **{step: 1})
     .on_conflict(conflict_target=[FunnelDaily.organization_id, FunnelDaily.day,
                                   FunnelDaily.carpet_id], update={column: column + 1})
     .execute())
    if checked_session(session_id):
        (FunnelSession.insert(organization_id=organization_id, session_id=session_id,
                              carpet_id=carpet_id, last_seen_at=now)
         .on_conflict(conflict_target=[FunnelSession.organization_id,
                                       FunnelSession.session_id],
                      update={FunnelSession.carpet_id: carpet_id,
                              FunnelSession.last_seen_at: now})
         .execute())


def record_page_step(organization_id: int, carpet_id: int, step: str, session_id: str,
                     now: datetime.datetime) -> bool:
    """A step a page reports; False (not counted) for the steps counted where they happen."""
    if step not in FUNNEL_STEPS:
        raise InvalidArgument(f"type must be one of {', '.join(FUNNEL_STEPS)}")
    if not checked_session(session_id):
        raise InvalidArgument("sessionId is required")
    if step not in PAGE_STEPS:
        return False
    with database.atomic():
        count_step(organization_id, carpet_id, step, session_id, now)
    return True


def value_cents(value: float) -> int:
    if not (math.isfinite(value) and 0 <= value <= MAX_VALUE):
        raise InvalidArgument(f"value must be between 0 and {MAX_VALUE:,}")
    cents = round(value * 100)
    if abs(value * 100 - cents) > 1e-6:
        raise InvalidArgument("value has at most two decimals")
    return cents


def record_conversion(organization_id: int, *, session_id: str, job_id: int, value: float,
                      order_id: str, now: datetime.datetime) -> tuple[FunnelConversion, bool]:
    """A sale attributed to the carpet of a session seen (or a render made) in the last 7 days;
    (the row, whether it is new: an order reported again returns its first report)."""
    if bool(session_id) == bool(job_id):
        raise InvalidArgument("name the sale's sessionId or its renderId (one of them)")
    cents = value_cents(value)
    order_id = order_id.strip()
    if len(order_id) > 100 or not order_id.isprintable():
        raise InvalidArgument("orderId is at most 100 printable characters")
    since = now - ATTRIBUTION_WINDOW
    if session_id:
        session = FunnelSession.get_or_none(
            (FunnelSession.organization_id == organization_id)
            & (FunnelSession.session_id == checked_session(session_id))
            & (FunnelSession.last_seen_at >= since))
        carpet_id = session.carpet_id if session else None
    else:
        job = RenderJob.get_or_none((RenderJob.id == job_id)
                                    & (RenderJob.organization_id == organization_id)
                                    & (RenderJob.created_at >= since))
        carpet_id = job.carpet_id if job else None
    if carpet_id is None:
        raise FailedPrecondition("no widget session or render of this organisation in the last "
                                 "7 days to attribute the sale to", reason="NOT_ATTRIBUTABLE")
    try:
        with database.atomic():
            return FunnelConversion.create(
                organization_id=organization_id, order_id=order_id or None, carpet_id=carpet_id,
                day=now.date(), value_cents=cents, created_at=now), True
    except IntegrityError:  # the order was reported before (or at this moment, elsewhere)
        return FunnelConversion.get((FunnelConversion.organization_id == organization_id)
                                    & (FunnelConversion.order_id == order_id)), False


@dataclass
class Counts:
    opened: int = 0
    photo_added: int = 0
    rendered: int = 0
    shared: int = 0
    leads: int = 0
    conversions: int = 0
    conversion_cents: int = 0

    def add(self, other: Counts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class FunnelReport:
    days: dict[datetime.date, Counts] = field(default_factory=dict)
    carpets: dict[int, Counts] = field(default_factory=dict)
    total: Counts = field(default_factory=Counts)


def report(organization_id: int, days: int, today: datetime.date) -> FunnelReport:
    """The last `days` days up to `today`: per day (every day), per carpet, and in all."""
    days = days or 30
    if not 1 <= days <= MAX_DAYS:
        raise InvalidArgument(f"days must be between 1 and {MAX_DAYS}")
    first = today - datetime.timedelta(days=days - 1)
    result = FunnelReport(days={first + datetime.timedelta(days=offset): Counts()
                                for offset in range(days)})
    rows = FunnelDaily.select().where((FunnelDaily.day >= first) & (FunnelDaily.day <= today))
    sales = (FunnelConversion
             .select(FunnelConversion.day, FunnelConversion.carpet_id,
                     fn.COUNT(FunnelConversion.id), fn.SUM(FunnelConversion.value_cents))
             .where((FunnelConversion.day >= first) & (FunnelConversion.day <= today))
             .group_by(FunnelConversion.day, FunnelConversion.carpet_id))
    if organization_id:
        rows = rows.where(FunnelDaily.organization_id == organization_id)
        sales = sales.where(FunnelConversion.organization_id == organization_id)
    found: list[tuple[datetime.date, int, Counts]] = [
        (row.day, row.carpet_id, Counts(row.opened, row.photo_added, row.rendered, row.shared,
                                        row.lead)) for row in rows]
    found += [(day, carpet_id, Counts(conversions=int(count), conversion_cents=int(cents)))
              for day, carpet_id, count, cents in tuples(sales)]
    for day, carpet_id, counts in found:
        result.days[day].add(counts)
        result.carpets.setdefault(carpet_id, Counts()).add(counts)
        result.total.add(counts)
    return result


def forget_sessions(before: datetime.datetime) -> int:
    """Sessions not seen since `before` (past the attribution window) are deleted."""
    deleted: int = FunnelSession.delete().where(FunnelSession.last_seen_at < before).execute()
    return deleted
