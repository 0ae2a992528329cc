"""CSV exports of the console's lists (`docs/console.md`): `GET /admin/renders.csv`, `users.csv`,
`credit-logs.csv`, `audit.csv` (and `organizations.csv`), with the JSON lists' filters.

Each is one streaming AdminService call that yields a page (500 rows, keyset-paged) at a time,
turned into CSV lines as it arrives, so memory stays flat however many rows there are. UTF-8
with a byte-order mark (spreadsheet programs then show Turkish letters right), a header row,
times in UTC ISO 8601. A text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`
first) is prefixed with `'` (OWASP's CSV-injection advice); number columns are left as they are.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2
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


def _enum_name(enum, prefix: str) -> Callable[[int], str]:
    return lambda number: enum.Name(number).removeprefix(prefix).lower()


@dataclass(frozen=True)
class Export:
    rpc: str  # the AdminService streaming method
    request_type: type
    rows: Callable[[object], Iterable]  # a page message -> its rows
    columns: tuple[tuple[str, Callable[[object], object], bool], ...]  # header, value, is text


_status = _enum_name(render_pb2.RenderStatus, "RENDER_STATUS_")
_kind = _enum_name(credit_pb2.CreditLogKind, "CREDIT_LOG_KIND_")
_role = _enum_name(account_pb2.Role, "ROLE_")

EXPORTS = {
    "/admin/renders.csv": Export("ExportRenders", render_pb2.ListRendersRequest,
                                 lambda page: page.renders, (
        ("id", lambda row: row.render.id, False),
        ("created_at", lambda row: _time(row.render.created_at), False),
        ("organization_id", lambda row: row.render.organization_id, False),
        ("user_id", lambda row: row.render.user_id or "", False),
        ("user_name", lambda row: row.user_name, True),
        ("user_email", lambda row: row.user_email, True),
        ("carpet_id", lambda row: row.render.carpet_id, False),
        ("mode", lambda row: row.render.mode, True),
        ("status", lambda row: _status(row.render.status), False),
        ("credits_charged", lambda row: row.render.credits_charged, False),
        ("error_text", lambda row: row.render.error_text, True),
        ("started_at", lambda row: _time(row.render.started_at), False),
        ("finished_at", lambda row: _time(row.render.finished_at), False),
    )),
    "/admin/organizations.csv": Export("ExportOrganizations",
                                       account_pb2.ListOrganizationsRequest,
                                       lambda page: page.organizations, (
        ("id", lambda row: row.id, False),
        ("name", lambda row: row.name, True),
        ("balance", lambda row: row.balance, False),
        ("held", lambda row: row.held, False),
        ("available", lambda row: row.balance - row.held, False),
        ("created_at", lambda row: _time(row.created_at), False),
    )),
    "/admin/users.csv": Export("ExportUsers", account_pb2.ListUsersRequest,
                               lambda page: page.users, (
        ("id", lambda row: row.id, False),
        ("name", lambda row: row.name, True),
        ("email", lambda row: row.display_email or row.email, True),
        ("role", lambda row: _role(row.role), False),
        ("organization_id", lambda row: row.organization_id, False),
        ("organization_name", lambda row: row.organization_name, True),
        ("active", lambda row: "yes" if row.active else "no", False),
        ("created_at", lambda row: _time(row.created_at), False),
    )),
    "/admin/credit-logs.csv": Export("ExportCreditLogs", credit_pb2.ListCreditLogsRequest,
                                     lambda page: page.logs, (
        ("id", lambda row: row.id, False),
        ("created_at", lambda row: _time(row.created_at), False),
        ("organization_id", lambda row: row.organization_id, False),
        ("kind", lambda row: _kind(row.kind), False),
        ("delta", lambda row: row.delta, False),
        ("balance_after", lambda row: row.balance_after, False),
        ("reason", lambda row: row.reason, True),
        ("actor", lambda row: row.actor, True),
        ("reference", lambda row: row.reference, True),
        ("user_id", lambda row: row.user_id or "", False),
    )),
    "/admin/audit.csv": Export("ExportAuditLogs", audit_pb2.ListAuditLogsRequest,
                               lambda page: page.audit_logs, (
        ("id", lambda row: row.id, False),
        ("created_at", lambda row: _time(row.created_at), False),
        ("actor", lambda row: row.actor, True),
        ("actor_user_id", lambda row: row.actor_user_id or "", False),
        ("role", lambda row: row.role, True),
        ("action", lambda row: row.action, True),
        ("organization_id", lambda row: row.organization_id or "", False),
        ("target", lambda row: row.target, True),
        ("outcome", lambda row: row.outcome, True),
        ("peer", lambda row: row.peer, True),
        ("request_id", lambda row: row.request_id, True),
        ("details", lambda row: row.details, True),
    )),
}


def csv_lines(export: Export, pages: Iterator) -> Iterator[bytes]:
    """The CSV document, a page at a time: BOM and header first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    # The header's names are fixed identifiers: written bare, as every reader expects them.
    yield BOM + (",".join(header for header, _, _ in export.columns) + "\r\n").encode()
    for page in pages:
        for row in export.rows(page):
            writer.writerow([_text(str(value(row))) if is_text else value(row)
                             for _, value, is_text in export.columns])
        yield flush()
