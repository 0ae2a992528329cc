"""render_storage: what each organisation keeps on the render side, in bytes (room pictures
plus rendered outputs), kept by triggers on render_job like render_count, so the overview's
figure costs the same at any history size.

render_job gains `input_bytes` and `output_bytes` (what is stored now; 0 once removed),
`has_room_image` (a picture was submitted: a job that lost it before its credit was reserved
is failed rather than rendered without it) and `output_expired` (RENDER_OUTPUT_RETENTION removed
the picture). Existing room pictures are counted; existing outputs count from their next change
(their sizes were not recorded).
"""
from peewee import BigIntegerField, Check, Model, PostgresqlDatabase

# A growth is added with an upsert; a shrink subtracts from the row, which exists because the
# bytes it takes back were counted in (an upsert's proposed row would break `bytes >= 0`).
POSTGRES_TRIGGERS = """
CREATE FUNCTION render_job_stored() RETURNS TRIGGER LANGUAGE plpgsql AS $$
DECLARE
    change BIGINT := 0;
    org BIGINT;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        change := change - OLD.input_bytes - OLD.output_bytes;
        org := OLD.organization_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        change := change + NEW.input_bytes + NEW.output_bytes;
        org := NEW.organization_id;
    END IF;
    IF change > 0 THEN
        INSERT INTO render_storage (organization_id, bytes) VALUES (org, change)
        ON CONFLICT (organization_id) DO UPDATE SET bytes = render_storage.bytes + change;
    ELSIF change < 0 THEN
        UPDATE render_storage SET bytes = bytes + change WHERE organization_id = org;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER render_job_storage_insert AFTER INSERT ON render_job
    FOR EACH ROW WHEN (NEW.input_bytes + NEW.output_bytes <> 0)
    EXECUTE FUNCTION render_job_stored();
CREATE TRIGGER render_job_storage_delete AFTER DELETE ON render_job
    FOR EACH ROW WHEN (OLD.input_bytes + OLD.output_bytes <> 0)
    EXECUTE FUNCTION render_job_stored();
CREATE TRIGGER render_job_storage_update AFTER UPDATE OF input_bytes, output_bytes ON render_job
    FOR EACH ROW WHEN (OLD.input_bytes + OLD.output_bytes
                       IS DISTINCT FROM NEW.input_bytes + NEW.output_bytes)
    EXECUTE FUNCTION render_job_stored();
"""

_OLD, _NEW = "(OLD.input_bytes + OLD.output_bytes)", "(NEW.input_bytes + NEW.output_bytes)"


def _sqlite_grow(amount: str, row: str) -> str:
    return (f"INSERT INTO render_storage (organization_id, bytes) VALUES ({row}.organization_id, "
            f"({amount})) ON CONFLICT (organization_id) DO UPDATE SET bytes = bytes + ({amount});")


def _sqlite_shrink(amount: str, row: str) -> str:
    return (f"UPDATE render_storage SET bytes = bytes - ({amount}) "
            f"WHERE organization_id = {row}.organization_id;")


SQLITE_TRIGGERS = [
    f"CREATE TRIGGER render_job_storage_insert AFTER INSERT ON render_job "
    f"WHEN {_NEW} > 0 BEGIN {_sqlite_grow(_NEW, 'NEW')} END",
    f"CREATE TRIGGER render_job_storage_delete AFTER DELETE ON render_job "
    f"WHEN {_OLD} > 0 BEGIN {_sqlite_shrink(_OLD, 'OLD')} END",
    f"CREATE TRIGGER render_job_storage_grow AFTER UPDATE OF input_bytes, output_bytes "
    f"ON render_job WHEN {_NEW} > {_OLD} BEGIN {_sqlite_grow(f'{_NEW} - {_OLD}', 'NEW')} END",
    f"CREATE TRIGGER render_job_storage_shrink AFTER UPDATE OF input_bytes, output_bytes "
    f"ON render_job WHEN {_NEW} < {_OLD} BEGIN {_sqlite_shrink(f'{_OLD} - {_NEW}', 'NEW')} END",
]

BACKFILL = [
    """UPDATE render_job SET has_room_image = TRUE, input_bytes = (
           SELECT length(room_image) FROM render_input WHERE render_input.job_id = render_job.id)
       WHERE id IN (SELECT job_id FROM render_input)""",
    """INSERT INTO render_storage (organization_id, bytes)
       SELECT organization_id, SUM(input_bytes + output_bytes) FROM render_job
       GROUP BY organization_id HAVING SUM(input_bytes + output_bytes) > 0""",
]


def up(migrator, db):
    class RenderStorage(Model):
        organization_id = BigIntegerField(primary_key=True)
        bytes = BigIntegerField(constraints=[Check("bytes >= 0")])

        class Meta:
            database = db
            legacy_table_names = False

    # Plain ADD COLUMN on both engines: peewee's SQLite migrator would rebuild render_job to
    # make a column NOT NULL, and a rebuilt table loses its triggers (render_count's).
    for column, kind, default in (("input_bytes", "BIGINT", "0"), ("output_bytes", "BIGINT", "0"),
                                  ("has_room_image", "BOOLEAN", "FALSE"),
                                  ("output_expired", "BOOLEAN", "FALSE")):
        db.execute_sql(f"ALTER TABLE render_job ADD COLUMN {column} {kind} NOT NULL "
                       f"DEFAULT {default}")
    db.create_tables([RenderStorage], safe=False)
    for statement in BACKFILL:  # before the triggers, which would count it twice
        db.execute_sql(statement)
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            db.execute_sql(statement)
