"""render_audit: the render service's outbox of audit entries. A change made here (a cancel)
writes its audit entry in the same transaction as the change, so no change exists without
one; the relay (render_service.audit_outbox) hands each entry to the credit service, which
owns the audit chain, under the entry's random key as idempotency key, and deletes it."""
from peewee import BigAutoField, BigIntegerField, CharField, DateTimeField, Model, TextField


def up(migrator, db):
    class RenderAudit(Model):
        id = BigAutoField()
        key = CharField(max_length=32)
        actor = CharField(max_length=320)
        actor_user_id = BigIntegerField(null=True)
        role = CharField(max_length=16)
        action = CharField(max_length=200)
        outcome = CharField(max_length=64)
        organization_id = BigIntegerField(null=True)
        target = CharField(max_length=200)
        details = TextField()
        peer = CharField(max_length=100)
        request_id = CharField(max_length=100)
        occurred_at = DateTimeField()

        class Meta:
            database = db
            table_name = "render_audit"

    db.create_tables([RenderAudit], safe=False)


def down(migrator, db):
    db.execute_sql("DROP TABLE render_audit")
