"""The init_schema migrations apply to empty databases on both engines, leave no drift between
models and schema, and are a no-op when run again."""
import datetime
import importlib

import pytest
from peewee import IntegrityError
from playhouse.schema_diff import diff_models

from carpet_common.db import bind_database, is_postgres
from carpet_common.migrate import apply_migrations
from tests.conftest import fresh_database_url


def _services():
    from credit_service import migrations as credit_migrations
    from credit_service import models as credit_models
    from render_service import migrations as render_migrations
    from render_service import models as render_models

    return {
        "credit": (credit_models, credit_migrations.DIRECTORY),
        "render": (render_models, render_migrations.DIRECTORY),
    }


@pytest.mark.parametrize("service", ["credit", "render"])
def test_migrations_apply_without_drift_and_rerun_is_noop(engine, tmp_path, pg_databases,
                                                          service):
    models, directory = _services()[service]
    url = fresh_database_url(engine, f"migrate_{service}", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    try:
        with database.connection_context():
            assert database.get_tables() == []
            assert apply_migrations(database, directory)[0] == "0001_init_schema"
            tables = set(database.get_tables())
            assert {model._meta.table_name for model in models.ALL_MODELS} <= tables
            diff = diff_models(database, list(models.ALL_MODELS))
            assert not diff, f"models and schema drifted: {diff}"
            assert apply_migrations(database, directory) == []
            assert set(database.get_tables()) == tables
    finally:
        if is_postgres(database):
            database.close_all()


def test_the_fallback_check_is_loosened_and_restored_in_place(engine, tmp_path, pg_databases):
    """0007 edits render_job's CHECK without rebuilding the table: rows and the triggers that
    keep the job counts survive it, up and down."""
    from render_service import migrations, models
    from render_service.migrations import __path__ as _  # noqa: F401

    url = fresh_database_url(engine, "migrate_fallback", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    fallback = importlib.import_module("render_service.migrations.0007_render_fallback")
    try:
        with database.connection_context():
            apply_migrations(database, migrations.DIRECTORY)
            carpet = models.Carpet.create(sku="K-1", name="Kilim", image=b"png",
                                          image_content_type="image/png")

            def uncharged_success():
                with database.atomic():
                    return models.RenderJob.create(
                        organization_id=1, carpet=carpet, mode="preview", cost=1,
                        status="success", renderer="local-fallback")

            uncharged_success()
            with database.atomic():
                models.RenderJob.delete().execute()
                fallback.down(None, database)
            with pytest.raises(IntegrityError):
                uncharged_success()
            with database.atomic():
                fallback.up(None, database)
            uncharged_success()
            counts = {(row.status, row.jobs) for row in models.RenderCount.select()}
            assert ("success", 1) in counts  # the counting triggers still run
    finally:
        if is_postgres(database):
            database.close_all()


@pytest.mark.parametrize("service, back_to", [("credit", "0006_notifications"),
                                              ("render", "0007_render_fallback")])
def test_this_releases_migrations_roll_back_and_apply_again(engine, tmp_path, pg_databases,
                                                           service, back_to):
    from playhouse.migrations import Runner

    models, directory = _services()[service]
    url = fresh_database_url(engine, f"rollback_{service}", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    try:
        with database.connection_context():
            apply_migrations(database, directory)
            tables = set(database.get_tables())
            runner = Runner(database, directory)
            reverted = runner.down(back_to)
            assert reverted[-1] == back_to and set(database.get_tables()) < tables
            assert runner.up() == list(reversed(reverted))
            assert set(database.get_tables()) == tables
            assert not diff_models(database, list(models.ALL_MODELS))
    finally:
        if is_postgres(database):
            database.close_all()


def _carpet_before_catalogues(database) -> int:
    """A carpet as the schema before 0013 holds it (its one size in its own columns)."""
    cursor = database.execute_sql(
        "INSERT INTO carpet (sku, name, width_cm, length_cm, material, image, "
        "image_content_type, created_at) VALUES ('K-1', 'Kilim', 120, 180, '', "
        f"{database.param}, 'image/png', {database.param}) RETURNING id",
        (b"png", datetime.datetime(2026, 1, 1)))
    return cursor.fetchone()[0]


def test_job_ids_come_first_after_the_upgrade(engine, tmp_path, pg_databases):
    """0012: a queued job still without a hold (a SQLite submission interrupted under the old
    algorithm, which wrote the job first) is failed, since no worker takes one over any more;
    on SQLite the id counter starts above every job written before it."""
    from playhouse.migrations import Runner

    from render_service import jobs, migrations, models

    url = fresh_database_url(engine, "migrate_job_ids", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    try:
        with database.connection_context():
            apply_migrations(database, migrations.DIRECTORY)
            Runner(database, migrations.DIRECTORY).down("0012_render_job_ids")
            carpet = _carpet_before_catalogues(database)
            interrupted = models.RenderJob.create(organization_id=1, carpet=carpet,
                                                  mode="preview", cost=1, status="queued")
            held = models.RenderJob.create(organization_id=1, carpet=carpet, mode="preview",
                                           cost=1, status="queued", hold_id=9)
            apply_migrations(database, migrations.DIRECTORY)
            assert jobs.get_job(interrupted.id).status == "failed"
            assert jobs.get_job(interrupted.id).error_text.startswith(
                "the submission was interrupted")
            assert jobs.get_job(held.id).status == "queued"
            assert jobs.next_job_id() > held.id
    finally:
        if is_postgres(database):
            database.close_all()


def test_carpets_become_the_shared_catalogue_with_one_size_each(engine, tmp_path, pg_databases):
    """0013: each carpet goes to the shared catalogue with one size of its measurements, whose
    id is the carpet's, so its earlier jobs name that size without being rewritten; two
    catalogues may then hold the same SKU; the trigger-kept counts still hold."""
    from playhouse.migrations import Runner

    from render_service import catalogue, migrations, models, verify
    from render_service.servicer import render_message

    url = fresh_database_url(engine, "migrate_catalogues", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    try:
        with database.connection_context():
            apply_migrations(database, migrations.DIRECTORY)
            Runner(database, migrations.DIRECTORY).down("0013_carpet_catalogues")
            carpet_id = _carpet_before_catalogues(database)
            job = models.RenderJob.create(organization_id=4, carpet=carpet_id, mode="preview",
                                          cost=1, status="queued", hold_id=9)
            assert apply_migrations(database, migrations.DIRECTORY) == [
                "0013_carpet_catalogues", "0014_render_carpet_daily", "0015_publishable_keys",
                "0016_render_scene", "0017_shares_leads_funnel", "0018_shop_logo",
                "0019_render_trace_parent", "0020_render_carpet_daily_scenes"]

            shown = catalogue.get_carpet(carpet_id)
            assert (shown.carpet.organization_id, shown.carpet.sku) == (0, "K-1")
            assert [(s.id, s.width_cm, s.length_cm, s.sku) for s in shown.sizes] == [
                (carpet_id, 120, 180, "")]
            assert render_message(models.RenderJob.get_by_id(job.id)).carpet_size_id == carpet_id
            assert catalogue.renderable_size(carpet_id, 0, 4) == carpet_id
            # A size added now takes an id after the copied ones (PostgreSQL's sequence too).
            added = models.CarpetSize.create(carpet=carpet_id, width_cm=80, length_cm=150,
                                             position=1)
            assert added.id > carpet_id
            models.Carpet.create(organization_id=4, sku="K-1", name="Shop's own", image=b"png",
                                 image_content_type="image/png")
            with pytest.raises(IntegrityError), database.atomic():
                models.Carpet.create(organization_id=4, sku="K-1", name="Twice", image=b"png",
                                     image_content_type="image/png")
            # The job from before counts under its carpet's one size (0014's backfill).
            assert list(verify.count_problems()) == []
            assert [(row.carpet_id, row.carpet_size_id, row.jobs)
                    for row in models.RenderCarpetDaily.select()] == [(carpet_id, carpet_id, 1)]
    finally:
        if is_postgres(database):
            database.close_all()


def test_every_carpet_of_a_render_on_a_measured_floor_is_counted(engine, tmp_path, pg_databases):
    """0020: render_carpet_daily counts a render of two carpets under each (a carpet shown twice
    once), in the statement that writes or deletes the job; the renders written before it get
    their other carpets counted when it runs, and uncounted when it is rolled back."""
    from playhouse.migrations import Runner

    from render_service import floor, migrations, models, verify
    from tests.unit.test_measured_floor import MEASURE

    url = fresh_database_url(engine, "migrate_carpet_scenes", tmp_path, pg_databases)
    database = bind_database(models.database, url)

    def counts():
        return sorted((row.carpet_id, row.carpet_size_id, row.jobs)
                      for row in models.RenderCarpetDaily.select() if row.jobs)

    def scene_job(*sizes):
        spots = [floor.SizedSpot(floor.Spot(size.id, 60.0 + 110 * index, 150.0, 0.0),
                                 size.carpet_id, 100, 150) for index, size in enumerate(sizes)]
        return models.RenderJob.create(
            organization_id=4, carpet=sizes[0].carpet_id, carpet_size=sizes[0].id,
            mode="preview", cost=1, status="queued", hold_id=9,
            scene=floor.dump(floor.place(MEASURE, spots)))

    try:
        with database.connection_context():
            apply_migrations(database, migrations.DIRECTORY)
            room = models.Carpet.create(sku="ROOM", name="Room", image=b"png",
                                        image_content_type="image/png")
            runner = models.Carpet.create(sku="RUN", name="Runner", image=b"png",
                                          image_content_type="image/png")
            room_size, runner_size = (
                models.CarpetSize.create(carpet=carpet, width_cm=100, length_cm=150, position=0)
                for carpet in (room, runner))
            before = [(room.id, room_size.id, 1), (runner.id, runner_size.id, 1)]
            Runner(database, migrations.DIRECTORY).down("0020_render_carpet_daily_scenes")
            old = scene_job(room_size, runner_size)
            assert counts() == [(room.id, room_size.id, 1)]  # the first carpet only, before
            apply_migrations(database, migrations.DIRECTORY)
            assert counts() == before and list(verify.count_problems()) == []
            # Written now: counted by the trigger; the same size twice counts once.
            scene_job(runner_size, room_size)
            scene_job(runner_size, runner_size)
            plain = models.RenderJob.create(organization_id=4, carpet=room, carpet_size=room_size,
                                            mode="preview", cost=1, status="queued", hold_id=9)
            assert counts() == [(room.id, room_size.id, 3), (runner.id, runner_size.id, 3)]
            assert list(verify.count_problems()) == []
            for job in (old, plain):
                job.delete_instance()
            assert counts() == [(room.id, room_size.id, 1), (runner.id, runner_size.id, 2)]
            assert list(verify.count_problems()) == []
            # Rolled back: the first carpets only, as 0014 counted them.
            Runner(database, migrations.DIRECTORY).down("0020_render_carpet_daily_scenes")
            assert counts() == [(runner.id, runner_size.id, 2)]
            models.RenderJob.delete().execute()
            assert counts() == []
    finally:
        if is_postgres(database):
            database.close_all()
