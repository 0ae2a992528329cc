"""Migration 0004 (sign-in) on a database that already has users, on both engines: emails are
rewritten to their normal form and kept as typed for display, and two users who turn out to be
one address stop the migration, naming them, with nothing changed."""
import pytest
from playhouse.migrations import MigrationError, Runner

from carpet_common.db import bind_database, is_postgres
from carpet_common.migrate import apply_migrations
from credit_service import migrations, models
from tests.conftest import fresh_database_url

pytestmark = pytest.mark.usefixtures("engine")
# What create_user stored before 0004 for `İSMAİL@firma.com.tr`: Python's lower() turns İ into
# i + U+0307, so it did not clash with a later `ismail@firma.com.tr`.
OLD_LOWERED = "İSMAİL@firma.com.tr".lower()


def _insert_user(database, organization_id, email):
    database.execute_sql(
        f'INSERT INTO "user" (organization_id, name, email, role, created_at) '
        f"VALUES ({database.param}, 'x', {database.param}, 'STAFF', '2026-01-01 00:00:00')",
        (organization_id, email))


def test_emails_take_their_normal_form_and_clashes_stop_the_migration(engine, tmp_path,
                                                                      pg_databases):
    url = fresh_database_url(engine, "sign_in_migration", tmp_path, pg_databases)
    database = bind_database(models.database, url)
    try:
        with database.connection_context():
            Runner(database, migrations.DIRECTORY).up(target="0003_audit_chain_seal")
            database.execute_sql(
                "INSERT INTO organization (name, created_at) VALUES ('Acme', "
                "'2026-01-01 00:00:00')")
            organization_id = database.execute_sql("SELECT id FROM organization").fetchone()[0]
            assert OLD_LOWERED != "ismail@firma.com.tr"
            _insert_user(database, organization_id, OLD_LOWERED)
            _insert_user(database, organization_id, "ismail@firma.com.tr")
            _insert_user(database, organization_id, "ayse@xn--rnek-4qa.com.tr")

            with pytest.raises(MigrationError) as refused:
                apply_migrations(database, migrations.DIRECTORY)
            ids = [user_id for user_id, email in database.execute_sql(
                'SELECT id, email FROM "user" ORDER BY id').fetchall() if email[0] == "i"]
            assert f"ismail@firma.com.tr: users {ids[0]}, {ids[1]}" in str(refused.value)
            assert "login_failure" not in database.get_tables()  # nothing half-applied
            columns = {column.name for column in database.get_columns("user")}
            assert "display_email" not in columns

            database.execute_sql(f'DELETE FROM "user" WHERE id = {ids[1]}')
            assert apply_migrations(database, migrations.DIRECTORY)[0] == "0004_sign_in"
            rows = database.execute_sql(
                'SELECT email, display_email, password_hash, active FROM "user" ORDER BY id'
            ).fetchall()
            assert [(email, display, hash_, bool(active)) for email, display, hash_, active
                    in rows] == [("ismail@firma.com.tr", OLD_LOWERED, "", True),
                                 ("ayse@xn--rnek-4qa.com.tr", "ayse@xn--rnek-4qa.com.tr", "",
                                  True)]
    finally:
        if is_postgres(database):
            database.close_all()
