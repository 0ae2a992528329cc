"""The render listing's hand-written statements (render_service.jobs.list_jobs) on both
engines: filters, keyset pages and the rows' values against the table itself."""
import datetime

import pytest

from render_service import jobs
from render_service.models import Carpet, RenderJob


@pytest.fixture
def carpet(render_db, clock):
    return Carpet.create(sku="K1", name="Kilim", image=b"png",
                         image_content_type="image/png", created_at=clock()).id


def test_listing_filters_and_pages_agree_with_the_table(carpet, clock):
    """list_jobs writes its SQL by hand (one statement per combination of filters): for each
    combination, paging through it two at a time gives exactly the table's rows that match,
    newest first, ties in time broken by id, each row as the table holds it."""
    made = []
    for number in range(12):
        submitted = jobs.new_submission(1 + number % 2, 7 if number % 3 == 0 else None, carpet,
                                        "hd" if number % 4 == 0 else "preview", 1, None, "",
                                        "f", now=clock())
        job, _created = jobs.record_job(submitted, jobs.next_job_id(), hold_id=number + 1)
        if number % 5 == 0:
            jobs.fail_unstarted(job.id, "insufficient credits", clock(), release_pending=False)
        made.append(job.id)
        if number % 3 != 1:  # the others share their time with the next job
            clock.advance(seconds=1)
    middle = jobs.get_job(made[5]).created_at
    table = list(RenderJob.select())
    wanted = {
        (): lambda job: True,
        ("organization_id",): lambda job: job.organization_id == 2,
        ("user_id",): lambda job: job.user_id == 7,
        ("status",): lambda job: job.status == "failed",
        ("mode",): lambda job: job.mode == "hd",
        ("created_after", "created_before"): lambda job: middle <= job.created_at
        < middle + datetime.timedelta(seconds=3),
        ("organization_id", "mode", "created_after"): lambda job: (
            job.organization_id == 1 and job.mode == "preview" and job.created_at >= middle),
    }
    values = {"organization_id": 2, "user_id": 7, "status": "failed", "mode": "hd",
              "created_after": middle, "created_before": middle + datetime.timedelta(seconds=3)}
    combined = {"organization_id": 1, "mode": "preview", "created_after": middle}
    for filters, matches in wanted.items():
        given = combined if len(filters) == 3 else {name: values[name] for name in filters}
        listed, token = [], ""
        while True:
            page = jobs.list_jobs(2, token, **given)
            listed += page.rows
            token = page.next_page_token
            if not token:
                break
        expected = sorted((job for job in table if matches(job)),
                          key=lambda job: (job.created_at, job.id), reverse=True)
        assert [row.id for row in listed] == [job.id for job in expected], filters
        assert expected, filters  # every combination matches something
        for row, job in zip(listed, expected, strict=True):
            assert row == jobs.ListedJob(*(getattr(job, name)
                                           for name in jobs.ListedJob._fields))
