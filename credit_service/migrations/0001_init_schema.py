"""init_schema: every credit-service table with its constraints.

A frozen copy of the models as they were when this migration was written (the migration must
keep producing the same schema when models.py changes later). CHECK constraints are written
here by hand: peewee's generator drops them.
"""
import datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
    CharField,
    Check,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

GENESIS_HASH = "0" * 64


def _now():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Organization(Base):
        id = BigAutoField()
        name = CharField(max_length=200, unique=True, constraints=[Check("length(name) > 0")])
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = ((("created_at", "id"), False),)

    class User(Base):
        id = BigAutoField()
        organization = ForeignKeyField(Organization, on_delete="RESTRICT")
        name = CharField(max_length=200, constraints=[Check("length(name) > 0")])
        email = CharField(max_length=320, unique=True, constraints=[Check("email = lower(email)")])
        role = CharField(max_length=16, constraints=[Check("role IN ('ADMIN', 'STAFF')")])
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = (
                (("created_at", "id"), False),
                (("organization", "created_at", "id"), False),
            )

    class CreditBalance(Base):
        id = BigAutoField()
        organization = ForeignKeyField(Organization, unique=True, on_delete="RESTRICT")
        balance = BigIntegerField(default=0, constraints=[Check("balance >= 0")])
        held = BigIntegerField(default=0, constraints=[Check("held >= 0")])
        updated_at = DateTimeField(default=_now)

        class Meta:
            constraints = [Check("held <= balance", name="credit_balance_held_within_balance")]

    class CreditHold(Base):
        id = BigAutoField()
        organization = ForeignKeyField(Organization, on_delete="RESTRICT")
        user = ForeignKeyField(User, null=True, on_delete="RESTRICT")
        amount = BigIntegerField(constraints=[Check("amount > 0")])
        state = CharField(max_length=16, default="held", constraints=[
            Check("state IN ('held', 'captured', 'released', 'expired')")])
        reference = CharField(max_length=200)
        expires_at = DateTimeField()
        created_at = DateTimeField(default=_now)
        updated_at = DateTimeField(default=_now)

        class Meta:
            indexes = (
                (("organization", "reference"), True),
                (("state", "expires_at"), False),
                (("organization", "state", "expires_at"), False),
            )

    class CreditLog(Base):
        id = BigAutoField()
        organization = ForeignKeyField(Organization, on_delete="RESTRICT")
        user = ForeignKeyField(User, null=True, on_delete="RESTRICT")
        hold = ForeignKeyField(CreditHold, null=True, unique=True, on_delete="RESTRICT")
        delta = BigIntegerField(constraints=[Check("delta <> 0")])
        balance_after = BigIntegerField(constraints=[Check("balance_after >= 0")])
        kind = CharField(max_length=16,
                         constraints=[Check("kind IN ('seed', 'adjust', 'render')")])
        reason = TextField()
        reference = CharField(max_length=200, default="")
        actor = CharField(max_length=200, default="")
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = (
                (("created_at", "id"), False),
                (("organization", "created_at", "id"), False),
            )


    class AuditLog(Base):
        id = BigAutoField()
        created_at = DateTimeField(default=_now)
        actor = CharField(max_length=200)
        role = CharField(max_length=16, default="")
        action = CharField(max_length=200)
        organization_id = BigIntegerField(null=True)
        target = CharField(max_length=200, default="")
        details = TextField(default="{}")
        outcome = CharField(max_length=64)
        peer = CharField(max_length=200, default="")
        request_id = CharField(max_length=200, default="")
        credit_log = ForeignKeyField(CreditLog, null=True, unique=True, on_delete="RESTRICT")
        prev_hash = CharField(max_length=64)
        hash = CharField(max_length=64, unique=True)

        class Meta:
            indexes = (
                (("created_at", "id"), False),
                (("organization_id", "created_at", "id"), False),
                (("actor", "created_at", "id"), False),
                (("action", "created_at", "id"), False),
            )

    class AuditChainHead(Base):
        id = IntegerField(primary_key=True, constraints=[Check("id = 1")])
        last_hash = CharField(max_length=64)

    class IdempotencyRecord(Base):
        id = BigAutoField()
        method = CharField(max_length=200)
        key = CharField(max_length=200)
        request_hash = CharField(max_length=64)
        response = BlobField()
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = ((("method", "key"), True),)

    db.create_tables([Organization, User, CreditBalance, CreditHold, CreditLog, AuditLog,
                      AuditChainHead, IdempotencyRecord], safe=False)
    AuditChainHead.create(id=1, last_hash=GENESIS_HASH)
