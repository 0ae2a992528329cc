"""Invariant 4 across both ledgers, in both directions.

From the render side: a job in `success` has exactly one capture (one `render` credit-log row,
the one it names, for the credits it says), except an uncharged local fallback (none); a job in
`failed` has none; no hold outlives its job's end (the hold of an ended job is captured,
released or expired).

From the credit side: every capture names a job the render database has, and that job ended in
`success`; every hold of a render job names a job the render database has. (After restoring the
two databases from snapshots taken at different moments, these find what one side has and the
other lost.)

Changes made in the render database are audited where they happen (invariant 3 across both):
every canceled job and every carpet has its audit record, in the credit service's audit log or
still in the render database's outbox on its way there.

Reads the render database and the credit database.
"""
from __future__ import annotations

from collections import defaultdict

from carpet_common.db import bind_database
from carpet_common.settings import Settings
from credit_service import models as credit_models
from render_service import models as render_models
from render_service.audit_outbox import CANCEL, CREATE_CARPET, IMPORT_CARPETS
from render_service.credit_client import hold_reference
from render_service.jobs import CANCELED_TEXT
from render_service.renderers import FALLBACK_RENDERER
from render_service.verify import count_problems

BATCH = 2000


def reconcile(settings: Settings) -> list[str]:
    """Every problem of both checks: the render database's job counts and invariant 4."""
    render_db = bind_database(render_models.database, settings.render_database_url)
    credit_db = bind_database(credit_models.database, settings.credit_database_url)
    with render_db.connection_context(), credit_db.connection_context():
        return problems()


def problems() -> list[str]:
    """Every check's findings, with both databases bound and connected."""
    return [*count_problems(), *charge_problems(), *credit_side_problems(), *audit_problems()]


def _ended_jobs():
    RenderJob = render_models.RenderJob
    last_id = 0
    while True:
        batch = list(RenderJob.select(RenderJob.id, RenderJob.organization_id, RenderJob.status,
                                      RenderJob.credit_log_id, RenderJob.credits_charged,
                                      RenderJob.renderer)
                     .where((RenderJob.id > last_id) & RenderJob.status.in_(("success", "failed")))
                     .order_by(RenderJob.id).limit(BATCH))
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def _uncharged_fallback(job) -> bool:
    """The one success without a capture: the local renderer stood in for a down image API
    and RENDER_FALLBACK_CHARGE was off (render_job's CHECK admits no other)."""
    return job.renderer == FALLBACK_RENDERER and job.credits_charged == 0 \
        and job.credit_log_id is None


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
            if job.status == "success" and _uncharged_fallback(job):
                if logs:
                    yield (f"invariant 4: uncharged fallback job {job.id} was charged "
                           f"({len(logs)} captures)")
            elif job.status == "success":
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


def _job_id(reference: str) -> int | None:
    prefix = hold_reference(0)[:-1]  # "render-job:"
    if not reference.startswith(prefix) or not reference[len(prefix):].isdigit():
        return None
    return int(reference[len(prefix):])


def _in_batches(query, id_field):
    last_id = 0
    while True:
        batch = list(query.where(id_field > last_id).order_by(id_field).limit(BATCH))
        if not batch:
            return
        yield batch
        last_id = batch[-1].id


def _jobs_by_id(job_ids) -> dict:
    RenderJob = render_models.RenderJob
    return {job.id: job for job in RenderJob.select(RenderJob.id, RenderJob.status)
            .where(RenderJob.id.in_(sorted(job_ids)))}


def credit_side_problems():
    CreditLog, CreditHold = credit_models.CreditLog, credit_models.CreditHold
    captures = CreditLog.select(CreditLog.id, CreditLog.reference).where(
        CreditLog.kind == "render")
    for batch in _in_batches(captures, CreditLog.id):
        named = {log.id: _job_id(log.reference) for log in batch}
        jobs = _jobs_by_id({job_id for job_id in named.values() if job_id is not None})
        for log in batch:
            if named[log.id] is None:
                continue  # not a render job's reference: another use of the hold cycle
            job = jobs.get(named[log.id])
            if job is None:
                yield (f"invariant 4: capture credit_log {log.id} ({log.reference}) names a job "
                       f"the render database does not have")
            elif job.status not in ("success", "failed"):  # a charged failure: see above
                yield (f"invariant 4: capture credit_log {log.id} ({log.reference}) names a job "
                       f"that is still {job.status}")
    # Only a captured hold must have its job. On PostgreSQL the hold is reserved before the job
    # is written (render_service.renders): a hold whose job is not there yet is a submission in
    # flight, or one whose process died before writing it, and such a hold is never captured
    # and goes back when it expires.
    holds = (CreditHold.select(CreditHold.id, CreditHold.reference, CreditHold.state)
             .where(CreditHold.state == "captured"))
    for batch in _in_batches(holds, CreditHold.id):
        named = {hold.id: _job_id(hold.reference) for hold in batch}
        jobs = _jobs_by_id({job_id for job_id in named.values() if job_id is not None})
        for hold in batch:
            if named[hold.id] is not None and named[hold.id] not in jobs:
                yield (f"invariant 4: {hold.state} hold {hold.id} ({hold.reference}) names a "
                       f"job the render database does not have")


def _audited_targets(action: str, targets: list[str]) -> set[str]:
    """Of `targets`, those with a successful `action` in the audit log or in the outbox."""
    AuditLog, RenderAudit = credit_models.AuditLog, render_models.RenderAudit
    found = {row.target for row in AuditLog.select(AuditLog.target).where(
        (AuditLog.action == action) & (AuditLog.outcome == "ok")
        & AuditLog.target.in_(targets))}
    found |= {row.target for row in RenderAudit.select(RenderAudit.target).where(
        (RenderAudit.action == action) & (RenderAudit.outcome == "ok")
        & RenderAudit.target.in_(targets))}
    return found


def audit_problems():
    RenderJob, Carpet = render_models.RenderJob, render_models.Carpet
    changes = (  # what was changed, the action that audits it, its target, the report line
        (RenderJob.select(RenderJob.id).where((RenderJob.status == "failed")
                                              & (RenderJob.error_text == CANCELED_TEXT)),
         RenderJob.id, CANCEL, lambda job: f"render_job:{job.id}",
         "canceled render job {} has no audit record"),
        (Carpet.select(Carpet.id).where(Carpet.import_id.is_null()), Carpet.id, CREATE_CARPET,
         lambda carpet: f"carpet:{carpet.id}", "carpet {} has no audit record of its creation"),
        # A carpet an import created: that import's one entry (render_service.catalogue_import).
        (Carpet.select(Carpet.id, Carpet.import_id).where(Carpet.import_id.is_null(False)),
         Carpet.id, IMPORT_CARPETS, lambda carpet: f"import:{carpet.import_id}",
         "carpet {} has no audit record of the import that created it"),
    )
    for query, id_field, action, target_of, problem in changes:
        for batch in _in_batches(query, id_field):
            targets = {row.id: target_of(row) for row in batch}
            audited = _audited_targets(action, list(set(targets.values())))
            for row_id, target in targets.items():
                if target not in audited:
                    yield "invariant 3: " + problem.format(row_id)
