"""shop_logo: each shop's logo on its share pages (`render_service.shop_logos`), kept reduced
(a few kilobytes), one row per organisation."""
from peewee import PostgresqlDatabase


def up(migrator, db):
    postgres = isinstance(db, PostgresqlDatabase)
    db.execute_sql(f"""CREATE TABLE shop_logo (
        organization_id BIGINT NOT NULL PRIMARY KEY,
        image {"BYTEA" if postgres else "BLOB"} NOT NULL,
        content_type VARCHAR(32) NOT NULL,
        updated_at {"TIMESTAMP" if postgres else "DATETIME"} NOT NULL)""")


def down(migrator, db):
    db.execute_sql("DROP TABLE shop_logo")
