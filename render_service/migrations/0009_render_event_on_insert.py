"""render_event_on_insert: a job can now be written already ended. On PostgreSQL a submission
whose reservation is refused writes its job once, `failed` (render_service.renders), instead of
writing it `queued` and then failing it, so the UPDATE trigger of 0008 never sees it end. This
trigger writes the event of a job inserted `success` or `failed`, with the same function and
the same row, keeping 0008's promise: no path ends a job without its event."""
from peewee import PostgresqlDatabase

_TYPE = "CASE NEW.status WHEN 'success' THEN 'render.succeeded' ELSE 'render.failed' END"

POSTGRES_TRIGGER = """
CREATE TRIGGER render_job_event_insert AFTER INSERT ON render_job
    FOR EACH ROW WHEN (NEW.status IN ('success', 'failed'))
    EXECUTE FUNCTION render_job_event();
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER render_job_event_insert AFTER INSERT ON render_job
WHEN NEW.status IN ('success', 'failed') BEGIN
    INSERT INTO render_event (job_id, organization_id, type, occurred_at)
    VALUES (NEW.id, NEW.organization_id, {_TYPE}, COALESCE(NEW.finished_at, NEW.updated_at))
    ON CONFLICT (job_id) DO NOTHING;
END"""


def up(migrator, db):
    db.execute_sql(POSTGRES_TRIGGER if isinstance(db, PostgresqlDatabase) else SQLITE_TRIGGER)


def down(migrator, db):
    db.execute_sql("DROP TRIGGER render_job_event_insert" +
                   (" ON render_job" if isinstance(db, PostgresqlDatabase) else ""))
