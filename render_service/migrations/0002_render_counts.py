"""render_counts: jobs per organisation and status, kept by triggers on render_job.

Every insert, delete and status change of a job adjusts the counts in the same statement, so
they are exact in every committed state. A job only moves forward (queued -> processing ->
success/failed, or queued -> failed), and the update trigger lowers the old status's row before
raising the new one's: every transaction takes these row locks in one order, so concurrent
jobs of one organisation wait for each other but never deadlock. Existing jobs are counted
when the migration runs.
"""
from peewee import BigIntegerField, CharField, Check, CompositeKey, Model, PostgresqlDatabase

POSTGRES_TRIGGERS = """
CREATE FUNCTION render_job_counted() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE render_count SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND status = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO render_count (organization_id, status, jobs)
        VALUES (NEW.organization_id, NEW.status, 1)
        ON CONFLICT (organization_id, status) DO UPDATE SET jobs = render_count.jobs + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER render_job_count_insert AFTER INSERT ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_counted();
CREATE TRIGGER render_job_count_delete AFTER DELETE ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_counted();
CREATE TRIGGER render_job_count_update AFTER UPDATE OF status, organization_id ON render_job
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.organization_id IS DISTINCT FROM NEW.organization_id)
    EXECUTE FUNCTION render_job_counted();
"""

# The row being left always exists (its job was counted in), so it is a plain UPDATE.
_SQLITE_LEAVE = """
    UPDATE render_count SET jobs = jobs - 1
    WHERE organization_id = OLD.organization_id AND status = OLD.status;"""
_SQLITE_ENTER = """
    INSERT INTO render_count (organization_id, status, jobs)
    VALUES (NEW.organization_id, NEW.status, 1)
    ON CONFLICT (organization_id, status) DO UPDATE SET jobs = jobs + 1;"""

SQLITE_TRIGGERS = [
    f"CREATE TRIGGER render_job_count_insert AFTER INSERT ON render_job BEGIN {_SQLITE_ENTER} END",
    f"CREATE TRIGGER render_job_count_delete AFTER DELETE ON render_job BEGIN {_SQLITE_LEAVE} END",
    "CREATE TRIGGER render_job_count_update AFTER UPDATE OF status, organization_id "
    "ON render_job WHEN OLD.status IS NOT NEW.status "
    f"OR OLD.organization_id IS NOT NEW.organization_id BEGIN {_SQLITE_LEAVE} {_SQLITE_ENTER} END",
]

BACKFILL = """
INSERT INTO render_count (organization_id, status, jobs)
SELECT organization_id, status, COUNT(*) FROM render_job GROUP BY organization_id, status
"""


def up(migrator, db):
    class RenderCount(Model):
        organization_id = BigIntegerField()
        status = CharField(max_length=16, constraints=[
            Check("status IN ('queued', 'processing', 'success', 'failed')")])
        jobs = BigIntegerField(constraints=[Check("jobs >= 0")])

        class Meta:
            database = db
            legacy_table_names = False
            primary_key = CompositeKey("organization_id", "status")

    db.create_tables([RenderCount], safe=False)
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            db.execute_sql(statement)
    db.execute_sql(BACKFILL)
