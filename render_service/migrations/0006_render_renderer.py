"""render_renderer: each job records the renderer that made its picture (`local` or `http`),
'' until it has one and for every job before this migration. A plain ADD COLUMN on both
engines (a rebuilt SQLite table would lose its triggers)."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE render_job ADD COLUMN renderer VARCHAR(32) NOT NULL DEFAULT ''")


def down(migrator, db):
    db.execute_sql("ALTER TABLE render_job DROP COLUMN renderer")
