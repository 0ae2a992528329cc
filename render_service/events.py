"""The relay of the render service's webhook outboxes (render_event, written by a trigger in the
statement that ends a job; lead_event, written with each quote request) to the credit service,
which owns the webhooks and sends them.

Every round reads the oldest rows with their jobs, publishes them (PublishRenderEvents) and
deletes what was published. Nothing is locked while the credit service is called: two replicas
may publish the same rows, and the credit service records each job's event once (its id is the
job's: `msg_render_<job id>`). A relay killed between publishing and deleting publishes again
after restart, recorded once. The credit service being down leaves the rows for the next round.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable

from carpet_common import errors
from carpet_common.convert import timestamp
from carpet_common.periodic import Periodic
from protos.carpet.credit.v1 import notification_pb2
from render_service.credit_client import CreditClient
from render_service.models import Lead, LeadEvent, RenderEvent, RenderJob, database

logger = logging.getLogger(__name__)

RELAY_INTERVAL_S = 0.5
BATCH = 200


def _iso(moment) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z" if moment else ""


def event_data(job: RenderJob) -> dict:
    """The job's public fields, as webhook receivers get them."""
    return {"renderId": job.id, "status": job.status, "mode": job.mode,
            "carpetId": job.carpet_id, "userId": job.user_id or 0,
            "errorText": job.error_text, "creditsCharged": job.credits_charged,
            "renderer": job.renderer, "createdAt": _iso(job.created_at),
            "finishedAt": _iso(job.finished_at)}


def relay_once(credit: CreditClient) -> int:
    """Publish up to BATCH pending events; how many were handed over."""
    pending = list(RenderEvent.select().order_by(RenderEvent.job_id).limit(BATCH))
    if not pending:
        return 0
    jobs = {job.id: job for job in
            RenderJob.select().where(RenderJob.id.in_([event.job_id for event in pending]))}
    events = [notification_pb2.RenderEvent(
        job_id=event.job_id, type=event.type, organization_id=event.organization_id,
        data_json=json.dumps(event_data(jobs[event.job_id]), ensure_ascii=False),
        occurred_at=timestamp(event.occurred_at))
        for event in pending if event.job_id in jobs]
    credit.publish_render_events(events)
    (RenderEvent.delete().where(RenderEvent.job_id.in_([event.job_id for event in pending]))
     .execute())
    return len(pending)


def lead_data(lead: Lead) -> dict:
    """What a `lead.created` webhook says: which lead, about which render and carpet. No
    personal data: the receiver reads the lead through the admin API (GET /admin/leads), so
    the lead's only copy stays where retention and erasure reach it."""
    return {"leadId": lead.id, "renderId": lead.job_id, "carpetId": lead.carpet_id,
            "status": lead.status, "createdAt": _iso(lead.created_at)}


def relay_leads_once(credit: CreditClient) -> int:
    """Publish up to BATCH pending `lead.created` events; how many were handed over (an event
    whose lead was erased meanwhile is dropped)."""
    pending = list(LeadEvent.select().order_by(LeadEvent.lead_id).limit(BATCH))
    if not pending:
        return 0
    found = {lead.id: lead for lead in
             Lead.select().where(Lead.id.in_([event.lead_id for event in pending]))}
    events = [notification_pb2.RenderEvent(
        job_id=found[event.lead_id].job_id, lead_id=event.lead_id, type="lead.created",
        organization_id=event.organization_id,
        data_json=json.dumps(lead_data(found[event.lead_id]), ensure_ascii=False),
        occurred_at=timestamp(event.occurred_at))
        for event in pending if event.lead_id in found]
    if events:
        credit.publish_render_events(events)
    (LeadEvent.delete().where(LeadEvent.lead_id.in_([event.lead_id for event in pending]))
     .execute())
    return len(pending)


def event_relay(credit: CreditClient, interval_s: float = RELAY_INTERVAL_S) -> Periodic:
    def relay_batch() -> int:
        return max(relay_once(credit), relay_leads_once(credit))

    return outbox_relay("render-event-relay", relay_batch, BATCH, interval_s)


def outbox_relay(name: str, relay_batch: Callable[[], int], batch: int,
                 interval_s: float) -> Periodic:
    """Every `interval_s`, `relay_batch()` until it hands over less than a full `batch`; the
    credit service being down leaves the rows for the next round."""
    def relay() -> None:
        with database.connection_context():
            try:
                while relay_batch() == batch:
                    pass
            except errors.Unavailable:
                logger.info("credit service unavailable: %s waits for the next round", name)

    return Periodic(name, interval_s, relay)
