"""render_placement: a job keeps where its carpet was asked to go (SubmitRenderRequest.placement,
`docs/render-api.md`) as JSON text of four (x, y) fractions; '' for the default placement and for
every job before this migration. A plain ADD COLUMN on both engines (peewee's SQLite migrator could
rebuild the table, and a rebuilt table loses its triggers)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE render_job ADD COLUMN placement TEXT NOT NULL DEFAULT ''")


def down(migrator, db):
    db.execute_sql("ALTER TABLE render_job DROP COLUMN placement")
