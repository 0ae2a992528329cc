"""`python -m ops reconcile` after restoring the two databases from snapshots taken at different
moments, in both orders: what one side has and the other lost is named, from both directions;
snapshots taken together reconcile cleanly. (SQLite's online backup is the snapshot; the
PostgreSQL restore commands are in docs/operations.md.)"""
import os
import sqlite3
import subprocess
import sys

import pytest

from protos.carpet.credit.v1 import credit_pb2
from protos.carpet.render.v1 import render_pb2
from tests.builders import create_carpet, create_org, submit, wait_final
from tests.fake_image_api import tiny_png
from tests.processes import ROOT, security_env


def snapshot(url: str, path) -> str:
    """SQLite's online backup of a live database (`sqlite3 db ".backup copy"`)."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(str(path))
    with target:
        source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{path}"


def reconcile(credit_url: str, render_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **security_env(), "CREDIT_DATABASE_URL": credit_url,
           "RENDER_DATABASE_URL": render_url}
    return subprocess.run([sys.executable, "-m", "ops", "reconcile"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_snapshots_taken_apart_are_reconciled_in_both_directions(
        render_server, credit_server, start_workers, credit_db_url, render_db_url, tmp_path):
    start_workers()
    org = create_org(credit_server, "Acme", 50)
    carpet = create_carpet(render_server)

    def render_one():
        done, _ = wait_final(render_server, submit(render_server, org.id, carpet.id).id)
        assert done.status == render_pb2.RENDER_STATUS_SUCCESS, done
        return done

    first = render_one()
    # A capture that is not a render job's (another use of the hold cycle) is not invariant 4.
    hold = credit_server.credits.ReserveCredits(credit_pb2.ReserveCreditsRequest(
        organization_id=org.id, amount=1, reference="not-a-render-job"), timeout=10)
    credit_server.credits.CaptureHold(credit_pb2.CaptureHoldRequest(hold_id=hold.id), timeout=10)
    credit_then = snapshot(credit_db_url, tmp_path / "credit-then.db")
    render_then = snapshot(render_db_url, tmp_path / "render-then.db")
    later = render_one()  # rendered, charged: seconds after the first snapshots
    credit_now = snapshot(credit_db_url, tmp_path / "credit-now.db")
    render_now = snapshot(render_db_url, tmp_path / "render-now.db")

    for credit, render in ((credit_then, render_then), (credit_now, render_now)):
        together = reconcile(credit, render)
        assert together.returncode == 0, together.stdout + together.stderr

    # The render database restored from the earlier snapshot: the credit side has a capture
    # and a hold of a job the render side no longer knows.
    older_render = reconcile(credit_now, render_then)
    assert older_render.returncode == 1
    assert (f"capture credit_log {later.credit_log_id} (render-job:{later.id}) names a job the "
            f"render database does not have") in older_render.stdout
    assert (f"captured hold {later.hold_id} (render-job:{later.id}) names a job the render "
            f"database does not have") in older_render.stdout
    assert "verify: 2 problem(s)" in older_render.stdout

    # The credit database restored from the earlier snapshot: a job the render side finished
    # has no capture.
    older_credit = reconcile(credit_then, render_now)
    assert older_credit.returncode == 1
    assert older_credit.stdout.splitlines() == [
        f"invariant 4: success job {later.id} has 0 captures, not 1", "verify: 1 problem(s)"]
    assert first.id < later.id  # the first job, in both snapshots, is never named


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_change_without_its_audit_record_is_reported(
        render_server, credit_server, render_db, credit_db_url, render_db_url):
    """Cancels and new carpets are audited where they happen: each has its record in the audit
    log or still in the render database's outbox. One made behind the service's back (written
    straight into the database) is named."""
    from render_service import models

    org = create_org(credit_server, "Acme", 50)
    carpet = create_carpet(render_server)  # audited: its entry waits in the outbox
    job = submit(render_server, org.id, carpet.id)
    render_server.renders.CancelRender(render_pb2.CancelRenderRequest(id=job.id), timeout=10)
    imported = render_server.renders.ImportCarpets(render_pb2.ImportCarpetsRequest(
        file_name="c.csv", carpets=[render_pb2.ImportedCarpet(
            lines=[2, 3], sku="IMP-1", name="Imported", image=tiny_png(),
            sizes=[render_pb2.CarpetSize(width_cm=100, length_cm=150),
                   render_pb2.CarpetSize(width_cm=80, length_cm=120)])]), timeout=10)
    assert imported.created == 2  # two rows, one carpet: covered by the import's one entry
    clean = reconcile(credit_db_url, render_db_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    hidden = models.Carpet.create(sku="K-HIDDEN", name="Not audited",
                                  image=b"png", image_content_type="image/png")
    smuggled = models.Carpet.create(sku="K-SMUGGLED", name="No such import", image=b"png",
                                    image_content_type="image/png", import_id="f" * 32)
    quiet = submit(render_server, org.id, carpet.id)
    models.RenderJob.update(status="failed", error_text="canceled").where(
        models.RenderJob.id == quiet.id).execute()
    found = reconcile(credit_db_url, render_db_url)
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        f"invariant 4: failed job {quiet.id} still has a held hold",
        f"invariant 3: canceled render job {quiet.id} has no audit record",
        f"invariant 3: carpet {hidden.id} has no audit record of its creation",
        f"invariant 3: carpet {smuggled.id} has no audit record of the import that created it",
        "verify: 4 problem(s)"]
