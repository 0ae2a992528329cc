"""render_carpet_daily counts every carpet of a render on a measured floor, not only its first:
a render of a room carpet and a runner counts once under each (once per distinct carpet and
size). A job without a scene (scene = '') is counted by its carpet and size as before, by the
same cheap statement; a job with a scene by the carpets its JSON lists (`render_service.floor`:
`carpets[].carpet_id`, `carpets[].carpet_size_id`), read by the engine's JSON functions in the
trigger, so the counts change in the statement that writes or deletes the job. The renders on a
measured floor written before this migration get their other carpets counted when it runs."""
import importlib
import json

from peewee import PostgresqlDatabase

BEFORE = importlib.import_module("render_service.migrations.0014_render_carpet_daily")

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION render_job_carpet_daily() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.scene = '' THEN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = OLD.created_at::date
          AND carpet_id = OLD.carpet_id
          AND carpet_size_id = COALESCE(OLD.carpet_size_id, OLD.carpet_id);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = OLD.created_at::date
          AND (carpet_id, carpet_size_id) IN (
              SELECT (placed ->> 'carpet_id')::bigint, (placed ->> 'carpet_size_id')::bigint
              FROM jsonb_array_elements(OLD.scene::jsonb -> 'carpets') AS placed);
    ELSIF NEW.scene = '' THEN
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        VALUES (NEW.organization_id, NEW.created_at::date, NEW.carpet_id,
                COALESCE(NEW.carpet_size_id, NEW.carpet_id), 1)
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = render_carpet_daily.jobs + 1;
    ELSE
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        SELECT DISTINCT NEW.organization_id, NEW.created_at::date,
               (placed ->> 'carpet_id')::bigint, (placed ->> 'carpet_size_id')::bigint, 1
        FROM jsonb_array_elements(NEW.scene::jsonb -> 'carpets') AS placed
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = render_carpet_daily.jobs + 1;
    END IF;
    RETURN NULL;
END $$;
"""

# SQLite has no procedural triggers: one trigger per case, chosen by WHEN. (The WHERE true
# lets SQLite's parser tell the SELECT from the upsert's ON CONFLICT.)
SQLITE_SCENE_TRIGGERS = [
    """CREATE TRIGGER render_job_carpet_daily_insert_scene AFTER INSERT ON render_job
        WHEN NEW.scene <> '' BEGIN
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        SELECT DISTINCT NEW.organization_id, date(NEW.created_at),
               json_extract(value, '$.carpet_id'), json_extract(value, '$.carpet_size_id'), 1
        FROM json_each(NEW.scene, '$.carpets') WHERE true
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = jobs + 1; END""",
    """CREATE TRIGGER render_job_carpet_daily_delete_scene AFTER DELETE ON render_job
        WHEN OLD.scene <> '' BEGIN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = date(OLD.created_at)
          AND (carpet_id, carpet_size_id) IN (
              SELECT json_extract(value, '$.carpet_id'), json_extract(value, '$.carpet_size_id')
              FROM json_each(OLD.scene, '$.carpets')); END""",
]
SQLITE_PLAIN_TRIGGERS = [
    """CREATE TRIGGER render_job_carpet_daily_insert AFTER INSERT ON render_job
        WHEN NEW.scene = '' BEGIN
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        VALUES (NEW.organization_id, date(NEW.created_at), NEW.carpet_id,
                COALESCE(NEW.carpet_size_id, NEW.carpet_id), 1)
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = jobs + 1; END""",
    """CREATE TRIGGER render_job_carpet_daily_delete AFTER DELETE ON render_job
        WHEN OLD.scene = '' BEGIN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = date(OLD.created_at)
          AND carpet_id = OLD.carpet_id
          AND carpet_size_id = COALESCE(OLD.carpet_size_id, OLD.carpet_id); END""",
]


def up(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_FUNCTION)
    else:
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_insert")
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_delete")
        for statement in SQLITE_PLAIN_TRIGGERS + SQLITE_SCENE_TRIGGERS:
            db.execute_sql(statement)
    _count_other_carpets(db, counting=True)


def down(migrator, db):
    """Back to migration 0014's triggers (every job by its own carpet and size)."""
    _count_other_carpets(db, counting=False)
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_insert ON render_job")
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_delete ON render_job")
        db.execute_sql("DROP FUNCTION render_job_carpet_daily()")
        db.execute_sql(BEFORE.POSTGRES_TRIGGERS)
        return
    for name in ("insert", "delete", "insert_scene", "delete_scene"):
        db.execute_sql(f"DROP TRIGGER render_job_carpet_daily_{name}")
    for statement in BEFORE.SQLITE_TRIGGERS:
        db.execute_sql(statement)


def _count_other_carpets(db, counting: bool) -> None:
    """Count (or, going down, uncount) the carpets after the first of each render on a measured
    floor, which the triggers before this migration did not count."""
    day = "created_at::date" if isinstance(db, PostgresqlDatabase) else "date(created_at)"
    param = db.param
    add = (f"INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, "
           f"jobs) VALUES ({param}, {param}, {param}, {param}, 1) "
           f"ON CONFLICT (organization_id, day, carpet_id, carpet_size_id) "
           f"DO UPDATE SET jobs = render_carpet_daily.jobs + 1")
    remove = (f"UPDATE render_carpet_daily SET jobs = jobs - 1 WHERE organization_id = {param} "
              f"AND day = {param} AND carpet_id = {param} AND carpet_size_id = {param}")
    jobs = db.execute_sql(f"SELECT organization_id, {day}, carpet_id, "
                          f"COALESCE(carpet_size_id, carpet_id), scene FROM render_job "
                          f"WHERE scene <> ''").fetchall()
    for organization_id, when, carpet_id, size_id, scene in jobs:
        others = {(placed["carpet_id"], placed["carpet_size_id"])
                  for placed in json.loads(scene)["carpets"]} - {(carpet_id, size_id)}
        for other_carpet, other_size in sorted(others):
            db.execute_sql(add if counting else remove,
                           (organization_id, when, other_carpet, other_size))
