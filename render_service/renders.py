"""Submitting and cancelling renders: the render database and the credit service together.

A submission checks its room picture's header, reserves its cost as a hold whose reference is
the job id, decodes the picture (within the process's decode budget: a caller without credit
never gets a picture decoded) and records the job.
The job's id comes first (PostgreSQL: the job table's sequence; SQLite: a one-row counter), so
the job is written once, already holding its credit — one algorithm on both engines. Any way the
reservation fails leaves the job `failed`, except a user that is not the organisation's: that
refusal keeps no job (errors.UserNotFound). When the credit service could not be reached the
job is also marked `release_pending`, because a reservation whose answer was lost may exist,
and the worker pool's settler releases it.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging

from carpet_common import errors, sources
from carpet_common.calls import Who
from carpet_common.pictures import Header, decode_fully
from carpet_common.settings import Settings
from protos.carpet.credit.v1 import credit_pb2
from render_service import audit_outbox, catalogue, floor, jobs, publishable_keys
from render_service.credit_client import CreditClient
from render_service.floor import Measure, Spot
from render_service.images import GENERATED_ROOM_ASPECT, check_header
from render_service.models import PublishableKey, RenderJob, database
from render_service.placement import check_corners, dump

logger = logging.getLogger(__name__)

INSUFFICIENT_CREDITS_TEXT = "insufficient credits"
CREDIT_UNAVAILABLE_TEXT = "credit service unavailable"
# The fixed texts a submission or a cancel ends a job with (the console shows each in the
# reader's words; a refusal's own message, naming its limit, is shown as it is).
SUBMISSION_ERROR_TEXTS = (INSUFFICIENT_CREDITS_TEXT, CREDIT_UNAVAILABLE_TEXT, jobs.CANCELED_TEXT)
PUBLIC_ID_BYTES = 18  # 144 random bits, 24 URL-safe characters


@dataclasses.dataclass(frozen=True)
class Measured:
    """A render on a measured floor, as asked (render_service.floor)."""

    floor: Measure
    spots: list[Spot]
    occluders: list[list[tuple[float, float]]]


def cost_of(settings: Settings, mode: str) -> int:
    if mode not in settings.render_modes:
        raise errors.InvalidArgument(
            f"unknown mode {mode[:40]!r}; one of {', '.join(settings.render_modes)}")
    return settings.render_modes[mode]


def submit_render(*, organization_id: int, user_id: int | None, carpet_id: int, mode: str,
                  room_image: bytes, idempotency_key: str, fingerprint: str, credit: CreditClient,
                  settings: Settings, now: datetime.datetime, carpet_size_id: int = 0,
                  placement: list[tuple[float, float]] | None = None,
                  publishable_key: PublishableKey | None = None,
                  measured: Measured | None = None) -> RenderJob:
    """A render: the job, queued with its credit held (or failed, saying why). Placed by four
    corners (`placement`), by default, or by real size on a measured floor (`measured`).
    Submitted through a publishable key (the widget), it also counts under that key's caps,
    runs after the others, and gets an unguessable `public_id`."""
    cost = cost_of(settings, mode)
    room = check_header(room_image, "room_image") if room_image else None
    scene = None
    if measured is not None:
        if placement:
            raise errors.InvalidArgument("give either placement (four corners) or a floor with "
                                         "carpets, not both")
        measure = measured.floor
        if isinstance(measure, floor.FloorLine):  # its camera needs the photo's shape
            measure = dataclasses.replace(
                measure, photo_aspect=room.upright_aspect if room else GENERATED_ROOM_ASPECT)
        scene = floor.place(measure,
                            catalogue.sized_spots(measured.spots),
                            measured.occluders)
        first = scene.carpets[0]
        if carpet_id and carpet_id != first.carpet_id:
            raise errors.InvalidArgument(f"carpet_id {carpet_id} is not the design of the first "
                                         f"carpet's size {first.carpet_size_id}: leave it out")
        carpet_id, carpet_size_id = first.carpet_id, first.carpet_size_id
        placement = list(first.corners)
        cost += settings.render_extra_carpet_cost * (len(scene.carpets) - 1)
    corners = check_corners(placement or [])
    submission = jobs.new_submission(organization_id, user_id, carpet_id, mode, cost,
                                     room_image, idempotency_key, fingerprint, now=now,
                                     placement=dump(corners))
    existing = jobs.earlier_submission(submission)
    if existing is not None:  # a retry: answered even if the carpet was archived since
        return existing
    # The carpets and sizes, in the paying organisation's catalogue or the shared one, before
    # any credit is held.
    size_id = catalogue.renderable_size(carpet_id, carpet_size_id, submission.organization_id)
    for carpet in (scene.carpets[1:] if scene else ()):
        catalogue.renderable_size(carpet.carpet_id, carpet.carpet_size_id,
                                  submission.organization_id)
    submission = dataclasses.replace(submission, carpet_size_id=size_id,
                                     scene=floor.dump(scene))
    if publishable_key is not None:
        publishable_keys.take_render(publishable_key, now)
        submission = dataclasses.replace(
            submission, priority=publishable_keys.WIDGET_PRIORITY,
            public_id=sources.token_urlsafe(PUBLIC_ID_BYTES),
            publishable_key_id=publishable_key.id)
    return _submit(submission, room, credit, settings)


def _submit(submission: jobs.Submission, room: Header | None, credit: CreditClient,
            settings: Settings) -> RenderJob:
    """The job's id first (jobs.next_job_id), the hold reserved under it, then the job written
    once — queued with its hold, or failed when the reservation was refused — on both engines.
    A process that dies between the two leaves a hold whose job was never written: it is never
    captured and goes back when it expires (RENDER_HOLD_TTL_SECONDS)."""
    job_id = jobs.next_job_id()
    try:
        hold = _reserve(submission, job_id, credit, settings)
    except _Refused as refused:
        if refused.keeps_job:
            jobs.record_job(submission, job_id, hold_id=None, error_text=refused.text,
                            release_pending=refused.release_pending)
        raise refused.error from None
    try:
        _decode_room(submission, room)
    except errors.DomainError as refused:
        released = _give_back(credit, hold.id, "room picture refused")
        jobs.record_job(_retryable(submission, refused), job_id, hold_id=None,
                        error_text=refused.message, release_pending=not released)
        raise
    try:
        job, created = jobs.record_job(submission, job_id, hold_id=hold.id)
    except Exception:
        _give_back(credit, hold.id, "submission not recorded")
        raise
    if not created:  # a concurrent submission with the same key was written first
        _give_back(credit, hold.id, "duplicate submission")
    return job


def _retryable(submission: jobs.Submission, refused: errors.DomainError) -> jobs.Submission:
    """The submission as its failed job keeps it: without its idempotency key when the refusal
    says "try again shortly" (the decode budget was full), so the retry with the same key makes
    a new job instead of finding this failed one."""
    if isinstance(refused, errors.ResourceExhausted):
        return dataclasses.replace(submission, key=None)
    return submission


def _decode_room(submission: jobs.Submission, room: Header | None) -> None:
    """Every pixel of the room picture, now that its credit is held (a corrupt file is refused
    here, with its hold given back); RESOURCE_EXHAUSTED when the decode budget stays full."""
    if room is not None:
        decode_fully(submission.room_image or b"", "room_image", room)


class _Refused(Exception):
    """The reservation failed: what the job records, and the error the caller gets.
    `keeps_job` is False for a user outside the organisation: no job is kept for it."""

    def __init__(self, error: Exception, text: str, release_pending: bool,
                 keeps_job: bool = True):
        super().__init__(text)
        self.error, self.text, self.release_pending = error, text, release_pending
        self.keeps_job = keeps_job


def _reserve(submission: jobs.Submission, job_id: int, credit: CreditClient,
             settings: Settings) -> credit_pb2.Hold:
    """The job's hold. Refusals (not enough credit, a spend limit, a suspension, an unknown
    organisation or user) fail the job; when the credit service could not be reached the job
    is also marked release_pending, because a reservation whose answer was lost may exist."""
    try:
        return credit.reserve(submission.organization_id, submission.cost, job_id,
                              settings.render_hold_ttl_seconds, submission.user_id)
    except errors.InsufficientCredits as error:
        raise _Refused(error, INSUFFICIENT_CREDITS_TEXT, release_pending=False) from None
    except errors.UserNotFound as error:
        raise _Refused(error, error.message, release_pending=False, keeps_job=False) from None
    except (errors.FailedPrecondition, errors.NotFound, errors.InvalidArgument) as error:
        # SPEND_LIMIT_REACHED, ORGANIZATION_SUSPENDED, an unknown organisation
        raise _Refused(error, error.message, release_pending=False) from None
    except Exception as error:  # noqa: BLE001 - unreachable, or an answer that was lost
        raise _Refused(error, CREDIT_UNAVAILABLE_TEXT, release_pending=True) from None


def _give_back(credit: CreditClient, hold_id: int, reason: str) -> bool:
    """Release a hold no job will use; if that fails too (False), it expires
    (RENDER_HOLD_TTL_SECONDS), or the settler releases it when its job says so."""
    try:
        credit.release(hold_id, reason)
    except Exception:  # noqa: BLE001 - best effort: expiry is the fallback
        logger.warning("could not release hold %d (%s); it will expire", hold_id, reason)
        return False
    return True


def cancel_render(job: RenderJob, *, who: Who, credit: CreditClient,
                  now: datetime.datetime) -> RenderJob:
    """Cancel a queued job, audited as `who` did it: the cancel and its audit entry are one
    transaction; a refused cancel is audited on its own."""
    def record(outcome: str) -> None:
        audit_outbox.record(audit_outbox.CANCEL, who, outcome=outcome,
                            organization_id=job.organization_id, target=f"render_job:{job.id}",
                            details={"id": job.id}, now=now)

    try:
        with database.atomic():
            job = jobs.cancel_job(job.id, now)
            record("ok")
    except errors.DomainError as refused:
        record(f"error:{refused.grpc_code.name}")
        raise
    if job.hold_id is not None:
        try:
            credit.release(job.hold_id, "render canceled")
            jobs.release_done(job.id, now)
        except errors.Unavailable:
            pass  # the settler releases it once the credit service answers again
    return jobs.get_job(job.id)
