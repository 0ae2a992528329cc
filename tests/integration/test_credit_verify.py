"""`python -m credit_service verify` passes on a healthy database and names each breach; an
adjustment whose audit write fails leaves nothing behind."""
import os
import subprocess
import sys

import grpc
import pytest

from carpet_common.db import is_postgres
from credit_service import audit, models
from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import audit_pb2
from tests.builders import adjust, balance, create_org, expect_error, reserve
from tests.helpers import ADMIN, AUDIT_HMAC_KEY

pytestmark = pytest.mark.usefixtures("engine")


def run_verify(url):
    env = dict(os.environ, CREDIT_DATABASE_URL=url, AUDIT_HMAC_KEY=AUDIT_HMAC_KEY)
    return subprocess.run([sys.executable, "-m", "credit_service", "verify"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_verify_reports_each_breach(credit_server, credit_db, credit_db_url):
    org = create_org(credit_server, "Acme", 10)
    adjust(credit_server, org.id, 5, "bonus")
    reserve(credit_server, org.id, 2, "job-1")
    healthy = run_verify(credit_db_url)
    assert healthy.returncode == 0, healthy.stdout
    assert "all invariants hold" in healthy.stdout

    balance_row = models.CreditBalance.organization == org.id
    models.CreditBalance.update(balance=models.CreditBalance.balance + 1).where(
        balance_row).execute()
    models.CreditBalance.update(held=0).where(balance_row).execute()
    models.AuditLog.update(details='{"reason": "forged"}').where(
        models.AuditLog.id == models.AuditLog.select(models.AuditLog.id).order_by(
            models.AuditLog.id).limit(1)).execute()
    models.AuditLog.delete().where(models.AuditLog.credit_log.is_null(False)).execute()

    broken = run_verify(credit_db_url)
    assert broken.returncode == 1
    report = broken.stdout
    assert f"invariant 1: organisation {org.id} balance 16 != sum of credit-log deltas 15" in report
    assert f"invariant 2: organisation {org.id} held 0 != sum of held holds 2" in report
    assert "invariant 3: adjust credit_log" in report
    assert "invariant 5: audit_log 1: hash does not match its contents" in report
    assert "problem(s)" in report


def test_adjustment_whose_audit_write_fails_leaves_nothing(credit_server, credit_db):
    org = create_org(credit_server, "Acme", 10)
    if is_postgres(credit_db):
        credit_db.execute_sql(
            "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit store unavailable'; END $$ LANGUAGE plpgsql")
        credit_db.execute_sql(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW "
            "WHEN (NEW.outcome = 'ok') EXECUTE FUNCTION refuse_audit()")
    else:
        credit_db.execute_sql(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log WHEN NEW.outcome = 'ok' "
            "BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END")
    try:
        error = expect_error(lambda: adjust(credit_server, org.id, 5, "bonus", key="k1"),
                             grpc.StatusCode.INTERNAL)
        assert error.details() == "internal error"  # nothing internal leaks to the caller
        assert balance(credit_server, org.id).balance == 10
        assert models.CreditLog.select().where(models.CreditLog.kind == "adjust").count() == 0
        assert models.IdempotencyRecord.select().count() == 0
    finally:
        credit_db.execute_sql("DROP TRIGGER refuse_audit" +
                              (" ON audit_log" if is_postgres(credit_db) else ""))
    # With the audit store back, the same key applies the change once.
    assert adjust(credit_server, org.id, 5, "bonus", key="k1").balance.balance == 15


def _rechain(rows, digest):
    """What someone with write access but without the key can do: recompute every hash."""
    prev = "0" * 64
    for row in rows:
        entry = audit.AuditEntry(actor=row.actor, role=row.role, action=row.action,
                                 outcome=row.outcome, organization_id=row.organization_id,
                                 target=row.target, details=row.details, peer=row.peer,
                                 request_id=row.request_id, credit_log_id=row.credit_log_id)
        new = digest(prev, row.created_at, entry)
        models.AuditLog.update(prev_hash=prev, hash=new).where(
            models.AuditLog.id == row.id).execute()
        prev = new
    models.AuditChainHead.update(last_hash=prev).execute()


@pytest.mark.parametrize("tampering", ["edited", "re-chained unkeyed", "re-chained other key",
                                       "middle row deleted", "truncated"])
def test_verify_catches_a_rewritten_audit_log(credit_server, credit_db, credit_db_url,
                                              tampering):
    org = create_org(credit_server, "Acme", 10)
    for delta in (1, 2, 3):
        adjust(credit_server, org.id, delta, "bonus")
    assert verify_credit() == []  # in this process: the key is the credit server's
    rows = list(models.AuditLog.select().order_by(models.AuditLog.id))
    if tampering == "edited":
        models.AuditLog.update(details='{"reason": "nothing to see"}').where(
            models.AuditLog.id == rows[1].id).execute()
        expected = f"audit_log {rows[1].id}: hash does not match its contents"
    elif tampering == "re-chained unkeyed":
        models.AuditLog.update(actor="mallory").where(models.AuditLog.id == rows[1].id).execute()
        rows = list(models.AuditLog.select().order_by(models.AuditLog.id))
        _rechain(rows, audit._unkeyed_row_hash)
        expected = f"audit_log {rows[0].id}: hash does not match its contents"
    elif tampering == "re-chained other key":
        import hashlib
        import hmac

        def other_key(prev, created_at, entry):
            return hmac.new(b"a guessed key " * 3, audit._material(prev, created_at, entry),
                            hashlib.sha256).hexdigest()

        _rechain(rows, other_key)
        expected = f"audit_log {rows[0].id}: hash does not match its contents"
    elif tampering == "middle row deleted":  # every row still matches its own contents
        models.AuditLog.delete().where(models.AuditLog.id == rows[1].id).execute()
        expected = f"audit_log {rows[2].id}: prev_hash does not match the row before"
    else:  # the newest row cut off, the head moved back to the row before it
        models.AuditLog.delete().where(models.AuditLog.id == rows[-1].id).execute()
        models.AuditChainHead.update(last_hash=rows[-2].hash).execute()
        expected = "audit_chain_head seal does not match"
    problems = verify_credit()
    assert any(problem.startswith(f"invariant 5: {expected}") for problem in problems), problems
    # The API answers the same as the command.
    check = credit_server.audit.VerifyAuditChain(audit_pb2.VerifyAuditChainRequest(),
                                                 metadata=ADMIN, timeout=10)
    assert not check.ok
    assert expected in [problem[:len(expected)] for problem in check.problems], check.problems


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_application_role_cannot_rewrite_the_audit_log(credit_server, credit_db,
                                                          credit_db_url):
    """docs/security.md: the services connect as a role that may INSERT audit rows but not
    UPDATE or DELETE them; the credit service works as that role."""
    import dataclasses
    import uuid
    from urllib.parse import urlparse, urlunparse

    import psycopg2

    from credit_service.app import build_server
    from tests.helpers import credit_stubs, service_settings

    role = "carpet_app_" + uuid.uuid4().hex[:8]
    database = urlparse(credit_db_url).path.lstrip("/")
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                           "audit_role.sql")) as handle:
        grants = handle.read().replace("carpet_app", role).replace(":database", database)
    owner = psycopg2.connect(credit_db_url)
    owner.autocommit = True
    with owner.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        cursor.execute(grants)
    try:
        as_role = urlunparse(urlparse(credit_db_url)._replace(
            netloc=f"{role}@{urlparse(credit_db_url).hostname}:{urlparse(credit_db_url).port}"))
        org = create_org(credit_server, "Acme", 10)
        # A second credit service, connected as the application role, takes an audited write.
        from carpet_common.db import bind_database
        from credit_service import models as credit_models

        bind_database(credit_models.database, as_role)
        running, port = build_server(dataclasses.replace(service_settings()), "127.0.0.1:0")
        stubs = credit_stubs(port)
        try:
            assert adjust(stubs, org.id, 5, "as the app role").balance.balance == 15
        finally:
            stubs.channel.close()
            stubs.anonymous.channel.close()
            running.stop(grace=1)
            credit_models.database.close_all()
            bind_database(credit_models.database, credit_db_url)
        connection = psycopg2.connect(as_role)
        try:
            for statement in ("UPDATE audit_log SET actor = 'mallory'",
                              "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    with connection, connection.cursor() as cursor:
                        cursor.execute(statement)
        finally:
            connection.close()
        assert run_verify(credit_db_url).returncode == 0
    finally:
        with owner.cursor() as cursor:
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')
        owner.close()
