"""Small conversions between protobuf and Python values, used by every servicer."""
from __future__ import annotations

import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from carpet_common import sources
from carpet_common.errors import InvalidArgument


def utcnow() -> datetime.datetime:
    """Naive UTC, microsecond precision: stored the same way on SQLite and PostgreSQL. Read
    through carpet_common.sources, so the simulator's clock replaces it everywhere."""
    return sources.now()


_EPOCH = datetime.datetime(1970, 1, 1)


def timestamp(value: datetime.datetime | None) -> Timestamp | None:
    """Naive UTC datetime -> Timestamp (None stays unset). Counted from the epoch directly:
    Timestamp.FromDatetime goes through a time tuple and calendar.timegm, three times the CPU,
    and a page of a listing converts a hundred of them."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    since = value - _EPOCH  # days may be negative; seconds and microseconds never are
    return Timestamp(seconds=since.days * 86_400 + since.seconds,
                     nanos=since.microseconds * 1000)


def optional_time(message: Message, field: str) -> datetime.datetime | None:
    """A Timestamp field as naive UTC, or None when the caller did not set it. A timestamp
    outside 0001-01-01..9999-12-31 or with nanos outside 0..999,999,999 is the caller's error."""
    if not message.HasField(field):
        return None
    try:
        stamp: Timestamp = getattr(message, field)
        return stamp.ToDatetime()
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} is not a valid timestamp") from None
