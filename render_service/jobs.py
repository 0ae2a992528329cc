"""Render jobs in the render database: plain functions, each change one transaction.

A job moves queued -> processing -> success | failed. Every move is a conditional UPDATE on the
job's current status (and, for a worker, on its lease), so a racing cancel, a second worker or a
restarted process can never move a job twice.
"""
from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from peewee import Expression, IntegrityError, fn

from carpet_common import tracing
from carpet_common.days import as_date
from carpet_common.db import Statement, is_postgres, require_transaction, tuples
from carpet_common.errors import FailedPrecondition, IdempotencyKeyReused, InvalidArgument, NotFound
from carpet_common.idempotency import clean_key
from carpet_common.paging import Page, decode_token, page_of, page_size_or_default
from render_service.models import (
    RENDER_STATUSES,
    Carpet,
    RenderCarpetDaily,
    RenderCount,
    RenderDaily,
    RenderInput,
    RenderJob,
    RenderStorage,
    database,
)

TERMINAL = ("success", "failed")
CANCELED_TEXT = "canceled"


# The submission path's writes, written once as SQL (see carpet_common.db.Statement). The job's
# id is taken first (next_job_id), so the job is written once, with its hold or as refused.
_INSERT_JOB = Statement("""
    INSERT INTO render_job (id, organization_id, user_id, carpet_id, carpet_size_id, mode,
                            status, error_text,
                            cost, credits_charged, idempotency_key, request_hash, attempts,
                            release_pending, has_room_image, input_bytes, output_bytes,
                            output_expired, placement, hold_id, created_at, updated_at,
                            finished_at, priority, public_id, publishable_key_id, scene,
                            trace_parent)
    VALUES ({id}, {organization_id}, {user_id}, {carpet_id}, {carpet_size_id}, {mode},
            {status}, {error_text},
            {cost}, 0, {idempotency_key}, {request_hash}, 0, {release_pending},
            {has_room_image}, {input_bytes}, 0, {output_expired}, {placement}, {hold_id},
            {now}, {now}, {finished_at}, {priority}, {public_id}, {publishable_key_id},
            {scene}, {trace_parent})
    RETURNING id""")
# The job's id before the reservation (its hold is reserved under it): PostgreSQL takes it from
# render_job's own sequence; SQLite has no sequences, so a one-row counter (migration 0012)
# stands in — one statement under SQLite's write lock, never below an id already written.
_NEXT_JOB_ID_PG = Statement(
    "SELECT nextval(pg_get_serial_sequence('render_job', 'id')) AS value")
_NEXT_JOB_ID_SQLITE = Statement("""
    UPDATE render_job_next_id
    SET value = MAX(value, (SELECT COALESCE(MAX(id), 0) FROM render_job)) + 1
    RETURNING value""")


# A submission's statements on PostgreSQL, for the bench's `ceiling.submit_sql`, which runs
# these very statements with nothing around them (bench/render_workloads.py).
SUBMISSION_STATEMENTS = {"next_job_id": _NEXT_JOB_ID_PG, "insert_job": _INSERT_JOB}


@dataclass(frozen=True)
class Submission:
    """What a submission asks for, as the job will record it."""

    organization_id: int
    user_id: int | None
    carpet_id: int
    mode: str
    cost: int
    room_image: bytes | None
    key: str | None  # the cleaned idempotency key
    fingerprint: str
    placement: str
    now: datetime.datetime
    carpet_size_id: int | None = None  # set once the carpet is found renderable
    # A widget render (render_service.publishable_keys): after the others, by an unguessable
    # id, under its key's caps.
    priority: int = 0
    public_id: str | None = None
    publishable_key_id: int | None = None
    scene: str = ""  # on a measured floor: render_service.floor's JSON


def new_submission(organization_id: int, user_id: int | None, carpet_id: int, mode: str,
                   cost: int, room_image: bytes | None, idempotency_key: str, fingerprint: str,
                   *, now: datetime.datetime, placement: str = "") -> Submission:
    if organization_id <= 0:
        raise InvalidArgument("organization_id is required")
    return Submission(organization_id, user_id, carpet_id, mode, cost, room_image or None,
                      clean_key(idempotency_key) or None, fingerprint, placement, now)


def earlier_submission(submission: Submission) -> RenderJob | None:
    """The job an earlier submission with the same idempotency key made (None without one)."""
    if not submission.key:
        return None
    return _by_key(submission.organization_id, submission.key, submission.fingerprint)


def next_job_id() -> int:
    """A new job's id, committed at once: an id is never handed out twice, and one a failed
    submission took is skipped (a gap, as any sequence leaves)."""
    statement = _NEXT_JOB_ID_PG if is_postgres(database.obj) else _NEXT_JOB_ID_SQLITE
    return int(statement.row(database).value)


def record_job(submission: Submission, job_id: int, *, hold_id: int | None,
               error_text: str = "", release_pending: bool = False) -> tuple[RenderJob, bool]:
    """Write the job `job_id` (from next_job_id) once: queued with its hold and its room
    picture, or, without a hold, failed with `error_text`. (job, created): with a key an
    earlier submission already used, that one's job and False (the caller gives its hold
    back)."""
    queued = hold_id is not None
    stored = len(submission.room_image) if queued and submission.room_image else 0
    row = _values(submission, job_id, hold_id=hold_id, error_text=error_text,
                  release_pending=release_pending, stored=stored)
    try:
        if stored:
            with database.atomic():
                _INSERT_JOB.row(database, **row)
                RenderInput.insert(job=job_id, room_image=submission.room_image).execute()
        else:  # one statement: committed on its own, without a BEGIN and a COMMIT around it
            _INSERT_JOB.row(database, **row)
    except IntegrityError as error:
        return _conflicting(submission, error), False
    return _job(submission, job_id, status="queued" if queued else "failed",
                error_text=error_text, hold_id=hold_id, release_pending=release_pending,
                input_bytes=stored), True


def _values(s: Submission, job_id: int, *, hold_id: int | None, error_text: str,
            release_pending: bool, stored: int) -> dict[str, object]:
    """_INSERT_JOB's parameters: queued with `hold_id`, or failed with `error_text` without
    one."""
    ended = hold_id is None
    return dict(id=job_id, organization_id=s.organization_id, user_id=s.user_id,
                carpet_id=s.carpet_id, carpet_size_id=s.carpet_size_id, mode=s.mode,
                status="failed" if ended else "queued",
                error_text=error_text, cost=s.cost, idempotency_key=s.key,
                request_hash=s.fingerprint, release_pending=release_pending,
                has_room_image=bool(s.room_image), input_bytes=stored, output_expired=False,
                placement=s.placement, hold_id=hold_id, now=s.now,
                finished_at=s.now if ended else None, priority=s.priority,
                public_id=s.public_id, publishable_key_id=s.publishable_key_id, scene=s.scene,
                trace_parent=tracing.current_traceparent())


def _conflicting(submission: Submission, error: IntegrityError) -> RenderJob:
    """After an insert refused by a constraint: the concurrent submission with the same key
    that won, or NotFound for an unknown carpet, or the constraint's own error."""
    existing = earlier_submission(submission)
    if existing is not None:
        return existing
    if not Carpet.select().where(Carpet.id == submission.carpet_id).exists():
        raise NotFound(f"carpet {submission.carpet_id} not found") from None
    raise error


def _job(s: Submission, job_id: int, *, status: str, error_text: str, hold_id: int | None,
         release_pending: bool, input_bytes: int) -> RenderJob:
    """The job as written, without reading it back."""
    return RenderJob(id=job_id, organization_id=s.organization_id, user_id=s.user_id,
                     carpet=s.carpet_id, carpet_size=s.carpet_size_id, mode=s.mode,
                     status=status, error_text=error_text,
                     cost=s.cost, credits_charged=0, idempotency_key=s.key,
                     request_hash=s.fingerprint, attempts=0, release_pending=release_pending,
                     has_room_image=bool(s.room_image), input_bytes=input_bytes,
                     output_bytes=0, output_expired=False, placement=s.placement,
                     hold_id=hold_id, created_at=s.now, updated_at=s.now,
                     finished_at=None if status == "queued" else s.now, priority=s.priority,
                     public_id=s.public_id, publishable_key_id=s.publishable_key_id,
                     scene=s.scene)


def _by_key(organization_id: int, key: str, fingerprint: str) -> RenderJob | None:
    existing = RenderJob.get_or_none((RenderJob.organization_id == organization_id)
                                     & (RenderJob.idempotency_key == key))
    if existing is not None and existing.request_hash != fingerprint:
        raise IdempotencyKeyReused("idempotency_key was already used with a different request")
    return existing


def _forget_input(job_id: int) -> None:
    """Inside the transaction that ends a job unrendered: its room picture goes."""
    require_transaction(database)
    if RenderInput.delete().where(RenderInput.job == job_id).execute():
        RenderJob.update(input_bytes=0).where(RenderJob.id == job_id).execute()


def get_public_job(public_id: str) -> RenderJob | None:
    """A widget render by its unguessable id (None for an unknown one)."""
    if not public_id or len(public_id) > 32:
        return None
    return RenderJob.get_or_none(RenderJob.public_id == public_id)


def get_job(job_id: int) -> RenderJob:
    job = RenderJob.get_or_none(RenderJob.id == job_id)
    if job is None:
        raise NotFound(f"render {job_id} not found")
    return job


class ListedJob(NamedTuple):
    """What a listing shows of a job (servicer.render_message)."""

    id: int
    organization_id: int
    user_id: int | None
    carpet_id: int
    carpet_size_id: int | None
    mode: str
    status: str
    error_text: str
    credits_charged: int
    credit_log_id: int | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    hold_id: int | None
    placement: str
    renderer: str
    scene: str


# The listing's filters, each a condition on the parameter of its name.
_LISTING_FILTERS = {
    "organization_id": "organization_id = {organization_id}",
    "user_id": "user_id = {user_id}",
    "status": "status = {status}",  # already one of RENDER_STATUSES: the servicer maps the enum
    "mode": "mode = {mode}",
    "created_after": "created_at >= {created_after}",
    "created_before": "created_at < {created_before}",
}


@functools.cache
def _listing(filters: tuple[str, ...], after_token: bool) -> Statement:
    """The listing for one combination of filters (and page token): hand-written, since the
    query builder spent more CPU composing it than the database spent answering, and so each
    combination is prepared once per PostgreSQL connection. Keyset order as carpet_common.paging
    (a row-value comparison walks the (created_at, id) index on both engines)."""
    conditions = [_LISTING_FILTERS[name] for name in filters]
    if after_token:
        conditions.append("(created_at, id) < ({after_time}, {after_id})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return Statement(f"""
        SELECT {", ".join(ListedJob._fields)} FROM render_job {where}
        ORDER BY created_at DESC, id DESC LIMIT {{limit}}""")


def list_jobs(page_size: int, page_token: str, *, organization_id: int = 0, user_id: int = 0,
              status: str = "", mode: str = "", created_after: datetime.datetime | None = None,
              created_before: datetime.datetime | None = None) -> Page:
    """A page of jobs, newest first; its rows are ListedJob."""
    size = page_size_or_default(page_size)
    given = {"organization_id": organization_id, "user_id": user_id, "status": status,
             "mode": mode, "created_after": created_after, "created_before": created_before}
    filters = tuple(name for name, value in given.items() if value)
    # a time as the column keeps it (SQLite: text)
    as_stored: Callable[[object], object] = RenderJob.created_at.db_value
    params = {name: as_stored(given[name]) if name.startswith("created_") else given[name]
              for name in filters}
    if page_token:
        after_time, params["after_id"] = decode_token(page_token)
        params["after_time"] = as_stored(after_time)
    # SQLite gives the text back
    read_time: Callable[[object], datetime.datetime] = RenderJob.created_at.python_value
    rows = [ListedJob(**{**row._asdict(), "created_at": read_time(row.created_at),
                         "started_at": read_time(row.started_at),
                         "finished_at": read_time(row.finished_at)})
            for row in _listing(filters, bool(page_token)).rows(database, **params,
                                                                limit=size + 1)]
    return page_of(rows, size)


def fail_unstarted(job_id: int, error_text: str, now: datetime.datetime, *,
                   release_pending: bool) -> bool:
    """queued -> failed (a cancel), its room picture removed. False when it had moved on."""
    changes = dict(status="failed", error_text=error_text, finished_at=now, updated_at=now,
                   release_pending=release_pending)
    with database.atomic():
        failed = bool(RenderJob.update(**changes)
                      .where((RenderJob.id == job_id) & (RenderJob.status == "queued"))
                      .execute())
        if failed:
            _forget_input(job_id)
    return failed


def cancel_job(job_id: int, now: datetime.datetime) -> RenderJob:
    """A queued job -> failed "canceled", its hold marked for release."""
    if not fail_unstarted(job_id, CANCELED_TEXT, now, release_pending=True):
        job = get_job(job_id)
        raise FailedPrecondition(f"render {job_id} is {job.status}; only queued renders can be "
                                 f"canceled", reason="NOT_CANCELLABLE")
    return get_job(job_id)


# --- the worker side -------------------------------------------------------------------------

def claim_next(owner: str, now: datetime.datetime, lease: datetime.timedelta) -> RenderJob | None:
    """Take the claimable job of the lowest priority number, oldest first: queued (written
    with its hold), or processing with a lapsed lease (widget renders come after the
    others: render_service.publishable_keys). PostgreSQL: FOR UPDATE SKIP LOCKED, so workers
    of every replica take different jobs; SQLite: inside the IMMEDIATE write transaction."""
    claimable = ((RenderJob.status == "queued")
                 | ((RenderJob.status == "processing") & (RenderJob.lease_expires_at < now)))
    with database.atomic():
        candidate = (RenderJob.select(RenderJob.id).where(claimable)
                     .order_by(RenderJob.priority, RenderJob.id).limit(1))
        if is_postgres(database.obj):
            candidate = candidate.for_update(skip_locked=True)
        row = candidate.first()
        if row is None:
            return None
        (RenderJob.update(status="processing", lease_owner=owner, lease_expires_at=now + lease,
                          started_at=fn.COALESCE(RenderJob.started_at, now),
                          attempts=RenderJob.attempts + 1, updated_at=now)
         .where(RenderJob.id == row.id).execute())
    return get_job(row.id)


def renew_lease(job_id: int, owner: str, now: datetime.datetime,
                lease: datetime.timedelta) -> bool:
    """The heartbeat; False when the job is no longer this worker's."""
    return bool(RenderJob.update(lease_expires_at=now + lease, updated_at=now)
                .where((RenderJob.id == job_id) & (RenderJob.status == "processing")
                       & (RenderJob.lease_owner == owner)).execute())


def _owned(job_id: int, owner: str) -> Expression:
    return ((RenderJob.id == job_id) & (RenderJob.status == "processing")
            & (RenderJob.lease_owner == owner))


def record_output(job_id: int, owner: str, path: str, content_type: str, size: int,
                  now: datetime.datetime, renderer: str = "") -> bool:
    return bool(RenderJob.update(output_path=path, output_content_type=content_type,
                                 output_bytes=size, renderer=renderer, updated_at=now)
                .where(_owned(job_id, owner)).execute())


def finish_success(job_id: int, owner: str, credits_charged: int, credit_log_id: int,
                   now: datetime.datetime) -> bool:
    return bool(RenderJob.update(status="success", credits_charged=credits_charged,
                                 credit_log_id=credit_log_id, finished_at=now, updated_at=now,
                                 lease_owner=None, lease_expires_at=None)
                .where(_owned(job_id, owner)).execute())


def finish_uncharged(job_id: int, owner: str, now: datetime.datetime) -> bool:
    """success without a capture (an uncharged fallback render): its hold is released by the
    settler like a failed job's, so the flag is set in the same UPDATE."""
    return bool(RenderJob.update(status="success", credits_charged=0, credit_log_id=None,
                                 finished_at=now, updated_at=now, lease_owner=None,
                                 lease_expires_at=None, release_pending=True)
                .where(_owned(job_id, owner)).execute())


def finish_failed(job_id: int, owner: str, error_text: str, now: datetime.datetime, *,
                  release_pending: bool) -> bool:
    with database.atomic():
        failed = bool(RenderJob.update(status="failed", error_text=error_text, finished_at=now,
                                       updated_at=now, lease_owner=None, lease_expires_at=None,
                                       release_pending=release_pending)
                      .where(_owned(job_id, owner)).execute())
        if failed:
            _forget_input(job_id)
    return failed


def jobs_to_release(limit: int = 100) -> list[RenderJob]:
    return list(RenderJob.select().where(RenderJob.release_pending == True)  # noqa: E712
                .order_by(RenderJob.id).limit(limit))


def release_done(job_id: int, now: datetime.datetime) -> None:
    (RenderJob.update(release_pending=False, updated_at=now)
     .where(RenderJob.id == job_id).execute())


def room_image(job_id: int) -> bytes | None:
    row = RenderInput.get_or_none(RenderInput.job == job_id)
    return bytes(row.room_image) if row else None


def stored_bytes(organization_id: int = 0) -> int:
    """Room pictures and outputs kept, in bytes, for one organisation or all (trigger-kept)."""
    query = RenderStorage.select(fn.COALESCE(fn.SUM(RenderStorage.bytes), 0))
    if organization_id:
        query = query.where(RenderStorage.organization_id == organization_id)
    return int(query.scalar() or 0)


def expire_inputs(before: datetime.datetime, now: datetime.datetime, limit: int = 500) -> int:
    """Room pictures of ended jobs created before `before` are removed (RENDER_INPUT_RETENTION).
    Safe with replicas: removing twice removes once."""
    ended = [job.id for job in RenderJob.select(RenderJob.id).where(
        (RenderJob.input_bytes > 0) & RenderJob.status.in_(TERMINAL)
        & (RenderJob.created_at < before)).limit(limit)]
    for job_id in ended:
        with database.atomic():
            _forget_input(job_id)
    return len(ended)


def outputs_to_expire(before: datetime.datetime, limit: int = 500) -> list[RenderJob]:
    return list(RenderJob.select(RenderJob.id, RenderJob.output_path).where(
        (RenderJob.status == "success") & (RenderJob.output_expired == False)  # noqa: E712
        & RenderJob.output_path.is_null(False) & (RenderJob.finished_at < before))
        .limit(limit))


def forget_pictures(job_ids: list[int], now: datetime.datetime) -> list[str]:
    """Inside the caller's transaction (a person's data erased, or kept past LEAD_RETENTION):
    the jobs' room pictures are deleted and their outputs marked expired; the output files to
    remove once it commits."""
    require_transaction(database)
    if not job_ids:
        return []
    RenderInput.delete().where(RenderInput.job.in_(job_ids)).execute()
    outputs = [path for (path,) in tuples(RenderJob.select(RenderJob.output_path).where(
        RenderJob.id.in_(job_ids) & RenderJob.output_path.is_null(False)
        & (RenderJob.output_expired == False)))]  # noqa: E712
    (RenderJob.update(input_bytes=0, output_expired=True, output_bytes=0, updated_at=now)
     .where(RenderJob.id.in_(job_ids) & (RenderJob.status == "success")).execute())
    RenderJob.update(input_bytes=0).where(RenderJob.id.in_(job_ids)).execute()
    return outputs


def mark_output_expired(job_id: int, now: datetime.datetime) -> None:
    (RenderJob.update(output_expired=True, output_bytes=0, updated_at=now)
     .where(RenderJob.id == job_id).execute())


def render_totals(organization_id: int = 0) -> dict[str, int]:
    """Jobs per status, for one organisation or all, from the trigger-kept counts (a few
    rows per organisation, however many jobs there are)."""
    query = (RenderCount.select(RenderCount.status, fn.SUM(RenderCount.jobs))
             .group_by(RenderCount.status))
    if organization_id:
        query = query.where(RenderCount.organization_id == organization_id)
    counts = dict.fromkeys(RENDER_STATUSES, 0)
    counts.update({status: int(count) for status, count in tuples(query)})
    return counts


MOST_RENDERED = 100


def carpet_usage(start: datetime.date, end: datetime.date, organization_id: int = 0
                 ) -> list[tuple[int, int, int]]:
    """(carpet id, size id, renders) over the days from the trigger-kept counts, most rendered
    first, at most MOST_RENDERED."""
    renders = fn.SUM(RenderCarpetDaily.jobs)
    query = (RenderCarpetDaily.select(RenderCarpetDaily.carpet_id,
                                      RenderCarpetDaily.carpet_size_id, renders)
             .where(RenderCarpetDaily.day.between(start, end))
             .group_by(RenderCarpetDaily.carpet_id, RenderCarpetDaily.carpet_size_id)
             .having(renders > 0)
             .order_by(renders.desc(), RenderCarpetDaily.carpet_id,
                       RenderCarpetDaily.carpet_size_id)
             .limit(MOST_RENDERED))
    if organization_id:
        query = query.where(RenderCarpetDaily.organization_id == organization_id)
    return [(int(carpet), int(size), int(jobs)) for carpet, size, jobs in tuples(query)]


def render_usage(start: datetime.date, end: datetime.date, organization_id: int = 0
                 ) -> dict[datetime.date, dict[str, int]]:
    """Jobs per day of creation and status from the trigger-kept daily counts (a few rows per
    day and organisation, whatever the history's size); days without jobs are left out."""
    query = (RenderDaily.select(RenderDaily.day, RenderDaily.status, fn.SUM(RenderDaily.jobs))
             .where(RenderDaily.day.between(start, end))
             .group_by(RenderDaily.day, RenderDaily.status))
    if organization_id:
        query = query.where(RenderDaily.organization_id == organization_id)
    usage: dict[datetime.date, dict[str, int]] = {}
    for day, status, jobs in tuples(query):
        usage.setdefault(as_date(day), dict.fromkeys(RENDER_STATUSES, 0))[status] = int(jobs)
    return usage
