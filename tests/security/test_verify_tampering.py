"""Books rewritten consistently: one audited adjustment raised by 1,000,000 in its credit-log
row together with the balance, its grant and the daily roll-up, so that every sum agrees. The
audit chain cannot be rewritten without its key, and `python -m credit_service verify` now
compares each audited row with what its audit row says, so the tampering fails it (it used to
pass). The same for an organisation's initial credit. Real credit process, both engines."""
import os
import subprocess
import sys

import pytest
from peewee import fn

from carpet_common.db import bind_database
from credit_service import models
from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc
from tests.conftest import ENGINES
from tests.helpers import ADMIN, AUDIT_HMAC_KEY
from tests.security.stack import Deployment

RAISED = 1_000_000


@pytest.fixture(params=ENGINES)
def deployment(request, tmp_path, pg_databases):
    urls = None
    if request.param == "postgresql":
        urls = {name: pg_databases.url(f"{name}_{request.node.name[-12:-1]}")
                for name in ("credit", "render")}
    running = Deployment(tmp_path, urls, modules=("credit_service",)).start()
    yield running
    running.stop()


def verify(deployment):
    return subprocess.run([sys.executable, "-m", "credit_service", "verify"],
                          env={**os.environ, "CREDIT_DATABASE_URL":
                               deployment.env["CREDIT_DATABASE_URL"],
                               "AUDIT_HMAC_KEY": AUDIT_HMAC_KEY},
                          capture_output=True, text=True, timeout=60)


def raise_log_row(log_id: int, by: int) -> None:
    """Every figure that sums the row, raised with it, in one transaction."""
    log = models.CreditLog.get_by_id(log_id)
    with models.database.atomic():
        models.CreditLog.update(delta=models.CreditLog.delta + by).where(
            models.CreditLog.id == log_id).execute()
        models.CreditLog.update(balance_after=models.CreditLog.balance_after + by).where(
            models.CreditLog.organization == log.organization_id,
            models.CreditLog.id >= log_id).execute()
        models.CreditBalance.update(balance=models.CreditBalance.balance + by).where(
            models.CreditBalance.organization == log.organization_id).execute()
        models.CreditGrant.update(amount=models.CreditGrant.amount + by,
                                  remaining=models.CreditGrant.remaining + by).where(
            models.CreditGrant.id == log.grant_id).execute()
        models.CreditDaily.update(added=models.CreditDaily.added + by).where(
            models.CreditDaily.organization_id == log.organization_id,
            models.CreditDaily.day == fn.date(log.created_at).coerce(False)).execute()


def test_consistently_rewritten_books_fail_verify(deployment):
    shop = deployment.organization("Tampered", 10)
    credits = credit_pb2_grpc.CreditServiceStub(deployment.channel("CREDIT_ADDR"))
    adjusted = credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=shop.id, delta=1, reason="goodwill", idempotency_key="adj-1"),
        metadata=ADMIN, timeout=10)
    deployment.processes["credit_service"].stop()
    healthy = verify(deployment)
    assert healthy.returncode == 0, healthy.stdout

    database = bind_database(models.database, deployment.env["CREDIT_DATABASE_URL"])
    with database.connection_context():
        raise_log_row(adjusted.log.id, RAISED)
    report = verify(deployment)
    assert report.returncode == 1
    assert (f"invariant 3: credit_log {adjusted.log.id} (organisation {shop.id}, delta "
            f"{1 + RAISED}, reference 'adj-1') disagrees with its audit row") in report.stdout
    # Nothing else gives it away: the sums were rewritten to agree.
    assert report.stdout.count("invariant") == 1, report.stdout

    with database.connection_context():
        raise_log_row(adjusted.log.id, -RAISED)  # put back
        seed = models.CreditLog.get((models.CreditLog.organization == shop.id)
                                    & (models.CreditLog.kind == "seed"))
        raise_log_row(seed.id, RAISED)
    database.close()
    report = verify(deployment)
    assert report.returncode == 1
    assert report.stdout.count("invariant") == 1, report.stdout
    assert (f"invariant 3: seed credit_log {seed.id} of organisation {shop.id} says "
            f"{10 + RAISED}; its audited creation says 10") in report.stdout
