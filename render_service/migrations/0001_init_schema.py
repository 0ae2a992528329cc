"""init_schema: the carpet catalogue and render jobs.

A frozen copy of the models as they were when this migration was written; CHECK constraints
are written here by hand (peewee's generator drops them).
"""
import datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
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


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Carpet(Base):
        id = BigAutoField()
        sku = CharField(max_length=64, unique=True, constraints=[Check("length(sku) > 0")])
        name = CharField(max_length=200, constraints=[Check("length(name) > 0")])
        width_cm = IntegerField(constraints=[Check("width_cm > 0")])
        length_cm = IntegerField(constraints=[Check("length_cm > 0")])
        material = CharField(max_length=100, default="")
        image = BlobField()
        image_content_type = CharField(max_length=32)
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = ((("created_at", "id"), False),)

    class RenderJob(Base):
        id = BigAutoField()
        organization_id = BigIntegerField()
        user_id = BigIntegerField(null=True)
        carpet = ForeignKeyField(Carpet, on_delete="RESTRICT", index=False)
        mode = CharField(max_length=32)
        status = CharField(max_length=16, default="queued", constraints=[
            Check("status IN ('queued', 'processing', 'success', 'failed')")])
        error_text = TextField(default="")
        cost = BigIntegerField(constraints=[Check("cost > 0")])
        credits_charged = BigIntegerField(default=0, constraints=[Check("credits_charged >= 0")])
        hold_id = BigIntegerField(null=True)
        credit_log_id = BigIntegerField(null=True)
        idempotency_key = CharField(max_length=200, null=True)
        request_hash = CharField(max_length=64, default="")
        lease_owner = CharField(max_length=100, null=True)
        lease_expires_at = DateTimeField(null=True)
        attempts = IntegerField(default=0)
        release_pending = BooleanField(default=False)
        output_path = CharField(max_length=500, null=True)
        output_content_type = CharField(max_length=32, null=True)
        created_at = DateTimeField(default=_now)
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        updated_at = DateTimeField(default=_now)

        class Meta:
            constraints = [
                Check("status <> 'success' OR credit_log_id IS NOT NULL",
                      name="render_job_success_is_charged"),
            ]
            indexes = (
                (("created_at", "id"), False),
                (("organization_id", "created_at", "id"), False),
                (("user_id", "created_at", "id"), False),
                (("status", "created_at", "id"), False),
                (("carpet", "created_at", "id"), False),
                (("organization_id", "idempotency_key"), True),
                (("release_pending", "id"), False),
            )

    class RenderInput(Base):
        job = ForeignKeyField(RenderJob, primary_key=True, on_delete="CASCADE")
        room_image = BlobField()

    db.create_tables([Carpet, RenderJob, RenderInput], safe=False)
