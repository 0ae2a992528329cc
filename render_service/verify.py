"""`python -m render_service verify`: the render database's own invariants. The trigger-kept
job counts (render_count; per day render_daily; per day, carpet and size render_carpet_daily)
and stored bytes (render_storage) equal a recount of render_job.

Whether every job was charged as it says (invariant 4) needs the credit database too:
`python -m ops reconcile` checks that.
"""
from __future__ import annotations

from collections import Counter

from peewee import fn

from render_service import floor
from render_service import models as render_models


def count_problems():
    yield from counts_before_catalogues()
    yield from carpet_count_problems()


def counts_before_catalogues():
    """render_count, render_storage and render_daily against a recount: the checks a database
    before migration 0013 can answer."""
    RenderJob, RenderCount = render_models.RenderJob, render_models.RenderCount
    recount = {(org, status): int(jobs) for org, status, jobs in
               RenderJob.select(RenderJob.organization_id, RenderJob.status, fn.COUNT(RenderJob.id))
               .group_by(RenderJob.organization_id, RenderJob.status).tuples()}
    kept = {(org, status): int(jobs) for org, status, jobs in
            RenderCount.select(RenderCount.organization_id, RenderCount.status, RenderCount.jobs)
            .tuples() if jobs}
    for key in sorted(recount.keys() | kept.keys()):
        if recount.get(key, 0) != kept.get(key, 0):
            yield (f"render counts: organisation {key[0]} has {recount.get(key, 0)} {key[1]} "
                   f"jobs, render_count says {kept.get(key, 0)}")

    RenderStorage = render_models.RenderStorage
    restored = {org: int(total) for org, total in
                RenderJob.select(RenderJob.organization_id,
                                 fn.SUM(RenderJob.input_bytes + RenderJob.output_bytes))
                .group_by(RenderJob.organization_id).tuples() if total}
    kept_bytes = {org: int(total) for org, total in
                  RenderStorage.select(RenderStorage.organization_id, RenderStorage.bytes)
                  .tuples() if total}
    for org in sorted(restored.keys() | kept_bytes.keys()):
        if restored.get(org, 0) != kept_bytes.get(org, 0):
            yield (f"render storage: organisation {org} keeps {restored.get(org, 0)} bytes, "
                   f"render_storage says {kept_bytes.get(org, 0)}")

    RenderDaily = render_models.RenderDaily
    day = fn.date(RenderJob.created_at).coerce(False)  # a function on both engines
    by_day = {(org, str(when), status): int(jobs) for org, when, status, jobs in
              RenderJob.select(RenderJob.organization_id, day, RenderJob.status,
                               fn.COUNT(RenderJob.id))
              .group_by(RenderJob.organization_id, day, RenderJob.status).tuples()}
    kept_days = {(org, str(when), status): int(jobs) for org, when, status, jobs in
                 RenderDaily.select(RenderDaily.organization_id, RenderDaily.day,
                                    RenderDaily.status, RenderDaily.jobs).tuples() if jobs}
    for key in sorted(by_day.keys() | kept_days.keys()):
        if by_day.get(key, 0) != kept_days.get(key, 0):
            yield (f"render daily counts: organisation {key[0]} has {by_day.get(key, 0)} "
                   f"{key[2]} jobs created on {key[1]}, render_daily says "
                   f"{kept_days.get(key, 0)}")


def carpet_count_problems():
    """render_carpet_daily against a recount (migrations 0014 and 0020): a job by its carpet
    and size, a render on a measured floor under each of its carpets."""
    RenderJob, CarpetDaily = render_models.RenderJob, render_models.RenderCarpetDaily
    day = fn.date(RenderJob.created_at).coerce(False)
    size = fn.COALESCE(RenderJob.carpet_size, RenderJob.carpet)
    plain = RenderJob.scene == ""
    by_carpet = Counter({(org, str(when), carpet, size_id): int(jobs)
                         for org, when, carpet, size_id, jobs in
                         RenderJob.select(RenderJob.organization_id, day, RenderJob.carpet, size,
                                          fn.COUNT(RenderJob.id)).where(plain)
                         .group_by(RenderJob.organization_id, day, RenderJob.carpet, size)
                         .tuples()})
    for org, when, scene in RenderJob.select(RenderJob.organization_id, day,
                                             RenderJob.scene).where(~plain).tuples():
        for carpet, size_id in {(placed.carpet_id, placed.carpet_size_id)
                                for placed in floor.load(scene).carpets}:
            by_carpet[(org, str(when), carpet, size_id)] += 1
    kept_carpets = {(org, str(when), carpet, size_id): int(jobs)
                    for org, when, carpet, size_id, jobs in
                    CarpetDaily.select(CarpetDaily.organization_id, CarpetDaily.day,
                                       CarpetDaily.carpet_id, CarpetDaily.carpet_size_id,
                                       CarpetDaily.jobs).tuples() if jobs}
    for key in sorted(by_carpet.keys() | kept_carpets.keys()):
        if by_carpet.get(key, 0) != kept_carpets.get(key, 0):
            yield (f"render carpet counts: organisation {key[0]} has {by_carpet.get(key, 0)} "
                   f"jobs of carpet {key[2]} size {key[3]} created on {key[1]}, "
                   f"render_carpet_daily says {kept_carpets.get(key, 0)}")
