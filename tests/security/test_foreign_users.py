"""Another shop's people: a STAFF, or a backend, naming a user of another organisation in a
submission learns nothing about that user and leaves no job behind; listings and exports name
only the job's own organisation's people, even on jobs written before this rule (a row put in
the render database by hand stands for one). Both engines, real processes."""
import urllib.request

import grpc
import pytest

from carpet_common.db import bind_database
from protos.carpet.render.v1 import render_pb2
from render_service import models as render_models
from tests.conftest import ENGINES
from tests.helpers import bearer
from tests.security.stack import Deployment, staff_jwt


@pytest.fixture(scope="module", params=ENGINES)
def deployment(request, tmp_path_factory, pg_databases):
    directory = tmp_path_factory.mktemp("foreign")
    urls = None
    if request.param == "postgresql":
        urls = {name: pg_databases.url(name) for name in ("credit", "render")}
    running = Deployment(directory, urls, RATE_LIMIT_RENDER="off",
                         RATE_LIMIT_ADMIN="off", RENDER_WORKERS="0").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shops(deployment):
    mine, theirs = deployment.organization("Mine", 50), deployment.organization("Theirs", 50)
    victim = deployment.user(theirs.id, "victim@theirs.example", "Victim Person")
    colleague = deployment.user(mine.id, "colleague@mine.example", "Colleague")
    return mine, theirs, victim, colleague, deployment.carpet("K-FOREIGN")


def refused(call):
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def jobs_of(deployment, organization_id):
    return list(deployment.renders().ListRenders(render_pb2.ListRendersRequest(
        organization_id=organization_id, page_size=500), timeout=10).renders)


def test_naming_another_shops_user_keeps_no_job_and_tells_nothing(deployment, shops):
    mine, _, victim, colleague, carpet = shops
    staff = deployment.renders(service=None)
    web = deployment.renders()
    before = jobs_of(deployment, mine.id)

    def as_staff(user_id):
        return lambda: staff.SubmitRender(render_pb2.SubmitRenderRequest(
            carpet_id=carpet.id, mode="preview", user_id=user_id),
            metadata=bearer(staff_jwt(mine.id)), timeout=10)

    # A person submits as itself: another shop's user, a colleague (whose daily limit it would
    # spend) and a missing id are all refused the same way, before any credit is touched.
    answers = {refused(as_staff(user_id)) for user_id in (victim.id, colleague.id, 10**9)}
    assert answers == {(grpc.StatusCode.PERMISSION_DENIED,
                        "a person submits renders as themselves: leave user_id unset")}

    def as_backend(user_id):
        return lambda: web.SubmitRender(render_pb2.SubmitRenderRequest(
            organization_id=mine.id, carpet_id=carpet.id, mode="preview", user_id=user_id),
            timeout=10)

    # A backend may name members only; a foreign user reads exactly like a missing one.
    foreign, missing = refused(as_backend(victim.id)), refused(as_backend(10**9))
    assert foreign == (grpc.StatusCode.NOT_FOUND,
                       f"user {victim.id} not found in organisation {mine.id}")
    assert missing == (grpc.StatusCode.NOT_FOUND,
                       f"user {10**9} not found in organisation {mine.id}")
    assert jobs_of(deployment, mine.id) == before
    # The member is accepted and charged as named.
    job = as_backend(colleague.id)()
    assert (job.user_id, job.status) == (colleague.id, render_pb2.RENDER_STATUS_QUEUED)


def test_listings_name_only_the_jobs_own_people(deployment, shops):
    mine, _, victim, colleague, carpet = shops
    # A failed job naming another shop's user, as the old code stored a refused submission.
    database = bind_database(render_models.database, deployment.env["RENDER_DATABASE_URL"])
    with database.connection_context():
        legacy = render_models.RenderJob.create(
            organization_id=mine.id, user_id=victim.id, carpet=carpet.id, mode="preview",
            status="failed", error_text="refused", cost=1, created_at=render_models.utcnow(),
            updated_at=render_models.utcnow(), finished_at=render_models.utcnow())
    database.close()
    token = staff_jwt(mine.id)
    rows = deployment.admin().ListRenders(render_pb2.ListRendersRequest(page_size=100),
                                          metadata=bearer(token), timeout=10).renders
    by_id = {row.render.id: row for row in rows}
    assert (by_id[legacy.id].user_name, by_id[legacy.id].user_email) == ("", "")
    named = [row for row in rows if row.render.user_id == colleague.id]
    assert named and all(row.user_name == "Colleague" for row in named)
    request = urllib.request.Request(f"{deployment.http}/admin/renders.csv",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        exported = response.read().decode()
    assert "victim@theirs.example" not in exported and "Victim Person" not in exported
    assert "colleague@mine.example" in exported
