"""render_carpet_daily: renders per organisation, day of creation (UTC), carpet and size, kept by
triggers on render_job like render_daily, so "which carpets do shops render" (the Catalogue
screen, GET /admin/usage) costs a few rows per day whatever the history's size. A job's carpet
and day never change: it is counted when written and uncounted if deleted. A job from before
sizes (carpet_size_id NULL) counts under the size migration 0013 gave its carpet's id. Existing
jobs are counted when the migration runs."""
from peewee import PostgresqlDatabase

CREATE_TABLE = """
CREATE TABLE render_carpet_daily (
    organization_id BIGINT NOT NULL,
    day DATE NOT NULL,
    carpet_id BIGINT NOT NULL,
    carpet_size_id BIGINT NOT NULL,
    jobs BIGINT NOT NULL CHECK (jobs >= 0),
    PRIMARY KEY (organization_id, day, carpet_id, carpet_size_id))"""

POSTGRES_TRIGGERS = """
CREATE FUNCTION render_job_carpet_daily() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = OLD.created_at::date
          AND carpet_id = OLD.carpet_id
          AND carpet_size_id = COALESCE(OLD.carpet_size_id, OLD.carpet_id);
    ELSE
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        VALUES (NEW.organization_id, NEW.created_at::date, NEW.carpet_id,
                COALESCE(NEW.carpet_size_id, NEW.carpet_id), 1)
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = render_carpet_daily.jobs + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER render_job_carpet_daily_insert AFTER INSERT ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_carpet_daily();
CREATE TRIGGER render_job_carpet_daily_delete AFTER DELETE ON render_job
    FOR EACH ROW EXECUTE FUNCTION render_job_carpet_daily();
"""

SQLITE_TRIGGERS = [
    """CREATE TRIGGER render_job_carpet_daily_insert AFTER INSERT ON render_job BEGIN
        INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs)
        VALUES (NEW.organization_id, date(NEW.created_at), NEW.carpet_id,
                COALESCE(NEW.carpet_size_id, NEW.carpet_id), 1)
        ON CONFLICT (organization_id, day, carpet_id, carpet_size_id)
        DO UPDATE SET jobs = jobs + 1; END""",
    """CREATE TRIGGER render_job_carpet_daily_delete AFTER DELETE ON render_job BEGIN
        UPDATE render_carpet_daily SET jobs = jobs - 1
        WHERE organization_id = OLD.organization_id AND day = date(OLD.created_at)
          AND carpet_id = OLD.carpet_id
          AND carpet_size_id = COALESCE(OLD.carpet_size_id, OLD.carpet_id); END""",
]


def up(migrator, db):
    postgres = isinstance(db, PostgresqlDatabase)
    db.execute_sql(CREATE_TABLE)
    db.execute_sql("CREATE INDEX render_carpet_daily_day ON render_carpet_daily (day)")
    if postgres:
        db.execute_sql(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            db.execute_sql(statement)
    day = "created_at::date" if postgres else "date(created_at)"
    db.execute_sql(
        "INSERT INTO render_carpet_daily (organization_id, day, carpet_id, carpet_size_id, jobs) "
        f"SELECT organization_id, {day}, carpet_id, COALESCE(carpet_size_id, carpet_id), "
        f"COUNT(*) FROM render_job "
        f"GROUP BY organization_id, {day}, carpet_id, COALESCE(carpet_size_id, carpet_id)")


def down(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_insert ON render_job")
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_delete ON render_job")
        db.execute_sql("DROP FUNCTION render_job_carpet_daily()")
    else:
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_insert")
        db.execute_sql("DROP TRIGGER render_job_carpet_daily_delete")
    db.execute_sql("DROP TABLE render_carpet_daily")
