"""render_job_next_id: on SQLite, where a table has no sequence, the counter a submission takes
its job's id from before it reserves the credit — as PostgreSQL takes it from render_job's own
sequence — so both engines run one submission algorithm (render_service.renders). A queued job
still without a hold (a SQLite submission interrupted under the old algorithm) is failed: no
worker takes such a job over any more."""
from peewee import PostgresqlDatabase

INTERRUPTED = "the submission was interrupted before its credit was reserved; submit again"


def up(migrator, db):
    if not isinstance(db, PostgresqlDatabase):
        db.execute_sql("CREATE TABLE render_job_next_id (value INTEGER NOT NULL)")
        db.execute_sql("INSERT INTO render_job_next_id (value) "
                       "SELECT COALESCE(MAX(id), 0) FROM render_job")
    db.execute_sql(f"UPDATE render_job SET status = 'failed', error_text = {db.param}, "
                   "finished_at = created_at, updated_at = created_at "
                   "WHERE status = 'queued' AND hold_id IS NULL", (INTERRUPTED,))


def down(migrator, db):
    if not isinstance(db, PostgresqlDatabase):
        db.execute_sql("DROP TABLE render_job_next_id")
