"""Invariant 4 across both ledgers: a job in `success` has exactly one capture (one `render`
credit-log row, the one it names, for the credits it says); a job in `failed` has none; no hold
outlives its job's end (the hold of an ended job is captured, released or expired).

Reads the render database and the credit database.
"""
from __future__ import annotations

from collections import defaultdict

from carpet_common.db import bind_database
from carpet_common.settings import Settings
from credit_service import models as credit_models
from render_service import models as render_models
from render_service.credit_client import hold_reference
from render_service.verify import count_problems

BATCH = 2000


def reconcile(settings: Settings) -> list[str]:
    """Every problem of both checks: the render database's job counts and invariant 4."""
    render_db = bind_database(render_models.database, settings.render_database_url)
    credit_db = bind_database(credit_models.database, settings.credit_database_url)
    with render_db.connection_context(), credit_db.connection_context():
        return [*count_problems(), *charge_problems()]


def _ended_jobs():
    RenderJob = render_models.RenderJob
    last_id = 0
    while True:
        batch = list(RenderJob.select(RenderJob.id, RenderJob.organization_id, RenderJob.status,
                                      RenderJob.credit_log_id, RenderJob.credits_charged)
                     .where((RenderJob.id > last_id) & RenderJob.status.in_(("success", "failed")))
                     .order_by(RenderJob.id).limit(BATCH))
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def charge_problems():
    CreditLog, CreditHold = credit_models.CreditLog, credit_models.CreditHold
    for batch in _ended_jobs():
        references = [hold_reference(job.id) for job in batch]
        captures = defaultdict(list)
        for log in (CreditLog.select(CreditLog.id, CreditLog.reference, CreditLog.delta,
                                     CreditLog.organization)
                    .where((CreditLog.kind == "render") & CreditLog.reference.in_(references))):
            captures[log.reference].append(log)
        open_holds = {hold.reference for hold in
                      CreditHold.select(CreditHold.reference)
                      .where((CreditHold.state == "held")
                             & CreditHold.reference.in_(references))}
        for job in batch:
            reference = hold_reference(job.id)
            logs = [log for log in captures[reference]
                    if log.organization_id == job.organization_id]
            if job.status == "success":
                if len(logs) != 1:
                    yield f"invariant 4: success job {job.id} has {len(logs)} captures, not 1"
                elif logs[0].id != job.credit_log_id or -logs[0].delta != job.credits_charged:
                    yield (f"invariant 4: success job {job.id} names credit_log "
                           f"{job.credit_log_id} / {job.credits_charged} credits, the capture is "
                           f"{logs[0].id} / {-logs[0].delta}")
            elif logs:
                yield f"invariant 4: failed job {job.id} was charged ({len(logs)} captures)"
            if reference in open_holds:
                yield f"invariant 4: {job.status} job {job.id} still has a held hold"
