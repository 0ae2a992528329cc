"""`python -m ops reconcile` names each breach of invariant 4 (both ledgers) and exits 1;
`python -m render_service verify` checks the render database's own job counts."""
import os
import subprocess
import sys

import pytest

from carpet_common.calls import Who
from credit_service import models as credit_models
from render_service import audit_outbox
from render_service import models as render_models

pytestmark = pytest.mark.usefixtures("engine")


def run_verify(credit_url, render_url, module="render_service", command="verify"):
    env = dict(os.environ, CREDIT_DATABASE_URL=credit_url, RENDER_DATABASE_URL=render_url)
    return subprocess.run([sys.executable, "-m", module, command], env=env,
                          capture_output=True, text=True, timeout=60)


def run_reconcile(credit_url, render_url):
    return run_verify(credit_url, render_url, "ops", "reconcile")


def test_verify_reports_charges_that_do_not_match_jobs(credit_db, render_db, credit_db_url,
                                                       render_db_url):
    org = credit_models.Organization.create(name="Acme")
    credit_models.CreditBalance.create(organization=org, balance=10, held=0)
    carpet = render_models.Carpet.create(sku="K", name="K", image=b"",
                                         image_content_type="image/png")
    # Its audit record, as CreateCarpet writes it (reconcile checks every carpet has one).
    audit_outbox.record(audit_outbox.CREATE_CARPET, Who("test", "ADMIN"),
                        outcome="ok", organization_id=None, target=f"carpet:{carpet.id}",
                        details={}, now=render_models.utcnow())

    def job(status, **fields):
        return render_models.RenderJob.create(organization_id=org.id, carpet=carpet,
                                              mode="preview", cost=1, status=status, **fields)

    def charge(job_row):
        hold = credit_models.CreditHold.create(organization=org, amount=1, state="captured",
                                               reference=f"render-job:{job_row.id}",
                                               expires_at=credit_models.utcnow())
        return credit_models.CreditLog.create(organization=org, hold=hold, delta=-1,
                                              balance_after=9, kind="render", reason="r",
                                              reference=f"render-job:{job_row.id}")

    good = job("queued")
    good_log = charge(good)
    render_models.RenderJob.update(status="success", credit_log_id=good_log.id,
                                   credits_charged=1).where(
        render_models.RenderJob.id == good.id).execute()
    assert run_reconcile(credit_db_url, render_db_url).returncode == 0

    uncharged = job("success", credit_log_id=999, credits_charged=1)
    charged_failure = job("failed")
    charge(charged_failure)
    open_hold = job("failed")
    credit_models.CreditHold.create(organization=org, amount=1, state="held",
                                    reference=f"render-job:{open_hold.id}",
                                    expires_at=credit_models.utcnow())
    result = run_reconcile(credit_db_url, render_db_url)
    assert result.returncode == 1
    assert f"invariant 4: success job {uncharged.id} has 0 captures, not 1" in result.stdout
    assert f"invariant 4: failed job {charged_failure.id} was charged (1 captures)" in \
        result.stdout
    assert f"invariant 4: failed job {open_hold.id} still has a held hold" in result.stdout


def test_job_counts_follow_every_change_and_verify_recounts_them(credit_db, render_db,
                                                                credit_db_url, render_db_url):
    """The triggers of migration 0002 keep render_count exact through insert, status change
    and delete; a count that disagrees with render_job is reported."""
    from render_service.jobs import render_totals

    RenderJob, RenderCount = render_models.RenderJob, render_models.RenderCount
    carpet = render_models.Carpet.create(sku="K", name="K", image=b"",
                                         image_content_type="image/png")
    jobs = [RenderJob.create(organization_id=org, carpet=carpet, mode="preview", cost=1)
            for org in (1, 1, 1, 2)]
    RenderJob.update(status="processing").where(RenderJob.id == jobs[0].id).execute()
    RenderJob.update(status="failed").where(RenderJob.id == jobs[1].id).execute()
    RenderJob.delete().where(RenderJob.id == jobs[2].id).execute()
    assert render_totals(1) == {"queued": 0, "processing": 1, "success": 0, "failed": 1}
    assert render_totals() == {"queued": 1, "processing": 1, "success": 0, "failed": 1}
    assert run_verify(credit_db_url, render_db_url).returncode == 0

    RenderCount.update(jobs=5).where((RenderCount.organization_id == 2)
                                     & (RenderCount.status == "queued")).execute()
    result = run_verify(credit_db_url, render_db_url)
    assert result.returncode == 1
    assert "render counts: organisation 2 has 1 queued jobs, render_count says 5" in result.stdout
