"""carpet_catalogues: each organisation its own catalogue, sizes as variants (`docs/catalogue.md`).

- carpet.organization_id (0: the shared catalogue, where every carpet so far goes), its SKU
  unique within its catalogue instead of everywhere; archived_at (archived carpets are kept for
  their renders, never deleted); updated_at; import_id (the import that created it, whose one
  audit entry covers it).
- carpet_size: the sizes a design is sold in. Each carpet so far becomes one size with the
  carpet's measurements, and that size takes the carpet's own id, so a job from before this
  migration (render_job.carpet_size_id NULL) names its size by its carpet_id — no rewrite of
  render_job, whose rows (a million in the bench) each fire triggers when updated.
- carpet.width_cm / length_cm leave the carpet: the sizes hold them.
- carpet_import: each applied import's report, row by row (GetCarpetImport).
Plain ALTER TABLE statements on both engines (a rebuilt table would lose its triggers)."""
from peewee import PostgresqlDatabase


def up(migrator, db):
    postgres = isinstance(db, PostgresqlDatabase)
    timestamp = "TIMESTAMP" if postgres else "DATETIME"
    id_column = "BIGSERIAL NOT NULL PRIMARY KEY" if postgres else "INTEGER NOT NULL PRIMARY KEY"
    for statement in (
        "ALTER TABLE carpet ADD COLUMN organization_id BIGINT NOT NULL DEFAULT 0",
        f"ALTER TABLE carpet ADD COLUMN archived_at {timestamp}",
        f"ALTER TABLE carpet ADD COLUMN updated_at {timestamp}",
        "ALTER TABLE carpet ADD COLUMN import_id VARCHAR(32)",
        "UPDATE carpet SET updated_at = created_at",
        f"""CREATE TABLE carpet_size (
            id {id_column},
            carpet_id BIGINT NOT NULL REFERENCES carpet (id) ON DELETE RESTRICT,
            sku VARCHAR(64) NOT NULL DEFAULT '',
            width_cm INTEGER NOT NULL CHECK (width_cm BETWEEN 1 AND 10000),
            length_cm INTEGER NOT NULL CHECK (length_cm BETWEEN 1 AND 10000),
            position INTEGER NOT NULL,
            archived_at {timestamp})""",
        "CREATE INDEX carpet_size_carpet_id_position ON carpet_size (carpet_id, position)",
        "CREATE UNIQUE INDEX carpet_size_carpet_id_sku ON carpet_size (carpet_id, sku) "
        "WHERE sku <> '' AND archived_at IS NULL",
        "INSERT INTO carpet_size (id, carpet_id, sku, width_cm, length_cm, position) "
        "SELECT id, id, '', width_cm, length_cm, 0 FROM carpet",
        "DROP INDEX carpet_sku",
        "CREATE UNIQUE INDEX carpet_organization_id_sku ON carpet (organization_id, sku)",
        "CREATE INDEX carpet_organization_id_created_at_id "
        "ON carpet (organization_id, created_at, id)",
        "ALTER TABLE carpet DROP COLUMN width_cm",
        "ALTER TABLE carpet DROP COLUMN length_cm",
        "ALTER TABLE render_job ADD COLUMN carpet_size_id BIGINT REFERENCES carpet_size (id)",
        f"""CREATE TABLE carpet_import (
            id VARCHAR(32) NOT NULL PRIMARY KEY,
            organization_id BIGINT NOT NULL,
            file_name VARCHAR(200) NOT NULL,
            actor VARCHAR(320) NOT NULL,
            created INTEGER NOT NULL, updated INTEGER NOT NULL, unchanged INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            rows TEXT NOT NULL,
            created_at {timestamp} NOT NULL)""",
        "CREATE INDEX carpet_import_organization_id_created_at "
        "ON carpet_import (organization_id, created_at)",
    ):
        db.execute_sql(statement)
    if postgres:  # the ids copied above were not taken from carpet_size's sequence
        db.execute_sql("SELECT setval(pg_get_serial_sequence('carpet_size', 'id'), "
                       "COALESCE((SELECT MAX(id) FROM carpet_size), 0) + 1, false)")


def down(migrator, db):
    """Back to one global catalogue: each carpet takes its first size's measurements; refused
    (the unique index) while two catalogues hold the same SKU."""
    for statement in (
        "DROP TABLE carpet_import",
        "ALTER TABLE render_job DROP COLUMN carpet_size_id",
        "ALTER TABLE carpet ADD COLUMN width_cm INTEGER NOT NULL DEFAULT 1 CHECK (width_cm > 0)",
        "ALTER TABLE carpet ADD COLUMN length_cm INTEGER NOT NULL DEFAULT 1 "
        "CHECK (length_cm > 0)",
        f"UPDATE carpet SET width_cm = ({_FIRST_SIZE.format('width_cm')}), "
        f"length_cm = ({_FIRST_SIZE.format('length_cm')})",
        "DROP INDEX carpet_organization_id_created_at_id",
        "DROP INDEX carpet_organization_id_sku",
        "CREATE UNIQUE INDEX carpet_sku ON carpet (sku)",
        "DROP TABLE carpet_size",
        "ALTER TABLE carpet DROP COLUMN updated_at",
        "ALTER TABLE carpet DROP COLUMN import_id",
        "ALTER TABLE carpet DROP COLUMN archived_at",
        "ALTER TABLE carpet DROP COLUMN organization_id",
    ):
        db.execute_sql(statement)


_FIRST_SIZE = ("SELECT {} FROM carpet_size WHERE carpet_size.carpet_id = carpet.id "
               "ORDER BY archived_at IS NOT NULL, position LIMIT 1")
