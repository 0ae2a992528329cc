"""Submitting and cancelling renders: the render database and the credit service together.

A submission writes the job first (minimal fields), then reserves its cost as a hold whose
reference is the job id. Any way the reservation fails ends the job `failed`; when the credit
service could not be reached the job is also marked `release_pending`, because a reservation
whose answer was lost may exist, and the worker pool's settler releases it.
"""
from __future__ import annotations

import datetime

from carpet_common import errors
from carpet_common.settings import Settings
from render_service import jobs
from render_service.credit_client import CreditClient
from render_service.images import check_image
from render_service.models import RenderJob
from render_service.placement import check_corners, dump

INSUFFICIENT_CREDITS_TEXT = "insufficient credits"


def cost_of(settings: Settings, mode: str) -> int:
    if mode not in settings.render_modes:
        raise errors.InvalidArgument(
            f"unknown mode {mode[:40]!r}; one of {', '.join(settings.render_modes)}")
    return settings.render_modes[mode]


def submit_render(*, organization_id: int, user_id: int | None, carpet_id: int, mode: str,
                  room_image: bytes, idempotency_key: str, fingerprint: str, credit: CreditClient,
                  settings: Settings, now: datetime.datetime,
                  placement: list[tuple[float, float]] | None = None) -> RenderJob:
    cost = cost_of(settings, mode)
    corners = check_corners(placement or [])
    if room_image:
        check_image(room_image, "room_image")
    job, created = jobs.create_job(organization_id, user_id, carpet_id, mode, cost,
                                   room_image or None, idempotency_key, fingerprint, now=now,
                                   placement=dump(corners))
    if not created:
        return job
    try:
        hold = credit.reserve(organization_id, cost, job.id, settings.render_hold_ttl_seconds,
                              user_id)
    except errors.InsufficientCredits:
        jobs.fail_unstarted(job.id, INSUFFICIENT_CREDITS_TEXT, now, release_pending=False)
        raise
    except errors.FailedPrecondition as error:  # SPEND_LIMIT_REACHED, ORGANIZATION_SUSPENDED
        jobs.fail_unstarted(job.id, error.message, now, release_pending=False)
        raise
    except (errors.NotFound, errors.InvalidArgument) as error:
        jobs.fail_unstarted(job.id, error.message, now, release_pending=False)
        raise
    except Exception:
        jobs.fail_unstarted(job.id, "credit service unavailable", now, release_pending=True)
        raise
    jobs.attach_hold(job.id, hold.id, now, room_image or None)
    job.hold_id = hold.id
    return job


def cancel_render(job_id: int, *, credit: CreditClient, now: datetime.datetime) -> RenderJob:
    job = jobs.cancel_job(job_id, now)
    if job.hold_id is not None:
        try:
            credit.release(job.hold_id, "render canceled")
            jobs.release_done(job.id, now)
        except errors.Unavailable:
            pass  # the settler releases it once the credit service answers again
    return jobs.get_job(job_id)
