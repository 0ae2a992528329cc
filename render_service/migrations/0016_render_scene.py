"""render_scene: a render on a measured floor keeps its scene (`render_service.floor`): the
floor, each carpet with its size, place, computed corners and fit, and the occluders, as JSON
in render_job.scene ('' for a render placed by four corners or by default). `placement` keeps
the first carpet's corners, so what reads placements alone is unchanged."""


def up(migrator, db):
    db.execute_sql("ALTER TABLE render_job ADD COLUMN scene TEXT NOT NULL DEFAULT ''")


def down(migrator, db):
    db.execute_sql("ALTER TABLE render_job DROP COLUMN scene")
