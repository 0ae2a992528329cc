"""render_daily: jobs per organisation, day of creation (UTC) and status, kept by triggers on
render_job like render_count, so the console's 30-day chart (GET /admin/usage) costs the same at
a thousand jobs and at a million. A job keeps its day; a status change moves it between that
day's status rows, lowering the old one first (one lock order: no deadlocks). Existing jobs are
counted when the migration runs.
"""
from peewee import (
    BigIntegerField,
    CharField,
    Check,
    CompositeKey,
    DateField,
    Model,
    PostgresqlDatabase,
)

POSTGRES_TRIGGERS = """
CREATE FUNCTION render_job_daily() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE render_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = OLD.created_at::date
          AND status = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO render_daily (organization_id, day, status, jobs)
        VALUES (NEW.organization_id, NEW.created_at::date, NEW.status, 1)
        ON CONFLICT (organization_id, day, status) DO UPDATE SET jobs = render_daily.jobs + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER render_job_daily_insert AFTER INSERT ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_daily();
CREATE TRIGGER render_job_daily_delete AFTER DELETE ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_daily();
CREATE TRIGGER render_job_daily_update AFTER UPDATE OF status, organization_id, created_at
    ON render_job
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.organization_id IS DISTINCT FROM NEW.organization_id
                       OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION render_job_daily();
"""

_SQLITE_LEAVE = """
    UPDATE render_daily SET jobs = jobs - 1
    WHERE organization_id = OLD.organization_id AND day = date(OLD.created_at)
      AND status = OLD.status;"""
_SQLITE_ENTER = """
    INSERT INTO render_daily (organization_id, day, status, jobs)
    VALUES (NEW.organization_id, date(NEW.created_at), NEW.status, 1)
    ON CONFLICT (organization_id, day, status) DO UPDATE SET jobs = jobs + 1;"""

SQLITE_TRIGGERS = [
    f"CREATE TRIGGER render_job_daily_insert AFTER INSERT ON render_job BEGIN {_SQLITE_ENTER} END",
    f"CREATE TRIGGER render_job_daily_delete AFTER DELETE ON render_job BEGIN {_SQLITE_LEAVE} END",
    "CREATE TRIGGER render_job_daily_update AFTER UPDATE OF status, organization_id, created_at "
    "ON render_job WHEN OLD.status IS NOT NEW.status "
    "OR OLD.organization_id IS NOT NEW.organization_id OR OLD.created_at IS NOT NEW.created_at "
    f"BEGIN {_SQLITE_LEAVE} {_SQLITE_ENTER} END",
]


def _backfill(db) -> str:
    day = "created_at::date" if isinstance(db, PostgresqlDatabase) else "date(created_at)"
    return (f"INSERT INTO render_daily (organization_id, day, status, jobs) "
            f"SELECT organization_id, {day}, status, COUNT(*) FROM render_job "
            f"GROUP BY organization_id, {day}, status")


def up(migrator, db):
    class RenderDaily(Model):
        organization_id = BigIntegerField()
        day = DateField()
        status = CharField(max_length=16, constraints=[
            Check("status IN ('queued', 'processing', 'success', 'failed')")])
        jobs = BigIntegerField(constraints=[Check("jobs >= 0")])

        class Meta:
            database = db
            legacy_table_names = False
            primary_key = CompositeKey("organization_id", "day", "status")
            indexes = ((("day",), False),)

    db.create_tables([RenderDaily], safe=False)
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            db.execute_sql(statement)
    db.execute_sql(_backfill(db))
