"""lead_created_event: webhooks may carry `lead.created` (a shopper's quote request, relayed from
the render service's outbox; `docs/webhooks.md`). PostgreSQL swaps the CHECK on
webhook_event.type; SQLite edits it in place (carpet_common.migrate.replace_sqlite_check). Every
existing row meets the looser rule."""
from peewee import PostgresqlDatabase

from carpet_common.migrate import replace_sqlite_check

OLD_TYPES = ("render.succeeded", "render.failed", "credit.adjusted", "credit.low_balance",
             "credit.spend_limit_reached", "organization.suspended")
NEW_TYPES = (*OLD_TYPES, "lead.created")


def _rule(types) -> str:
    return f"type IN ({', '.join(repr(value) for value in types)})"


def _replace(db, old, new) -> None:
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("ALTER TABLE webhook_event DROP CONSTRAINT webhook_event_type_check")
        db.execute_sql(f"ALTER TABLE webhook_event ADD CONSTRAINT webhook_event_type_check "
                       f"CHECK ({_rule(new)})")
    else:
        replace_sqlite_check(db, "webhook_event", _rule(old), _rule(new))


def up(migrator, db):
    _replace(db, OLD_TYPES, NEW_TYPES)


def down(migrator, db):
    db.execute_sql("DELETE FROM webhook_delivery WHERE event_id IN "
                   "(SELECT id FROM webhook_event WHERE type = 'lead.created')")
    db.execute_sql("DELETE FROM webhook_event WHERE type = 'lead.created'")
    _replace(db, NEW_TYPES, OLD_TYPES)
