"""Day ranges of the usage figures (GET /admin/usage): UTC calendar days, `YYYY-MM-DD`, both
ends included, at most MAX_DAYS long."""
from __future__ import annotations

import datetime

from carpet_common.errors import InvalidArgument

MAX_DAYS = 366


def _day(text: str, name: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{name} must be a date like 2026-11-25") from None


def day_range(first: str, last: str) -> tuple[datetime.date, datetime.date]:
    start, end = _day(first, "from"), _day(last, "to")
    if end < start:
        raise InvalidArgument("`to` is before `from`")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidArgument(f"at most {MAX_DAYS} days at once")
    return start, end


def each_day(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    return [start + datetime.timedelta(days=offset) for offset in range((end - start).days + 1)]


def as_date(value: object) -> datetime.date:
    """A DATE column's value: a date on PostgreSQL, text on SQLite."""
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(str(value))
