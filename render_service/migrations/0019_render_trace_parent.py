"""render_trace_parent: a job keeps the W3C `traceparent` of the submission that queued it, so
its render work, done later by a worker, is a span linked to that submission
(carpet_common.tracing). '' when tracing was off or the submission was not sampled."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE render_job ADD COLUMN trace_parent VARCHAR(64) NOT NULL "
                   "DEFAULT ''")


def down(migrator, db):
    db.execute_sql("ALTER TABLE render_job DROP COLUMN trace_parent")
