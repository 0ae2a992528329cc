"""hold_release_reason: a released hold keeps why it was released (ReleaseHoldRequest.reason,
e.g. "render failed" or "render canceled"); holds released before this migration say ''."""
from peewee import CharField


def up(migrator, db):
    migrator.migrate(migrator.add_column(
        "credit_hold", "release_reason", CharField(max_length=200, default="")))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("credit_hold", "release_reason"))
