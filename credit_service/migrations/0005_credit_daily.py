"""credit_daily: credits spent (captured by renders) and added (seed and positive adjustments)
per organisation and day (UTC), kept by a trigger on credit_log in the statement that writes the
row, so the console's usage chart (GET /admin/usage) costs the same at any history size. Credit
log rows are never updated or deleted, so an insert trigger is all it takes. Existing rows are
counted when the migration runs; `python -m credit_service verify` recounts.
"""
from peewee import BigIntegerField, Check, CompositeKey, DateField, Model, PostgresqlDatabase

SPENT = "CASE WHEN {row}.kind = 'render' THEN -{row}.delta ELSE 0 END"
ADDED = "CASE WHEN {row}.delta > 0 AND {row}.kind IN ('seed', 'adjust') THEN {row}.delta ELSE 0 END"

POSTGRES_TRIGGER = f"""
CREATE FUNCTION credit_log_daily() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credit_daily (organization_id, day, spent, added)
    VALUES (NEW.organization_id, NEW.created_at::date, {SPENT.format(row="NEW")},
            {ADDED.format(row="NEW")})
    ON CONFLICT (organization_id, day) DO UPDATE
        SET spent = credit_daily.spent + EXCLUDED.spent,
            added = credit_daily.added + EXCLUDED.added;
    RETURN NULL;
END $$;

CREATE TRIGGER credit_log_daily_insert AFTER INSERT ON credit_log
    FOR EACH ROW EXECUTE FUNCTION credit_log_daily();
"""

SQLITE_TRIGGER = f"""
CREATE TRIGGER credit_log_daily_insert AFTER INSERT ON credit_log BEGIN
    INSERT INTO credit_daily (organization_id, day, spent, added)
    VALUES (NEW.organization_id, date(NEW.created_at), {SPENT.format(row="NEW")},
            {ADDED.format(row="NEW")})
    ON CONFLICT (organization_id, day) DO UPDATE
        SET spent = spent + excluded.spent, added = added + excluded.added;
END
"""


def _backfill(db) -> str:
    day = "created_at::date" if isinstance(db, PostgresqlDatabase) else "date(created_at)"
    row = "credit_log"
    return (f"INSERT INTO credit_daily (organization_id, day, spent, added) "
            f"SELECT organization_id, {day}, SUM({SPENT.format(row=row)}), "
            f"SUM({ADDED.format(row=row)}) FROM credit_log GROUP BY organization_id, {day}")


def up(migrator, db):
    class CreditDaily(Model):
        organization_id = BigIntegerField()
        day = DateField()
        spent = BigIntegerField(default=0, constraints=[Check("spent >= 0")])
        added = BigIntegerField(default=0, constraints=[Check("added >= 0")])

        class Meta:
            database = db
            legacy_table_names = False
            primary_key = CompositeKey("organization_id", "day")
            indexes = ((("day",), False),)

    db.create_tables([CreditDaily], safe=False)
    db.execute_sql(POSTGRES_TRIGGER if isinstance(db, PostgresqlDatabase) else SQLITE_TRIGGER)
    db.execute_sql(_backfill(db))
