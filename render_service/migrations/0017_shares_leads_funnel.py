"""shares_leads_funnel: from a render to a sale (`docs/shares-and-leads.md`).

- render_share: a link to one render's result page. The link's token is 32 random characters
  kept as its SHA-256; the shop's name is kept as it was when the link was made.
- lead: a shopper's quote request about a render, with the consent they accepted; at most
  one open (new or contacted) lead per phone and render, by a partial unique index.
- lead_event: the outbox of `lead.created` webhooks, relayed to the credit service.
- funnel_daily: the widget's events counted per organisation, UTC day and carpet.
- funnel_session: the carpet an anonymous widget session last looked at, and when, so a sale
  reported by the shop's backend is attributed to it within 7 days.
- funnel_conversion: one row per sale reported (an order id counts once).
Plain CREATE statements on both engines."""
from peewee import PostgresqlDatabase


def up(migrator, db):
    postgres = isinstance(db, PostgresqlDatabase)
    timestamp = "TIMESTAMP" if postgres else "DATETIME"
    id_column = "BIGSERIAL NOT NULL PRIMARY KEY" if postgres else "INTEGER NOT NULL PRIMARY KEY"
    for statement in (
        f"""CREATE TABLE render_share (
            id {id_column},
            organization_id BIGINT NOT NULL,
            job_id BIGINT NOT NULL,
            token_hash VARCHAR(64) NOT NULL,
            shop_name VARCHAR(200) NOT NULL DEFAULT '',
            created_at {timestamp} NOT NULL,
            expires_at {timestamp} NOT NULL,
            revoked_at {timestamp})""",
        "CREATE UNIQUE INDEX render_share_token_hash ON render_share (token_hash)",
        "CREATE INDEX render_share_job_id ON render_share (job_id)",
        "CREATE INDEX render_share_organization_id ON render_share (organization_id, id)",
        f"""CREATE TABLE lead (
            id {id_column},
            organization_id BIGINT NOT NULL,
            job_id BIGINT NOT NULL,
            carpet_id BIGINT NOT NULL,
            publishable_key_id BIGINT,
            name VARCHAR(200) NOT NULL,
            phone VARCHAR(16) NOT NULL,
            email VARCHAR(320) NOT NULL DEFAULT '',
            message TEXT NOT NULL DEFAULT '',
            consent_text TEXT NOT NULL,
            consent_version VARCHAR(50) NOT NULL,
            consent_accepted_at {timestamp} NOT NULL,
            status VARCHAR(16) NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'contacted', 'won', 'lost')),
            note TEXT NOT NULL DEFAULT '',
            created_at {timestamp} NOT NULL,
            updated_at {timestamp} NOT NULL)""",
        "CREATE INDEX lead_organization_id ON lead (organization_id, id)",
        "CREATE INDEX lead_phone ON lead (phone)",
        "CREATE INDEX lead_email ON lead (email)",
        "CREATE INDEX lead_created_at ON lead (created_at)",
        "CREATE INDEX lead_job_id ON lead (job_id)",
        "CREATE UNIQUE INDEX lead_open_per_phone ON lead (job_id, phone) "
        "WHERE status IN ('new', 'contacted')",
        f"""CREATE TABLE lead_event (
            lead_id BIGINT NOT NULL PRIMARY KEY,
            organization_id BIGINT NOT NULL,
            occurred_at {timestamp} NOT NULL)""",
        """CREATE TABLE funnel_daily (
            organization_id BIGINT NOT NULL,
            day DATE NOT NULL,
            carpet_id BIGINT NOT NULL,
            opened INTEGER NOT NULL DEFAULT 0 CHECK (opened >= 0),
            photo_added INTEGER NOT NULL DEFAULT 0 CHECK (photo_added >= 0),
            rendered INTEGER NOT NULL DEFAULT 0 CHECK (rendered >= 0),
            shared INTEGER NOT NULL DEFAULT 0 CHECK (shared >= 0),
            lead INTEGER NOT NULL DEFAULT 0 CHECK (lead >= 0),
            PRIMARY KEY (organization_id, day, carpet_id))""",
        "CREATE INDEX funnel_daily_day ON funnel_daily (day)",
        f"""CREATE TABLE funnel_session (
            organization_id BIGINT NOT NULL,
            session_id VARCHAR(64) NOT NULL,
            carpet_id BIGINT NOT NULL,
            last_seen_at {timestamp} NOT NULL,
            PRIMARY KEY (organization_id, session_id))""",
        "CREATE INDEX funnel_session_last_seen_at ON funnel_session (last_seen_at)",
        f"""CREATE TABLE funnel_conversion (
            id {id_column},
            organization_id BIGINT NOT NULL,
            order_id VARCHAR(100),
            carpet_id BIGINT NOT NULL,
            day DATE NOT NULL,
            value_cents BIGINT NOT NULL CHECK (value_cents >= 0),
            created_at {timestamp} NOT NULL)""",
        "CREATE UNIQUE INDEX funnel_conversion_order ON funnel_conversion "
        "(organization_id, order_id)",
        "CREATE INDEX funnel_conversion_day ON funnel_conversion (organization_id, day)",
    ):
        db.execute_sql(statement)


def down(migrator, db):
    for table in ("funnel_conversion", "funnel_session", "funnel_daily", "lead_event", "lead",
                  "render_share"):
        db.execute_sql(f"DROP TABLE {table}")
