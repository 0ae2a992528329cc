"""`python -m credit_service verify` passes on a healthy database and names each breach; an
adjustment whose audit write fails leaves nothing behind."""
import os
import subprocess
import sys

import grpc
import pytest

from carpet_common.db import is_postgres
from credit_service import models
from tests.integration.test_credit_accounts import create_org, expect_error
from tests.integration.test_credit_ledger import adjust, balance, reserve

pytestmark = pytest.mark.usefixtures("engine")


def run_verify(url):
    env = dict(os.environ, CREDIT_DATABASE_URL=url)
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
