"""Keeping pictures and personal data no longer than asked: room pictures of ended jobs go after
RENDER_INPUT_RETENTION (default 30 days), rendered outputs after RENDER_OUTPUT_RETENTION
(default: kept forever); an expired output answers FAILED_PRECONDITION "expired". Quote requests
go after LEAD_RETENTION (default 2 years) with their renders' pictures, and anonymous widget
sessions once a sale can no longer be attributed to them (7 days). Runs in every render-service
process; removing twice removes once, so replicas need no coordination.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from carpet_common.periodic import Periodic
from carpet_common.settings import Settings
from render_service import funnel, jobs, leads
from render_service.models import database
from render_service.storage import ImageStore

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 60.0


def sweep(settings: Settings, store: ImageStore, now: datetime.datetime) -> tuple[int, int]:
    """One pass: (room pictures removed, outputs removed)."""
    if settings.lead_retention_s is not None:
        removed = leads.expire(now - datetime.timedelta(seconds=settings.lead_retention_s),
                               store, now)
        if removed:
            logger.info("retention removed %d quote requests (LEAD_RETENTION)", removed)
    funnel.forget_sessions(now - funnel.ATTRIBUTION_WINDOW)
    inputs = outputs = 0
    if settings.render_input_retention_s is not None:
        before = now - datetime.timedelta(seconds=settings.render_input_retention_s)
        inputs = jobs.expire_inputs(before, now)
    if settings.render_output_retention_s is not None:
        before = now - datetime.timedelta(seconds=settings.render_output_retention_s)
        for job in jobs.outputs_to_expire(before):
            store.remove(job.output_path)  # the file first: a crash leaves it to the next pass
            jobs.mark_output_expired(job.id, now)
            outputs += 1
    return inputs, outputs


def retention_sweeper(settings: Settings, store: ImageStore,
                      clock: Callable[[], datetime.datetime],
                      interval_s: float = SWEEP_INTERVAL_S) -> Periodic:
    def one_round() -> None:
        with database.connection_context():
            inputs, outputs = sweep(settings, store, clock())
        if inputs or outputs:
            logger.info("retention removed %d room pictures and %d outputs", inputs, outputs)

    return Periodic("retention", interval_s, one_round)
