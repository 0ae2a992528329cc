"""notifications: webhook endpoints, the event outbox and its deliveries (`docs/webhooks.md`); the
low-balance alert and spend limits on each balance row; suspension on each organisation; two
hold indexes for what an organisation or a user spent since a time."""
import datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def _now():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


EVENT_TYPES = ("render.succeeded", "render.failed", "credit.adjusted", "credit.low_balance",
               "credit.spend_limit_reached", "organization.suspended")
STATES = ("pending", "delivered", "failed", "canceled")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("organization", "suspended_at", DateTimeField(null=True)),
        migrator.add_column("organization", "suspension_reason",
                            CharField(max_length=500, default="")),
        migrator.add_column("credit_balance", "low_balance_threshold", BigIntegerField(
            default=0, constraints=[Check("low_balance_threshold >= 0")])),
        migrator.add_column("credit_balance", "low_balance_armed", BooleanField(default=True)),
        migrator.add_column("credit_balance", "monthly_credit_limit", BigIntegerField(
            default=0, constraints=[Check("monthly_credit_limit >= 0")])),
        migrator.add_column("credit_balance", "user_daily_credit_limit", BigIntegerField(
            default=0, constraints=[Check("user_daily_credit_limit >= 0")])),
        migrator.add_index("credit_hold", ("organization_id", "created_at"), False),
        migrator.add_index("credit_hold", ("user_id", "created_at"), False),
    )

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class WebhookEndpoint(Base):
        id = BigAutoField()
        organization_id = BigIntegerField(null=True)
        url = CharField(max_length=2000)
        events = CharField(max_length=500)
        secret_salt = CharField(max_length=64)
        created_by = CharField(max_length=200, default="")
        created_at = DateTimeField(default=_now)
        deleted_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("deleted_at", "organization_id"), False),)

    class WebhookEvent(Base):
        id = BigAutoField()
        event_id = CharField(max_length=100, unique=True)
        type = CharField(max_length=64, constraints=[Check(_in("type", EVENT_TYPES))])
        organization_id = BigIntegerField()
        body = TextField()
        created_at = DateTimeField(default=_now)

    class WebhookDelivery(Base):
        id = BigAutoField()
        event = ForeignKeyField(WebhookEvent, on_delete="RESTRICT")
        endpoint = ForeignKeyField(WebhookEndpoint, on_delete="RESTRICT")
        state = CharField(max_length=16, default="pending",
                          constraints=[Check(_in("state", STATES))])
        attempts = IntegerField(default=0, constraints=[Check("attempts >= 0")])
        next_attempt_at = DateTimeField()
        lease_token = CharField(max_length=32, null=True)
        lease_until = DateTimeField(null=True)
        delivered_at = DateTimeField(null=True)
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = (
                (("event", "endpoint"), True),
                (("state", "next_attempt_at"), False),
                (("endpoint", "created_at", "id"), False),
            )

    class WebhookAttempt(Base):
        id = BigAutoField()
        delivery = ForeignKeyField(WebhookDelivery, on_delete="RESTRICT")
        attempted_at = DateTimeField()
        status_code = IntegerField(default=0)
        latency_ms = BigIntegerField(default=0)
        response_excerpt = CharField(max_length=500, default="")
        error = CharField(max_length=500, default="")

        class Meta:
            indexes = ((("delivery", "id"), False),)

    class SpendLimitNotice(Base):
        id = BigAutoField()
        organization_id = BigIntegerField()
        scope = CharField(max_length=64)
        period = CharField(max_length=16)
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = ((("organization_id", "scope", "period"), True),)

    db.create_tables([WebhookEndpoint, WebhookEvent, WebhookDelivery, WebhookAttempt,
                      SpendLimitNotice], safe=False)


def down(migrator, db):
    for table in ("spend_limit_notice", "webhook_attempt", "webhook_delivery", "webhook_event",
                  "webhook_endpoint"):
        db.execute_sql(f"DROP TABLE {table}")
    migrator.migrate(
        migrator.drop_index("credit_hold", "credit_hold_organization_id_created_at"),
        migrator.drop_index("credit_hold", "credit_hold_user_id_created_at"),
        *(migrator.drop_column("credit_balance", column) for column in (
            "low_balance_threshold", "low_balance_armed", "monthly_credit_limit",
            "user_daily_credit_limit")),
        migrator.drop_column("organization", "suspended_at"),
        migrator.drop_column("organization", "suspension_reason"),
    )
