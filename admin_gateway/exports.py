"""CSV exports of the console's lists (`docs/console.md`): `GET /admin/renders.csv`, `users.csv`,
`credit-logs.csv`, `audit.csv`, `carpets.csv` (and `organizations.csv`), with the JSON lists'
filters.

Each is one streaming AdminService call that yields a page (500 rows, keyset-paged) at a time,
turned into CSV lines as it arrives, so memory stays flat however many rows there are. UTF-8
with a byte-order mark (spreadsheet programs then show Turkish letters right), a header row,
times in UTC ISO 8601. A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`
first) is prefixed with `'` (OWASP's CSV-injection advice); number columns are left as they are.

By default the header names the columns by their identifiers (`created_at`) and values are the
API's (`success`), with `,` between fields: what scripts read. `lang=tr|en` writes the header and
the coded values (status, kind, role, mode, the credit log's own reasons) in the console's words
for that language, and `delimiter=semicolon` separates fields with `;`, which a spreadsheet set
to Turkish (or most of continental Europe) expects; the console asks for both.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from protos.carpet.credit.v1 import account_pb2, credit_pb2
from protos.carpet.render.v1 import render_pb2

BOM = "\ufeff".encode()
# A spreadsheet runs a cell as a formula when it starts with one of `= + - @ tab CR`. A
# spreadsheet that splits lines on another delimiter than ours (Turkish Excel uses `;`) starts
# a cell after each one, even inside our quotes, which it does not see as the start of a
# field. So an apostrophe goes before a formula start at the beginning of a text cell and after
# every delimiter in it (`,`, `;`, tab, a line break), not only the first (OWASP's advice on CSV
# injection), and every text cell is quoted.
FORMULA_START = re.compile(r"(^|[,;\t\r\n])([ \"]*)(?=[=+\-@\t\r])")


def _time(stamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime().isoformat(timespec="seconds") + "Z"


def _text(value: str) -> str:
    return FORMULA_START.sub(r"\1\2'", value)


def _rate(part: int, whole: int) -> str:
    """part / whole as a percentage with one decimal ('' when whole is 0)."""
    return f"{100 * part / whole:.1f}" if whole else ""


def _enum_name(enum, prefix: str) -> Callable[[int], str]:
    return lambda number: enum.Name(number).removeprefix(prefix).lower()


CATALOGUES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "i18n")
LANGUAGES = ("tr", "en")
DELIMITERS = {"comma": ",", "semicolon": ";"}


@functools.cache
def catalogue(language: str) -> Mapping[str, object]:
    """The console's words in `language` (static/i18n): one place names things for people."""
    with open(os.path.join(CATALOGUES, f"{language}.json"), encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def phrases(language: str) -> Mapping[str, str]:
    """The catalogue's single phrases (without its plural forms, which are objects)."""
    return {key: value for key, value in catalogue(language).items() if isinstance(value, str)}


@dataclass(frozen=True)
class CsvStyle:
    delimiter: str = ","
    words: Mapping[str, object] = field(default_factory=dict)  # empty: identifiers, API values

    def header(self, column: str) -> str:
        return str(self.words.get(f"csv.{column}", column))

    def word(self, key: str, value: str) -> str:
        """The catalogue's word for a coded value, or the value itself (an operator's own mode,
        a reason an admin typed)."""
        found = self.words.get(key) if self.words else None
        return found if isinstance(found, str) else value


def csv_style(query: str) -> tuple[CsvStyle, str]:
    """The CSV options of a query string (`lang`, `delimiter`) and the rest of it, the list's
    own filters. An unknown language or delimiter is refused (ValueError)."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    options = {key: value for key, value in pairs if key in ("lang", "delimiter")}
    language = options.get("lang", "")
    if language and language not in LANGUAGES:
        raise ValueError(f"lang must be one of {', '.join(LANGUAGES)}")
    delimiter = options.get("delimiter", "comma")
    if delimiter not in DELIMITERS:
        raise ValueError(f"delimiter must be one of {', '.join(DELIMITERS)}")
    rest = urllib.parse.urlencode([(key, value) for key, value in pairs
                                   if key not in ("lang", "delimiter")])
    return CsvStyle(DELIMITERS[delimiter], catalogue(language) if language else {}), rest


@dataclass(frozen=True)
class Column:
    header: str  # the identifier; `csv.<header>` in the catalogues names it for people
    value: Callable[[Any], object]  # a row (a message of the page) -> its cell
    text: bool = False  # quoted and formula-safe; numbers and times are written as they are
    word_key: Callable[[str], str] | None = None  # value -> its catalogue key, for a coded value


def _key(prefix: str, upper: bool = False) -> Callable[[str], str]:
    """A coded value -> its catalogue key: `status.` + success, `role.ROLE_` + ADMIN."""
    return lambda value: prefix + (value.upper() if upper else value)


def _action_key(action: str) -> str:
    return "action." + action.rsplit("/", 1)[-1]  # /carpet.credit.v1.CreditService/AdjustCredits


@dataclass(frozen=True)
class Export:
    """The CSV of one AdminService export (EXPORTS, by method name; its path and request are
    the method's own, admin_gateway.surface)."""

    rows: Callable[[Any], Iterable[Any]]  # a page message -> its rows
    columns: tuple[Column, ...]


_status = _enum_name(render_pb2.RenderStatus, "RENDER_STATUS_")
_kind = _enum_name(credit_pb2.CreditLogKind, "CREDIT_LOG_KIND_")
_role = _enum_name(account_pb2.Role, "ROLE_")

EXPORTS = {
    "ExportRenders": Export(lambda page: page.renders, (
        Column("id", lambda row: row.render.id),
        Column("created_at", lambda row: _time(row.render.created_at)),
        Column("organization_id", lambda row: row.render.organization_id),
        Column("organization_name", lambda row: row.organization_name, text=True),
        Column("user_id", lambda row: row.render.user_id or ""),
        Column("user_name", lambda row: row.user_name, text=True),
        Column("user_email", lambda row: row.user_email, text=True),
        Column("carpet_id", lambda row: row.render.carpet_id),
        Column("carpet_name", lambda row: row.carpet_name, text=True),
        Column("mode", lambda row: row.render.mode, text=True, word_key=_key("mode.")),
        Column("status", lambda row: _status(row.render.status), word_key=_key("status.")),
        Column("credits_charged", lambda row: row.render.credits_charged),
        Column("error_text", lambda row: row.render.error_text, text=True),
        Column("started_at", lambda row: _time(row.render.started_at)),
        Column("finished_at", lambda row: _time(row.render.finished_at)),
    )),
    "ExportOrganizations": Export(lambda page: page.organizations, (
        Column("id", lambda row: row.id),
        Column("name", lambda row: row.name, text=True),
        Column("balance", lambda row: row.balance),
        Column("held", lambda row: row.held),
        Column("available", lambda row: row.balance - row.held),
        Column("created_at", lambda row: _time(row.created_at)),
    )),
    "ExportUsers": Export(lambda page: page.users, (
        Column("id", lambda row: row.id),
        Column("name", lambda row: row.name, text=True),
        Column("email", lambda row: row.display_email or row.email, text=True),
        Column("role", lambda row: _role(row.role), word_key=_key("role.ROLE_", upper=True)),
        Column("organization_id", lambda row: row.organization_id),
        Column("organization_name", lambda row: row.organization_name, text=True),
        Column("active", lambda row: "yes" if row.active else "no", word_key=_key("users.")),
        Column("created_at", lambda row: _time(row.created_at)),
    )),
    "ExportCreditLogs": Export(lambda page: page.logs, (
        Column("id", lambda row: row.id),
        Column("created_at", lambda row: _time(row.created_at)),
        Column("organization_id", lambda row: row.organization_id),
        Column("kind", lambda row: _kind(row.kind),
               word_key=_key("kind.CREDIT_LOG_KIND_", upper=True)),
        Column("delta", lambda row: row.delta),
        Column("balance_after", lambda row: row.balance_after),
        Column("reason", lambda row: row.reason, text=True, word_key=_key("logReason.")),
        Column("actor", lambda row: row.actor, text=True),
        Column("reference", lambda row: row.reference, text=True),
        Column("user_id", lambda row: row.user_id or ""),
    )),
    # One row per size in use: a design's sizes share its SKU, name and material. Pictures
    # are not in the file.
    "ExportCarpets": Export(lambda page: [(carpet, size) for carpet in page.carpets
                                               for size in carpet.sizes], (
        Column("sku", lambda row: row[0].sku, text=True),
        Column("name", lambda row: row[0].name, text=True),
        Column("material", lambda row: row[0].material, text=True),
        Column("width_cm", lambda row: row[1].width_cm),
        Column("length_cm", lambda row: row[1].length_cm),
        Column("image", lambda row: "", text=True),
    )),
    # Quote requests: personal data, for the shop that received them.
    "ExportLeads": Export(lambda page: page.leads, (
        Column("id", lambda row: row.id),
        Column("created_at", lambda row: _time(row.created_at)),
        Column("organization_id", lambda row: row.organization_id),
        Column("status", lambda row: row.status, word_key=_key("leads.status.")),
        Column("name", lambda row: row.name, text=True),
        Column("phone", lambda row: row.phone, text=True),
        Column("email", lambda row: row.email, text=True),
        Column("message", lambda row: row.message, text=True),
        Column("render_id", lambda row: row.render_id),
        Column("carpet_id", lambda row: row.carpet_id),
        Column("note", lambda row: row.note, text=True),
        Column("consent_version", lambda row: row.consent.version, text=True),
        Column("consent_accepted_at", lambda row: _time(row.consent.accepted_at)),
    )),
    # The funnel per carpet over the period asked (`days`).
    "ExportFunnel": Export(lambda funnel: funnel.carpets, (
        Column("carpet_id", lambda row: row.carpet_id),
        Column("carpet_name", lambda row: row.carpet_name, text=True),
        Column("opened", lambda row: row.counts.opened),
        Column("photo_added", lambda row: row.counts.photo_added),
        Column("rendered", lambda row: row.counts.rendered),
        Column("shared", lambda row: row.counts.shared),
        Column("leads", lambda row: row.counts.leads),
        Column("conversions", lambda row: row.counts.conversions),
        Column("conversion_value", lambda row: f"{row.counts.conversion_value:.2f}"),
        Column("lead_rate", lambda row: _rate(row.counts.leads, row.counts.rendered)),
    )),
    "ExportAuditLogs": Export(lambda page: page.audit_logs, (
        Column("id", lambda row: row.id),
        Column("created_at", lambda row: _time(row.created_at)),
        Column("actor", lambda row: row.actor, text=True),
        Column("actor_user_id", lambda row: row.actor_user_id or ""),
        Column("role", lambda row: row.role, text=True, word_key=_key("role.ROLE_", upper=True)),
        Column("action", lambda row: row.action, text=True, word_key=_action_key),
        Column("organization_id", lambda row: row.organization_id or ""),
        Column("target", lambda row: row.target, text=True),
        Column("outcome", lambda row: row.outcome, text=True),
        Column("peer", lambda row: row.peer, text=True),
        Column("request_id", lambda row: row.request_id, text=True),
        Column("details", lambda row: row.details, text=True),
    )),
}


def csv_lines(export: Export, pages: Iterator, style: CsvStyle = CsvStyle()) -> Iterator[bytes]:
    """The CSV document, a page at a time: BOM and header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=style.delimiter, lineterminator="\r\n",
                        quoting=csv.QUOTE_NONNUMERIC)

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    def cell(column: Column, row):
        value = column.value(row)
        if column.word_key is not None and style.words and value != "":
            value = style.word(column.word_key(str(value)), str(value))
            return _text(value)
        return _text(str(value)) if column.text else value

    if style.words:  # people's words: quoted like any text
        writer.writerow([_text(style.header(column.header)) for column in export.columns])
        yield BOM + flush()
    else:  # fixed identifiers: written bare, as every script expects them
        yield BOM + (style.delimiter.join(column.header for column in export.columns)
                     + "\r\n").encode()
    for page in pages:
        for row in export.rows(page):
            writer.writerow([cell(column, row) for column in export.columns])
        yield flush()
