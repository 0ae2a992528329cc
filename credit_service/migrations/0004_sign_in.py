"""sign_in: passwords, sessions and login failures; emails in their normal form; audit rows
name the signed-in user.

Every existing email is rewritten to its normal form (credit_service.emails) and kept as it was
in `display_email`. Two users whose emails become one (`İSMAİL@…` stored as `i̇smai̇l@…` next
to `ismail@…`) stop the migration with their ids: merge or rename them, then migrate again.
"""
import datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    Model,
)
from playhouse.migrations import MigrationError


def _now():
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def up(migrator, db):
    from carpet_common.errors import InvalidArgument
    from credit_service.emails import normalize_email

    migrator.migrate(
        migrator.add_column("user", "display_email", CharField(max_length=320, default="")),
        migrator.add_column("user", "password_hash", CharField(max_length=255, default="")),
        migrator.add_column("user", "active", BooleanField(default=True)),
        migrator.add_column("audit_log", "actor_user_id", BigIntegerField(null=True)),
    )

    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        id = BigAutoField()
        email = CharField(max_length=320)
        display_email = CharField(max_length=320)

    class AuthSession(Base):
        id = CharField(max_length=32, primary_key=True)
        user = ForeignKeyField(User, on_delete="RESTRICT")
        created_at = DateTimeField(default=_now)
        ended_at = DateTimeField(null=True)
        end_reason = CharField(max_length=64, default="")

        class Meta:
            indexes = ((("user", "ended_at"), False), (("ended_at",), False))

    class RefreshToken(Base):
        id = BigAutoField()
        session = ForeignKeyField(AuthSession, on_delete="RESTRICT")
        token_hash = CharField(max_length=64, unique=True)
        created_at = DateTimeField(default=_now)
        expires_at = DateTimeField()
        spent_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("expires_at",), False),)

    class LoginFailure(Base):
        id = BigAutoField()
        key = CharField(max_length=400)
        created_at = DateTimeField(default=_now)

        class Meta:
            indexes = ((("key", "created_at"), False), (("created_at",), False))

    db.create_tables([AuthSession, RefreshToken, LoginFailure], safe=False)

    users = list(User.select(User.id, User.email).order_by(User.id).tuples())
    by_normal: dict[str, list[int]] = {}
    normal_of = {}
    for user_id, email in users:
        try:
            normal = normalize_email(email)
        except InvalidArgument:  # not an address by today's rules: left as it is
            normal = email
        normal_of[user_id] = (normal, email)
        by_normal.setdefault(normal, []).append(user_id)
    clashes = {normal: ids for normal, ids in by_normal.items() if len(ids) > 1}
    if clashes:
        listed = "; ".join(f"{normal}: users {', '.join(map(str, ids))}"
                           for normal, ids in sorted(clashes.items()))
        raise MigrationError(f"users whose emails are one address once normalised: {listed}. "
                             "Merge or rename them, then migrate again.")
    for user_id, (normal, typed) in normal_of.items():
        User.update(email=normal, display_email=typed).where(User.id == user_id).execute()


def down(migrator, db):
    db.execute_sql('DROP TABLE "refresh_token"')
    db.execute_sql('DROP TABLE "auth_session"')
    db.execute_sql('DROP TABLE "login_failure"')
    migrator.migrate(
        migrator.drop_column("audit_log", "actor_user_id"),
        migrator.drop_column("user", "active"),
        migrator.drop_column("user", "password_hash"),
        migrator.drop_column("user", "display_email"),
    )
