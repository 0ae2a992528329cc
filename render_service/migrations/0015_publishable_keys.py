"""publishable_keys: the keys a shop's website shows in its pages (`docs/widget.md`).

- publishable_key: one per key, stored as its SHA-256 (the key is 32 random characters, so a
  fast hash is as safe as a slow one) with its last four characters for the console; its
  allowed origins (JSON), its caps; rotation keeps the previous key's hash until
  previous_expires_at.
- publishable_key_day: renders submitted through each key per UTC day, counted under the
  key's daily cap by one conditional upsert (every replica counts the same row).
- render_job.priority (0 internal backends and staff, 10 the widget; workers take the lowest
  first), public_id (the unguessable id the widget addresses a render by) and
  publishable_key_id (the key a render was submitted with, for its concurrency cap).
Plain ALTER TABLE statements on both engines (a rebuilt table would lose its triggers)."""
from peewee import PostgresqlDatabase


def up(migrator, db):
    postgres = isinstance(db, PostgresqlDatabase)
    timestamp = "TIMESTAMP" if postgres else "DATETIME"
    id_column = "BIGSERIAL NOT NULL PRIMARY KEY" if postgres else "INTEGER NOT NULL PRIMARY KEY"
    for statement in (
        f"""CREATE TABLE publishable_key (
            id {id_column},
            organization_id BIGINT NOT NULL,
            name VARCHAR(100) NOT NULL DEFAULT '',
            key_hash VARCHAR(64) NOT NULL,
            last4 VARCHAR(4) NOT NULL,
            previous_hash VARCHAR(64),
            previous_expires_at {timestamp},
            allowed_origins TEXT NOT NULL,
            development BOOLEAN NOT NULL DEFAULT FALSE,
            renders_per_day INTEGER NOT NULL CHECK (renders_per_day BETWEEN 1 AND 1000000),
            max_concurrent INTEGER NOT NULL CHECK (max_concurrent BETWEEN 1 AND 1000),
            rate_per_visitor VARCHAR(32) NOT NULL,
            created_at {timestamp} NOT NULL,
            updated_at {timestamp} NOT NULL,
            revoked_at {timestamp})""",
        "CREATE UNIQUE INDEX publishable_key_key_hash ON publishable_key (key_hash)",
        "CREATE INDEX publishable_key_previous_hash ON publishable_key (previous_hash)",
        "CREATE INDEX publishable_key_organization_id ON publishable_key (organization_id, id)",
        """CREATE TABLE publishable_key_day (
            key_id BIGINT NOT NULL REFERENCES publishable_key (id) ON DELETE CASCADE,
            day DATE NOT NULL,
            renders INTEGER NOT NULL CHECK (renders >= 0),
            PRIMARY KEY (key_id, day))""",
        "ALTER TABLE render_job ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE render_job ADD COLUMN public_id VARCHAR(32)",
        "ALTER TABLE render_job ADD COLUMN publishable_key_id BIGINT",
        "CREATE UNIQUE INDEX render_job_public_id ON render_job (public_id)",
        "CREATE INDEX render_job_publishable_key_id_status "
        "ON render_job (publishable_key_id, status)",
        "CREATE INDEX render_job_status_priority_id ON render_job (status, priority, id)",
    ):
        db.execute_sql(statement)


def down(migrator, db):
    for statement in (
        "DROP INDEX render_job_status_priority_id",
        "DROP INDEX render_job_publishable_key_id_status",
        "DROP INDEX render_job_public_id",
        "ALTER TABLE render_job DROP COLUMN publishable_key_id",
        "ALTER TABLE render_job DROP COLUMN public_id",
        "ALTER TABLE render_job DROP COLUMN priority",
        "DROP TABLE publishable_key_day",
        "DROP TABLE publishable_key",
    ):
        db.execute_sql(statement)
