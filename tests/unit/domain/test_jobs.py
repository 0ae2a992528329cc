"""The render job state machine and keyset paging as plain functions (render_service.jobs)."""
import datetime

import pytest

from carpet_common import errors
from carpet_common.db import is_postgres
from carpet_common.paging import decode_token, paginate
from render_service import jobs
from render_service.models import Carpet, RenderJob

LEASE = datetime.timedelta(seconds=30)


@pytest.fixture
def carpet(render_db, clock):
    return Carpet.create(sku="K1", name="Kilim", image=b"png",
                         image_content_type="image/png", created_at=clock()).id


def submission(carpet, clock, key="", fingerprint="f", organization_id=1, room_image=None):
    return jobs.new_submission(organization_id, None, carpet, "preview", 1, room_image, key,
                               fingerprint, now=clock())


def new_job(carpet, clock, key="", fingerprint="f", organization_id=1, hold_id=41):
    """A submission's job as both engines write it: its id first, then the job with its hold."""
    return jobs.record_job(submission(carpet, clock, key, fingerprint, organization_id),
                           jobs.next_job_id(), hold_id=hold_id)


def test_a_job_moves_forward_once(carpet, clock):
    job, created = new_job(carpet, clock)
    assert created and job.status == "queued"
    claimed = jobs.claim_next("w1", clock(), LEASE)
    assert (claimed.id, claimed.status, claimed.attempts) == (job.id, "processing", 1)
    assert jobs.claim_next("w2", clock(), LEASE) is None  # leased to w1
    assert jobs.renew_lease(job.id, "w1", clock(), LEASE)
    assert not jobs.renew_lease(job.id, "w2", clock(), LEASE)
    assert not jobs.finish_success(job.id, "w2", 1, 7, clock())  # not w2's job
    assert jobs.finish_success(job.id, "w1", 1, 7, clock())
    assert not jobs.finish_failed(job.id, "w1", "late", clock(), release_pending=True)
    done = jobs.get_job(job.id)
    assert (done.status, done.credits_charged, done.credit_log_id) == ("success", 1, 7)
    with pytest.raises(errors.FailedPrecondition) as refused:
        jobs.cancel_job(job.id, clock())
    assert refused.value.reason == "NOT_CANCELLABLE"


def test_a_lapsed_lease_is_claimed_again(carpet, clock):
    job, _ = new_job(carpet, clock)
    jobs.claim_next("w1", clock(), LEASE)
    clock.advance(31)
    again = jobs.claim_next("w2", clock(), LEASE)
    assert (again.id, again.lease_owner, again.attempts) == (job.id, "w2", 2)
    assert not jobs.finish_success(job.id, "w1", 1, 7, clock())  # w1 lost it


def test_job_ids_come_first_and_are_never_handed_out_twice(carpet, clock):
    """Both engines take a job's id before its hold is reserved (PostgreSQL from the table's
    sequence, SQLite from its counter); an id taken by a submission that then died is skipped.
    On SQLite the counter never falls below an id a job was written with otherwise (a row from
    before the counter existed)."""
    first = jobs.next_job_id()
    second = jobs.next_job_id()  # `first` was never written: a gap, as after a crash
    assert second > first
    if not is_postgres(RenderJob._meta.database):
        RenderJob.insert(id=second + 5, organization_id=1, carpet=carpet, mode="preview",
                         status="failed", cost=1, created_at=clock(),
                         updated_at=clock()).execute()
        assert jobs.next_job_id() == second + 6
    refused, created = jobs.record_job(submission(carpet, clock), jobs.next_job_id(),
                                       hold_id=None, error_text="insufficient credits")
    assert created and (refused.status, refused.hold_id) == ("failed", None)
    assert jobs.claim_next("w1", clock(), LEASE) is None  # a refused job is never worked


def test_cancel_marks_the_hold_for_release(carpet, clock):
    job, _ = new_job(carpet, clock)
    canceled = jobs.cancel_job(job.id, clock())
    assert (canceled.status, canceled.error_text, canceled.release_pending) == (
        "failed", "canceled", True)
    assert [pending.id for pending in jobs.jobs_to_release()] == [job.id]
    jobs.release_done(job.id, clock())
    assert jobs.jobs_to_release() == []
    assert jobs.render_totals(1) == {"queued": 0, "processing": 0, "success": 0, "failed": 1}


def test_idempotency_key(carpet, clock):
    first, created = new_job(carpet, clock, key="k", fingerprint="a")
    again, created_again = new_job(carpet, clock, key="k", fingerprint="a")
    assert created and not created_again and again.id == first.id
    with pytest.raises(errors.IdempotencyKeyReused):
        new_job(carpet, clock, key="k", fingerprint="b")
    with pytest.raises(errors.NotFound):
        jobs.record_job(submission(999, clock), jobs.next_job_id(), hold_id=1)


def test_a_job_written_once_with_its_hold(carpet, clock, render_db):
    """A submission: the id first, then one write with the hold and the room picture (or
    failed, without a picture)."""
    job_id = jobs.next_job_id()
    picture = b"\x89PNG room"
    job, created = jobs.record_job(submission(carpet, clock, key="k", room_image=picture),
                                   job_id, hold_id=77)
    assert created and (job.id, job.status, job.hold_id) == (job_id, "queued", 77)
    stored = jobs.get_job(job_id)
    assert (stored.status, stored.hold_id, stored.input_bytes, stored.finished_at) == (
        "queued", 77, len(picture), None)
    assert jobs.room_image(job_id) == picture
    assert jobs.stored_bytes(1) == len(picture)
    assert jobs.claim_next("w1", clock(), LEASE).id == job_id

    # The same key again (a concurrent submission that lost): the first job, not a second.
    again, created = jobs.record_job(submission(carpet, clock, key="k"), job_id + 1,
                                     hold_id=78)
    assert not created and again.id == job_id
    refused, created = jobs.record_job(submission(carpet, clock, room_image=picture),
                                       job_id + 2, hold_id=None,
                                       error_text="insufficient credits")
    stored = jobs.get_job(job_id + 2)
    assert created and (stored.status, stored.error_text, stored.hold_id,
                        stored.input_bytes) == ("failed", "insufficient credits", None, 0)
    assert stored.finished_at is not None and jobs.room_image(job_id + 2) is None
    assert jobs.render_totals(1) == {"queued": 0, "processing": 1, "success": 0, "failed": 1}
    with pytest.raises(errors.NotFound):
        jobs.record_job(submission(999, clock), job_id + 3, hold_id=79)


def test_paging_is_keyset_newest_first(carpet, clock):
    ids = []
    for _ in range(5):
        ids.append(new_job(carpet, clock)[0].id)
        clock.advance(1)
    first = paginate(RenderJob.select(), RenderJob.created_at, RenderJob.id, 2, "")
    assert [row.id for row in first.rows] == ids[::-1][:2]
    assert decode_token(first.next_page_token)[1] == ids[3]
    second = paginate(RenderJob.select(), RenderJob.created_at, RenderJob.id, 2,
                      first.next_page_token)
    third = paginate(RenderJob.select(), RenderJob.created_at, RenderJob.id, 2,
                     second.next_page_token)
    assert [row.id for row in second.rows + third.rows] == ids[::-1][2:]
    assert third.next_page_token == ""
    for bad in ("not-a-token", "e30"):
        with pytest.raises(errors.InvalidArgument):
            paginate(RenderJob.select(), RenderJob.created_at, RenderJob.id, 2, bad)
    with pytest.raises(errors.InvalidArgument):
        paginate(RenderJob.select(), RenderJob.created_at, RenderJob.id, 501, "")
