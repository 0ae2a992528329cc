"""render_events: the render service's outbox for webhooks (`docs/webhooks.md`). A trigger on
render_job writes one row when a job reaches `success` or `failed`, in the very statement that
ends it, so no path that ends a job (worker, cancel, refused submission, lease expiry) can end
it without its event. The relay (render_service.events) hands the rows to the credit service,
which owns the webhooks, and deletes them. A job ends once, so its id is the event's key."""
from peewee import BigIntegerField, CharField, Check, DateTimeField, Model, PostgresqlDatabase

_TYPE = "CASE NEW.status WHEN 'success' THEN 'render.succeeded' ELSE 'render.failed' END"

POSTGRES_TRIGGER = f"""
CREATE FUNCTION render_job_event() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO render_event (job_id, organization_id, type, occurred_at)
    VALUES (NEW.id, NEW.organization_id, {_TYPE}, COALESCE(NEW.finished_at, NEW.updated_at))
    ON CONFLICT (job_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER render_job_event_update AFTER UPDATE OF status ON render_job
    FOR EACH ROW WHEN (NEW.status IN ('success', 'failed')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION render_job_event();
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER render_job_event_update AFTER UPDATE OF status ON render_job
WHEN NEW.status IN ('success', 'failed') AND OLD.status IS NOT NEW.status BEGIN
    INSERT INTO render_event (job_id, organization_id, type, occurred_at)
    VALUES (NEW.id, NEW.organization_id, {_TYPE}, COALESCE(NEW.finished_at, NEW.updated_at))
    ON CONFLICT (job_id) DO NOTHING;
END"""


def up(migrator, db):
    class RenderEvent(Model):
        job_id = BigIntegerField(primary_key=True)
        organization_id = BigIntegerField()
        type = CharField(max_length=32, constraints=[
            Check("type IN ('render.succeeded', 'render.failed')")])
        occurred_at = DateTimeField()

        class Meta:
            database = db
            table_name = "render_event"

    db.create_tables([RenderEvent], safe=False)
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_TRIGGER)
    else:
        db.execute_sql(SQLITE_TRIGGER)


def down(migrator, db):
    db.execute_sql("DROP TRIGGER render_job_event_update" +
                   (" ON render_job" if isinstance(db, PostgresqlDatabase) else ""))
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP FUNCTION render_job_event()")
    db.execute_sql("DROP TABLE render_event")
