"""render_status_notify: on PostgreSQL, every change of a job's status notifies the channel
`render_job_status` with `<job id>:<status>`, delivered when the change commits, to every
render-service replica listening (render_service.status_hub wakes that job's WatchRender
streams). SQLite has no notifications: there the hub polls the watched jobs."""
from peewee import PostgresqlDatabase

POSTGRES_FUNCTION = """
CREATE FUNCTION render_job_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('render_job_status', NEW.id::text || ':' || NEW.status);
    RETURN NULL;
END $$;
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER render_job_status_notify AFTER UPDATE OF status ON render_job
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION render_job_status_notify();
"""


def up(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_FUNCTION)
        db.execute_sql(POSTGRES_TRIGGER)


def down(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP TRIGGER render_job_status_notify ON render_job")
        db.execute_sql("DROP FUNCTION render_job_status_notify()")
