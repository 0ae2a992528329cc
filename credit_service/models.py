"""Tables owned by the credit service.

The rules of docs/data-rules.md are enforced by the database itself (CHECK, UNIQUE, NOT NULL,
foreign keys), so no code path, replica or hand-written SQL can break them. Every rule here is also
written into migrations/0001_init_schema.py, the schema's source of truth; models and schema are
compared by tests/integration/test_migrations.py.
"""
from __future__ import annotations

from peewee import (
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    Check,
    CompositeKey,
    DatabaseProxy,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from carpet_common.convert import utcnow

database = DatabaseProxy()

ROLES = ("ADMIN", "STAFF")
HOLD_STATES = ("held", "captured", "released", "expired")
CREDIT_LOG_KINDS = ("seed", "adjust", "render", "expire")
GRANT_KINDS = ("paid", "promotional")



def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Organization(BaseModel):
    id = BigAutoField()
    name = CharField(max_length=200, unique=True, constraints=[Check("length(name) > 0")])
    created_at = DateTimeField(default=utcnow)
    # Suspended (NULL: not): its submissions and its users' sign-ins are refused.
    suspended_at = DateTimeField(null=True)
    suspension_reason = CharField(max_length=500, default="")

    class Meta:
        indexes = ((("created_at", "id"), False),)


class User(BaseModel):
    id = BigAutoField()
    organization = ForeignKeyField(Organization, backref="users", on_delete="RESTRICT")
    organization_id: int  # the key's value (peewee's accessor, typed)
    name = CharField(max_length=200, constraints=[Check("length(name) > 0")])
    # The sign-in name in its normal form (credit_service.emails: NFC, Turkish-aware lower
    # case, IDNA domain), unique; `display_email` keeps it as typed.
    email = CharField(max_length=320, unique=True, constraints=[Check("email = lower(email)")])
    role = CharField(max_length=16, constraints=[Check(_in("role", ROLES))])
    created_at = DateTimeField(default=utcnow)
    display_email = CharField(max_length=320, default="")
    password_hash = CharField(max_length=255, default="")  # argon2id; '' = cannot sign in
    active = BooleanField(default=True)

    class Meta:
        indexes = (
            (("created_at", "id"), False),
            (("organization", "created_at", "id"), False),
        )


class CreditBalance(BaseModel):
    id = BigAutoField()
    organization = ForeignKeyField(Organization, unique=True, on_delete="RESTRICT")
    balance = BigIntegerField(default=0, constraints=[Check("balance >= 0")])
    held = BigIntegerField(default=0, constraints=[Check("held >= 0")])
    updated_at = DateTimeField(default=utcnow)
    # credit.low_balance fires when balance - held falls below the threshold while armed, and
    # disarms; it re-arms when the available credit is back at or above it (0: no alert).
    low_balance_threshold = BigIntegerField(default=0,
                                            constraints=[Check("low_balance_threshold >= 0")])
    low_balance_armed = BooleanField(default=True)
    # Spend limits (0: none), checked inside the reserve transaction (credit_service.controls).
    monthly_credit_limit = BigIntegerField(default=0,
                                           constraints=[Check("monthly_credit_limit >= 0")])
    user_daily_credit_limit = BigIntegerField(
        default=0, constraints=[Check("user_daily_credit_limit >= 0")])

    class Meta:
        constraints = [Check("held <= balance", name="credit_balance_held_within_balance")]


class CreditHold(BaseModel):
    id = BigAutoField()
    organization = ForeignKeyField(Organization, on_delete="RESTRICT")
    organization_id: int  # the key's value (peewee's accessor, typed)
    user = ForeignKeyField(User, null=True, on_delete="RESTRICT")
    user_id: int | None  # the key's value (peewee's accessor, typed)
    amount = BigIntegerField(constraints=[Check("amount > 0")])
    state = CharField(max_length=16, default="held",
                      constraints=[Check(_in("state", HOLD_STATES))])
    reference = CharField(max_length=200)
    expires_at = DateTimeField()
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    release_reason = CharField(max_length=200, default="")  # why it was released, if it was

    class Meta:
        indexes = (
            # One hold per (organisation, reference): a repeated reserve finds the first.
            (("organization", "reference"), True),
            # The expiry sweeper scans held holds by expiry, all organisations or one.
            (("state", "expires_at"), False),
            (("organization", "state", "expires_at"), False),
            # What an organisation or a user spent since a time (the spend limits).
            (("organization", "created_at"), False),
            (("user", "created_at"), False),
        )


class CreditGrant(BaseModel):
    """A part of an organisation's balance: paid or promotional credit, spendable from
    `effective_at` until `expires_at` (NULL: never). `remaining` is what is left of it, including
    `held`, the part open holds reserved from it; so the organisation's balance is the sum of its
    grants' `remaining`, and its `held` the sum of their `held`. An expired grant keeps only
    what holds reserved from it before it expired (`remaining = held`), until they end."""

    id = BigAutoField()
    organization = ForeignKeyField(Organization, on_delete="RESTRICT")
    kind = CharField(max_length=16, constraints=[Check(_in("kind", GRANT_KINDS))])
    amount = BigIntegerField(constraints=[Check("amount > 0")])
    remaining = BigIntegerField(constraints=[Check("remaining >= 0")])
    held = BigIntegerField(default=0, constraints=[Check("held >= 0")])
    priority = IntegerField(default=0)  # lower is spent first
    effective_at = DateTimeField()
    expires_at = DateTimeField(null=True)
    expired_at = DateTimeField(null=True)  # when the sweeper expired it
    reason = TextField(default="")
    reference = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        constraints = [Check("held <= remaining", name="credit_grant_held_within_remaining"),
                       Check("remaining <= amount", name="credit_grant_remaining_within_amount")]
        indexes = (
            (("organization", "expired_at"), False),
            (("expired_at", "expires_at"), False),
        )


class CreditHoldDraw(BaseModel):
    """What a hold reserved from each grant: a capture spends it from those grants, a release
    or an expired hold gives it back to them."""

    id = BigAutoField()
    hold = ForeignKeyField(CreditHold, on_delete="RESTRICT")
    grant = ForeignKeyField(CreditGrant, on_delete="RESTRICT")
    amount = BigIntegerField(constraints=[Check("amount > 0")])

    class Meta:
        indexes = ((("hold", "grant"), True),)


class CreditLog(BaseModel):
    id = BigAutoField()
    organization = ForeignKeyField(Organization, on_delete="RESTRICT")
    organization_id: int  # the key's value (peewee's accessor, typed)
    user = ForeignKeyField(User, null=True, on_delete="RESTRICT")
    user_id: int | None  # the key's value (peewee's accessor, typed)
    # The hold a `render` row captured; unique, so a hold is charged at most once.
    hold = ForeignKeyField(CreditHold, null=True, unique=True, on_delete="RESTRICT")
    # The grant a positive adjustment made, or the grant an `expire` row expired.
    grant = ForeignKeyField(CreditGrant, null=True, on_delete="RESTRICT")
    grant_id: int | None  # the key's value (peewee's accessor, typed)
    delta = BigIntegerField(constraints=[Check("delta <> 0")])
    balance_after = BigIntegerField(constraints=[Check("balance_after >= 0")])
    kind = CharField(max_length=16, constraints=[Check(_in("kind", CREDIT_LOG_KINDS))])
    reason = TextField()
    reference = CharField(max_length=200, default="")
    actor = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("created_at", "id"), False),
            (("organization", "created_at", "id"), False),
        )


class AuditLog(BaseModel):
    id = BigAutoField()
    created_at = DateTimeField(default=utcnow)
    actor = CharField(max_length=200)
    role = CharField(max_length=16, default="")
    action = CharField(max_length=200)
    # No foreign key: a denied attempt may name an organisation that does not exist.
    organization_id = BigIntegerField(null=True)
    target = CharField(max_length=200, default="")
    details = TextField(default="{}")
    outcome = CharField(max_length=64)
    peer = CharField(max_length=200, default="")
    request_id = CharField(max_length=200, default="")
    # The adjustment this row audits (invariant 3: each `adjust` log row has one).
    credit_log = ForeignKeyField(CreditLog, null=True, unique=True, on_delete="RESTRICT")
    credit_log_id: int | None  # the key's value (peewee's accessor, typed)
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64, unique=True)
    # The signed-in user who acted (NULL: a token's name, a service, or nobody known).
    actor_user_id = BigIntegerField(null=True)

    class Meta:
        indexes = (
            (("created_at", "id"), False),
            (("organization_id", "created_at", "id"), False),
            (("actor", "created_at", "id"), False),
            (("action", "created_at", "id"), False),
        )


class AuditChainHead(BaseModel):
    """One row holding the newest audit hash. Writers lock it (SELECT … FOR UPDATE on
    PostgreSQL, the IMMEDIATE write lock on SQLite) so concurrent replicas extend one chain
    instead of forking it."""

    id = IntegerField(primary_key=True, constraints=[Check("id = 1")])
    last_hash = CharField(max_length=64)
    seal = CharField(max_length=64, default="")  # HMAC of last_hash: '' until keyed


class IdempotencyRecord(BaseModel):
    """First result of a mutating call per (method, key); survives restarts."""

    id = BigAutoField()
    method = CharField(max_length=200)
    key = CharField(max_length=200)
    request_hash = CharField(max_length=64)
    response = BlobField()  # the serialized response message
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("method", "key"), True),)


class AuthSession(BaseModel):
    """One sign-in: it lives while its newest refresh token is unspent and unexpired, and ends
    at logout, at the reuse of a spent refresh token, at a password change or deactivation."""

    id = CharField(max_length=32, primary_key=True)  # the access tokens' `sid` claim
    user = ForeignKeyField(User, on_delete="RESTRICT")
    created_at = DateTimeField(default=utcnow)
    ended_at = DateTimeField(null=True)
    end_reason = CharField(max_length=64, default="")

    class Meta:
        indexes = ((("user", "ended_at"), False), (("ended_at",), False))


class RefreshToken(BaseModel):
    """A session's refresh tokens, newest unspent; stored as SHA-256 (the token itself is 256
    random bits, so a hash cannot be reversed and a fast hash is enough)."""

    id = BigAutoField()
    session = ForeignKeyField(AuthSession, on_delete="RESTRICT")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    spent_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("expires_at",), False),)


class LoginFailure(BaseModel):
    """Failed sign-ins per account (`account:<email>`) and per client (`ip:<address or /64>`),
    counted over a window for the lockout; in the database so every replica counts together."""

    id = BigAutoField()
    key = CharField(max_length=400)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("key", "created_at"), False), (("created_at",), False))


class CreditDaily(BaseModel):
    """Credits spent (render captures) and added (seed, positive adjustments) per organisation
    and day (UTC), kept by a trigger on credit_log (migrations/0005_credit_daily.py), so the
    console's usage chart reads a row per day and organisation. `verify` recounts it."""

    organization_id = BigIntegerField()
    day = DateField()
    spent = BigIntegerField(default=0, constraints=[Check("spent >= 0")])
    added = BigIntegerField(default=0, constraints=[Check("added >= 0")])

    class Meta:
        primary_key = CompositeKey("organization_id", "day")
        indexes = ((("day",), False),)


WEBHOOK_EVENT_TYPES = ("render.succeeded", "render.failed", "credit.adjusted",
                       "credit.low_balance", "credit.spend_limit_reached",
                       "organization.suspended", "lead.created")
DELIVERY_STATES = ("pending", "delivered", "failed", "canceled")


class WebhookEndpoint(BaseModel):
    """A receiver of events. Its signing secret is not stored: it is derived from
    `secret_salt` with a key kept outside the database (credit_service.webhooks.signing)."""

    id = BigAutoField()
    organization_id = BigIntegerField(null=True)  # NULL: every organisation's events
    url = CharField(max_length=2000)
    events = CharField(max_length=500)  # comma-separated event types
    secret_salt = CharField(max_length=64)
    created_by = CharField(max_length=200, default="")
    created_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("deleted_at", "organization_id"), False),)


class WebhookEvent(BaseModel):
    """The outbox: one row per event, written in the transaction of the change that caused it
    (or, for a render job, relayed from the render service's own outbox)."""

    id = BigAutoField()
    event_id = CharField(max_length=100, unique=True)  # webhook-id: the same on every attempt
    type = CharField(max_length=64, constraints=[Check(_in("type", WEBHOOK_EVENT_TYPES))])
    organization_id = BigIntegerField()
    body = TextField()  # the exact JSON sent: {"type", "timestamp", "data"}
    created_at = DateTimeField(default=utcnow)


class WebhookDelivery(BaseModel):
    """One event on its way to one endpoint. A sender claims it with a lease (`lease_token`,
    `lease_until`), so no two replicas send it at the same time."""

    id = BigAutoField()
    event = ForeignKeyField(WebhookEvent, on_delete="RESTRICT")
    endpoint = ForeignKeyField(WebhookEndpoint, on_delete="RESTRICT")
    endpoint_id: int  # the key's value (peewee's accessor, typed)
    state = CharField(max_length=16, default="pending",
                      constraints=[Check(_in("state", DELIVERY_STATES))])
    attempts = IntegerField(default=0, constraints=[Check("attempts >= 0")])
    next_attempt_at = DateTimeField()
    lease_token = CharField(max_length=32, null=True)
    lease_until = DateTimeField(null=True)
    delivered_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("event", "endpoint"), True),
            (("state", "next_attempt_at"), False),
            (("endpoint", "created_at", "id"), False),
        )


class WebhookAttempt(BaseModel):
    id = BigAutoField()
    delivery = ForeignKeyField(WebhookDelivery, on_delete="RESTRICT")
    delivery_id: int  # the key's value (peewee's accessor, typed)
    attempted_at = DateTimeField()
    status_code = IntegerField(default=0)  # 0: no HTTP answer
    latency_ms = BigIntegerField(default=0)
    response_excerpt = CharField(max_length=500, default="")
    error = CharField(max_length=500, default="")

    class Meta:
        indexes = ((("delivery", "id"), False),)


class SpendLimitNotice(BaseModel):
    """credit.spend_limit_reached is sent once per limit and period: the first refusal inserts
    this row, later refusals in the same period find it."""

    id = BigAutoField()
    organization_id = BigIntegerField()
    scope = CharField(max_length=64)  # "organization" or "user:<id>"
    period = CharField(max_length=16)  # "2026-11" or "2026-11-26"
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("organization_id", "scope", "period"), True),)


ALL_MODELS = (Organization, User, CreditBalance, CreditHold, CreditGrant, CreditHoldDraw,
              CreditLog, AuditLog,
              AuditChainHead, IdempotencyRecord, AuthSession, RefreshToken, LoginFailure,
              CreditDaily, WebhookEndpoint, WebhookEvent, WebhookDelivery, WebhookAttempt,
              SpendLimitNotice)
