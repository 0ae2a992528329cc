"""The job status hub (render_service.status_hub) on both engines: a status change committed by
another connection wakes exactly the streams watching that job; on PostgreSQL through
LISTEN/NOTIFY, and after its listening connection is killed it connects again and still
delivers the change made while it was away."""
import asyncio
import datetime
import threading

import psycopg2
import pytest

from render_service import jobs
from render_service.models import Carpet, RenderJob, database
from render_service.status_hub import StatusHub
from tests.conftest import PG_URL

WAIT_S = 20  # far above any wake-up: a watch that sees nothing in this long has been missed


def woken(watch, timeout=WAIT_S):
    """Whether the watch was woken within `timeout` (the stream's wait, on an event loop)."""
    return asyncio.run(watch.changed(timeout))


@pytest.fixture
def hub(render_db):
    hub = StatusHub(database, safety_poll_s=0.2)  # first sights come sooner than in service
    yield hub
    hub.stop()


def new_jobs(count):
    now = datetime.datetime(2026, 1, 1)
    carpet = Carpet.create(sku="K1", name="Kilim", image=b"png",
                           image_content_type="image/png", created_at=now)
    return [RenderJob.create(organization_id=1, carpet=carpet, mode="preview", cost=1,
                             status="queued", created_at=now, updated_at=now).id
            for _ in range(count)]


def change_elsewhere(render_db_url, job_id, status):
    """The change a worker of another process (or replica) makes: its own connection."""
    if render_db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(render_db_url.removeprefix("sqlite:///")) as connection:
            connection.execute("UPDATE render_job SET status = ? WHERE id = ?",
                               (status, job_id))
    else:
        with psycopg2.connect(render_db_url) as connection, connection.cursor() as cursor:
            cursor.execute("UPDATE render_job SET status = %s WHERE id = %s", (status, job_id))
        connection.close()


def test_a_change_wakes_the_streams_of_its_job_only(hub, render_db_url):
    first, second = new_jobs(2)
    with hub.watching(first) as a, hub.watching(first) as b, hub.watching(second) as other:
        for watch in (a, b, other):  # the first sight of each job wakes its streams once
            assert woken(watch)
        change_elsewhere(render_db_url, first, "processing")
        assert woken(a) and woken(b)
        assert jobs.get_job(first).status == "processing"
        change_elsewhere(render_db_url, first, "failed")
        assert woken(a)
        assert not woken(other, 0)  # its job did not change: never woken
    assert hub.watched() == 0


def test_four_hundred_streams_each_see_their_jobs_end(hub, render_db_url):
    ids = new_jobs(100)
    ended = []
    ready = threading.Barrier(len(ids) * 4 + 1)

    def status(job_id):
        with database.connection_context():  # 400 threads share the pool, as a server's do
            return jobs.get_job(job_id).status

    def stream(job_id):
        with hub.watching(job_id) as watch:
            ready.wait()
            while status(job_id) != "failed":
                assert woken(watch), f"job {job_id}'s end never reached its stream"
            ended.append(job_id)

    threads = [threading.Thread(target=stream, args=(job_id,)) for job_id in ids * 4]
    for thread in threads:
        thread.start()
    ready.wait()
    for job_id in ids:
        change_elsewhere(render_db_url, job_id, "failed")
    for thread in threads:
        thread.join()
    assert sorted(ended) == sorted(ids * 4)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_listener_comes_back_after_its_connection_is_killed(hub, render_db_url):
    (job_id,) = new_jobs(1)
    with hub.watching(job_id) as watch:
        assert woken(watch)
        listener = listening_backend(render_db_url)
        assert listener is not None
        terminate(listener)
        change_elsewhere(render_db_url, job_id, "failed")  # while it is away
        assert woken(watch)
        assert jobs.get_job(job_id).status == "failed"
    assert hub.reconnects >= 1
    assert listening_backend(render_db_url) not in (None, listener)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_on_postgresql_a_change_arrives_by_notification(render_db, render_db_url):
    (job_id,) = new_jobs(1)
    hub = StatusHub(database, safety_poll_s=600)  # no safety poll within this test
    try:
        with hub.watching(job_id) as watch:
            assert woken(watch)  # the listener's first poll, right after LISTEN
            change_elsewhere(render_db_url, job_id, "processing")
            assert woken(watch)  # only the trigger's NOTIFY can have said so
            assert jobs.get_job(job_id).status == "processing"
    finally:
        hub.stop()


def terminate(backend):
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (backend,))
            assert cursor.fetchone() == (True,)
    finally:
        admin.close()


def listening_backend(render_db_url):
    """The server process of the hub's LISTEN connection (None: not listening)."""
    name = render_db_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True  # pg_stat_activity is read once per transaction
    try:
        with admin.cursor() as cursor:
            for _ in range(400):
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                               "AND query LIKE 'LISTEN%%'", (name,))
                row = cursor.fetchone()
                if row:
                    return row[0]
                threading.Event().wait(0.05)
    finally:
        admin.close()
    return None
