"""The audit chain as plain functions (credit_service.audit): the hash format that stored rows
depend on, clipping, listing filters at their boundaries, keying an old unkeyed chain once,
and every way `broken_links` reports a chain that does not verify."""
import datetime

import pytest

from credit_service import audit
from credit_service.models import AuditChainHead, AuditLog
from tests.unit.domain.conftest import T0

ENTRY = audit.AuditEntry(actor="alice", role="ADMIN", action="/x/Y", outcome="ok",
                         organization_id=7, target="t", details="{}", peer="192.0.2.1",
                         request_id="r1", credit_log_id=None)


def test_the_hash_format_rows_were_stored_with_does_not_change(credit_db):
    """Stored rows are checked with today's code: the material hashed, the key's use and the
    head's seal are fixed (these values were computed once, with the test key)."""
    with_log = audit.AuditEntry(**{**ENTRY.__dict__, "credit_log_id": 3})
    signed_in = audit.AuditEntry(actor="ada@example.com", role="STAFF", action="/x/Y",
                                 outcome="ok", actor_user_id=9)
    assert audit.row_hash("0" * 64, T0, with_log) == (
        "47bb7936c4ed931026fd88a909c3698aee5e5acf55ba1fd49b6da13bb9a2ad71")
    assert audit.row_hash("0" * 64, T0, signed_in) == (
        "986b9fc6eb1d710d659e35e59b2fbb78250664d6e1dcbe9382130c0117898137")
    turkish = audit.AuditEntry(actor="Şule Çağlar", role="STAFF", action="/x/Y", outcome="ok",
                               details='{"reason": "İade"}')
    assert audit.row_hash("0" * 64, T0, turkish) == (  # hashed as UTF-8, not escaped
        "fdd5c0c863ed75dfb1b8dc8b7f9813abd29bb5b2367d3a494d400c872816d6a8")
    assert audit._unkeyed_row_hash("0" * 64, T0, with_log) == (
        "f371b23d5a4f9fe4f5aab043dbd59a44a5d8478347ab541e6455659cac8b36c3")
    assert audit.head_seal("a" * 64) == (
        "66b1504e4a493ecfc2c4e34bd4ebada6b51b22d5815ada225a4c49c1b4f50a64")


def test_long_fields_are_clipped_to_their_columns(credit_db):
    exactly = "a" * 200
    row = audit.append_audit(audit.AuditEntry(**{**ENTRY.__dict__, "actor": "x" * 300,
                                                  "target": exactly, "peer": "p" * 201,
                                                  "request_id": "r" * 199}), now=T0)
    stored = AuditLog.get_by_id(row.id)
    assert stored.actor == "x" * 199 + "…" and len(stored.actor) == 200
    assert stored.target == exactly
    assert stored.peer == "p" * 199 + "…"
    assert stored.request_id == "r" * 199
    assert audit.broken_links() == []


def test_listing_filters_include_the_start_and_exclude_the_end(credit_db):
    times = [T0 + datetime.timedelta(minutes=minutes) for minutes in range(4)]
    ids = [audit.append_audit(audit.AuditEntry(**{**ENTRY.__dict__, "actor": actor,
                                                  "organization_id": org, "action": action}),
                              now=moment).id
           for moment, actor, org, action in zip(times, ("a", "b", "a", "c"), (2, 1, 2, 3),
                                                 ("/x/Y", "/x/X", "/x/Z", "/x/Y"), strict=True)]

    def listed(**filters):
        return [row.id for row in audit.list_audit_logs(50, "", **filters).rows]

    assert listed(created_after=times[1], created_before=times[3]) == [ids[2], ids[1]]
    assert listed(created_after=times[1]) == [ids[3], ids[2], ids[1]]
    assert listed(created_before=times[1]) == [ids[0]]
    # Each filter is equality: values on both sides of it are left out.
    assert listed(organization_id=2) == [ids[2], ids[0]]
    assert listed(actor="b") == [ids[1]]
    assert listed(action="/x/Y") == [ids[3], ids[0]]
    assert listed() == ids[::-1]


def _unkeyed_chain(count: int) -> list[AuditLog]:
    """Rows as they were written before the chain was keyed, and a head without a seal."""
    AuditLog.delete().execute()
    prev, rows = audit.GENESIS_HASH, []
    for index in range(count):
        entry = audit.AuditEntry(**{**ENTRY.__dict__, "target": f"t{index}"})
        created = T0 + datetime.timedelta(seconds=index)
        digest = audit._unkeyed_row_hash(prev, created, entry)
        rows.append(AuditLog.create(created_at=created, actor=entry.actor, role=entry.role,
                                    action=entry.action, organization_id=entry.organization_id,
                                    target=entry.target, details=entry.details,
                                    outcome=entry.outcome, peer=entry.peer,
                                    request_id=entry.request_id, prev_hash=prev, hash=digest))
        prev = digest
    AuditChainHead.update(last_hash=prev, seal="").execute()
    return rows


def test_an_unkeyed_chain_is_keyed_once(credit_db):
    rows = _unkeyed_chain(3)
    assert audit.broken_links() != []  # the key does not match the old hashes yet
    assert audit.seal_chain() is True
    assert audit.broken_links() == []
    assert [row.prev_hash for row in AuditLog.select().order_by(AuditLog.id)][0] == \
        audit.GENESIS_HASH
    assert AuditLog.get_by_id(rows[1].id).hash != rows[1].hash  # re-chained with the key
    assert audit.seal_chain() is False  # once


@pytest.mark.parametrize("breakage", ["a row edited", "a link broken", "the head elsewhere"])
def test_a_broken_unkeyed_chain_is_not_keyed(credit_db, breakage):
    rows = _unkeyed_chain(3)
    if breakage == "a row edited":
        AuditLog.update(actor="mallory").where(AuditLog.id == rows[1].id).execute()
    elif breakage == "a link broken":
        AuditLog.update(prev_hash="1" * 64).where(AuditLog.id == rows[2].id).execute()
    else:
        AuditChainHead.update(last_hash=rows[0].hash).execute()
    with pytest.raises(audit.ChainBroken):
        audit.seal_chain()
    assert AuditChainHead.get().seal == ""  # nothing keyed


@pytest.mark.parametrize("head", ["0" * 64, "f" * 64])
def test_a_head_that_does_not_point_at_the_newest_row_is_reported(credit_db, head):
    for index in range(3):
        audit.append_audit(audit.AuditEntry(**{**ENTRY.__dict__, "target": f"t{index}"}),
                           now=T0)
    assert audit.broken_links() == []
    AuditChainHead.update(last_hash=head).execute()
    assert audit.broken_links() == ["audit_chain_head does not point at the newest audit row"]


def test_rows_are_read_in_batches_in_order(credit_db):
    ids = [audit.append_audit(audit.AuditEntry(**{**ENTRY.__dict__, "target": f"t{index}"}),
                              now=T0).id for index in range(5)]
    assert [row.id for row in audit._rows_in_order(batch_size=2)] == ids


# A stored hash or link replaced by the smallest or the largest hex value: a check that
# compared them by order instead of equality would miss one of the two.
EXTREMES = ["0" * 64, "f" * 64]


def _relink_last(rows: list[AuditLog], prev: str, digest) -> None:
    """The last row linked to `prev` and re-hashed with `digest`, the head following it: only
    the link itself is wrong."""
    last = rows[-1]
    new = digest(prev, last.created_at, audit._entry(last))
    AuditLog.update(prev_hash=prev, hash=new).where(AuditLog.id == last.id).execute()
    AuditChainHead.update(last_hash=new, seal=audit.head_seal(new) if digest is audit.row_hash
                          else "").execute()


@pytest.mark.parametrize("wrong", EXTREMES)
def test_a_wrong_link_alone_is_reported(credit_db, wrong):
    rows = [audit.append_audit(audit.AuditEntry(**{**ENTRY.__dict__, "target": f"t{index}"}),
                               now=T0) for index in range(3)]
    _relink_last(rows, wrong, audit.row_hash)
    assert audit.broken_links() == [f"audit_log {rows[-1].id}: prev_hash does not match the row "
                                    f"before"]


@pytest.mark.parametrize("wrong", EXTREMES)
def test_an_unkeyed_chain_with_a_wrong_link_alone_is_not_keyed(credit_db, wrong):
    rows = _unkeyed_chain(3)
    _relink_last(rows, wrong, audit._unkeyed_row_hash)
    with pytest.raises(audit.ChainBroken):
        audit.seal_chain()


@pytest.mark.parametrize("wrong", EXTREMES)
def test_an_unkeyed_chain_with_a_wrong_hash_alone_is_not_keyed(credit_db, wrong):
    rows = _unkeyed_chain(3)
    # The middle row's hash replaced, and the next row linked to it: only the hash is wrong.
    AuditLog.update(hash=wrong).where(AuditLog.id == rows[1].id).execute()
    _relink_last(rows, wrong, audit._unkeyed_row_hash)
    with pytest.raises(audit.ChainBroken):
        audit.seal_chain()


@pytest.mark.parametrize("wrong", EXTREMES)
def test_an_unkeyed_chain_whose_head_is_elsewhere_is_not_keyed(credit_db, wrong):
    _unkeyed_chain(3)
    AuditChainHead.update(last_hash=wrong).execute()
    with pytest.raises(audit.ChainBroken):
        audit.seal_chain()
