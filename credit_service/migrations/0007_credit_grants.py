"""credit_grants: a balance is made of grants (`docs/data-rules.md`). Every organisation's balance
becomes one paid grant without expiry, holding what its open holds reserved (each open hold
draws its amount from that grant); `credit_log` names the grant a row made or expired and
admits the kind `expire`.

`python -m credit_service verify` holds before and after: the balance equals the sum of the
grants' `remaining`, `held` the sum of their `held` (docs/data-rules.md).
"""
import datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    CharField,
    Check,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    TextField,
)
from playhouse.migrations import MigrationError

from carpet_common.migrate import replace_sqlite_check

OLD_KINDS = "kind IN ('seed', 'adjust', 'render')"
NEW_KINDS = "kind IN ('seed', 'adjust', 'render', 'expire')"
BEGINNING = datetime.datetime(1970, 1, 1)


def _now():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _kinds(db, old: str, new: str) -> None:
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("ALTER TABLE credit_log DROP CONSTRAINT credit_log_kind_check")
        db.execute_sql(f"ALTER TABLE credit_log ADD CONSTRAINT credit_log_kind_check CHECK ({new})")
    else:
        replace_sqlite_check(db, "credit_log", old, new)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Organization(Base):
        id = BigAutoField()

    class CreditHold(Base):
        id = BigAutoField()

    class CreditGrant(Base):
        id = BigAutoField()
        organization = ForeignKeyField(Organization, on_delete="RESTRICT")
        kind = CharField(max_length=16, constraints=[Check("kind IN ('paid', 'promotional')")])
        amount = BigIntegerField(constraints=[Check("amount > 0")])
        remaining = BigIntegerField(constraints=[Check("remaining >= 0")])
        held = BigIntegerField(default=0, constraints=[Check("held >= 0")])
        priority = IntegerField(default=0)
        effective_at = DateTimeField()
        expires_at = DateTimeField(null=True)
        expired_at = DateTimeField(null=True)
        reason = TextField(default="")
        reference = CharField(max_length=200, default="")
        created_at = DateTimeField(default=_now)

        class Meta:
            constraints = [
                Check("held <= remaining", name="credit_grant_held_within_remaining"),
                Check("remaining <= amount", name="credit_grant_remaining_within_amount")]
            indexes = (
                (("organization", "expired_at"), False),
                (("expired_at", "expires_at"), False),
            )

    class CreditHoldDraw(Base):
        id = BigAutoField()
        hold = ForeignKeyField(CreditHold, on_delete="RESTRICT")
        grant = ForeignKeyField(CreditGrant, on_delete="RESTRICT")
        amount = BigIntegerField(constraints=[Check("amount > 0")])

        class Meta:
            indexes = ((("hold", "grant"), True),)

    db.create_tables([CreditGrant, CreditHoldDraw], safe=False)
    migrator.migrate(migrator.add_column(
        "credit_log", "grant_id",
        ForeignKeyField(CreditGrant, null=True, on_delete="RESTRICT", field=CreditGrant.id)))
    _kinds(db, OLD_KINDS, NEW_KINDS)
    # The balances as they are: one paid grant each, spendable since always, never expiring.
    db.execute_sql(
        "INSERT INTO credit_grant (organization_id, kind, amount, remaining, held, priority, "
        "effective_at, reason, reference, created_at) "
        "SELECT organization_id, 'paid', balance, balance, held, 0, ?, "
        "'the balance before grants', 'migration:credit_grants', ? "
        "FROM credit_balance WHERE balance > 0".replace("?", db.param),
        (BEGINNING, _now()))
    db.execute_sql(
        "INSERT INTO credit_hold_draw (hold_id, grant_id, amount) "
        "SELECT h.id, g.id, h.amount FROM credit_hold h "
        "JOIN credit_grant g ON g.organization_id = h.organization_id "
        "WHERE h.state = 'held'")


def down(migrator, db):
    """Only while no grant has expired: an `expire` row is part of the ledger (its balance
    follows from it), and a rollback never deletes ledger rows."""
    (expired,) = db.execute_sql("SELECT count(*) FROM credit_log WHERE kind = 'expire'").fetchone()
    if expired:
        raise MigrationError(f"{expired} expire rows are in the ledger: credit_grants cannot be "
                             f"rolled back without losing them")
    _kinds(db, NEW_KINDS, OLD_KINDS)
    migrator.migrate(migrator.drop_index("credit_log", "credit_log_grant_id"),
                     migrator.drop_column("credit_log", "grant_id"))
    db.execute_sql("DROP TABLE credit_hold_draw")
    db.execute_sql("DROP TABLE credit_grant")
