"""Keyset pagination, newest first, with opaque page tokens.

A token encodes the (created_at, id) of the last row of a page; the next page continues strictly
after it. No OFFSET: a deep page costs the same as the first one.
"""
from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass
from typing import Any

from peewee import Field, ModelSelect, Tuple

from carpet_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_page_token: str


def page_size_or_default(page_size: int) -> int:
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return page_size


def encode_token(created_at: datetime.datetime, row_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime.datetime, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.datetime.fromisoformat(created_at), int(row_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not valid") from None


def paginate(query: ModelSelect[Any], created_at: Field, row_id: Field, page_size: int,
             page_token: str) -> Page:
    """Apply keyset order and limit to `query`; fetch one extra row to know if more exist."""
    size = page_size_or_default(page_size)
    if page_token:
        after_time, after_id = decode_token(page_token)
        # A row-value comparison walks the (created_at, id) index on both engines.
        query = query.where(Tuple(created_at, row_id)
                            < Tuple(created_at.db_value(after_time), after_id))
    rows = list(query.order_by(created_at.desc(), row_id.desc()).limit(size + 1))
    return page_of(rows, size)


def page_of(rows: list[Any], size: int) -> Page:
    """A page from up to `size` + 1 rows read newest first (each with `created_at` and `id`):
    the extra row only says that more exist."""
    if len(rows) <= size:
        return Page(rows, "")
    last = rows[size - 1]
    return Page(rows[:size], encode_token(last.created_at, last.id))
