"""Tables owned by the render service. Organisations, users and holds live in the credit
service, so their ids are plain columns here (no cross-service foreign keys).

Every rule is enforced by the database and also written into migrations/0001_init_schema.py.
"""
from __future__ import annotations

from peewee import (
    SQL,
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

RENDER_STATUSES = ("queued", "processing", "success", "failed")



class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Carpet(BaseModel):
    """A carpet design in one organisation's catalogue, or in the shared one (organization_id
    0) every organisation sees (migrations/0013_carpet_catalogues.py)."""

    id = BigAutoField()
    organization_id = BigIntegerField(default=0)
    sku = CharField(max_length=64, constraints=[Check("length(sku) > 0")])
    name = CharField(max_length=200, constraints=[Check("length(name) > 0")])
    material = CharField(max_length=100, default="")
    # Kept in the database so every replica sees it without shared disk.
    image = BlobField()
    image_content_type = CharField(max_length=32)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(null=True)
    archived_at = DateTimeField(null=True)  # archived: never rendered again, kept for history
    # The import that created it (its one audit entry's target is `import:<id>`); NULL: made
    # by CreateCarpet, audited on its own.
    import_id = CharField(max_length=32, null=True)

    class Meta:
        indexes = (
            (("created_at", "id"), False),
            (("organization_id", "sku"), True),
            (("organization_id", "created_at", "id"), False),
        )


class CarpetSize(BaseModel):
    """One size a design is sold in. Its measurements never change (renders show them): a new
    size is a new row, and a size no longer sold is archived."""

    id = BigAutoField()
    carpet = ForeignKeyField(Carpet, on_delete="RESTRICT", index=False, backref="sizes")
    carpet_id: int  # the key's value (peewee's accessor, typed)
    sku = CharField(max_length=64, default="")  # unique within its carpet when not empty
    width_cm = IntegerField(constraints=[Check("width_cm BETWEEN 1 AND 10000")])
    length_cm = IntegerField(constraints=[Check("length_cm BETWEEN 1 AND 10000")])
    position = IntegerField()  # the order the sizes were given in
    archived_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("carpet", "position"), False),)


# A size's SKU is unique among its carpet's sizes in use (archived ones keep theirs).
CarpetSize.add_index(CarpetSize.index(CarpetSize.carpet, CarpetSize.sku, unique=True,
                                      name="carpet_size_carpet_id_sku")
                     .where((CarpetSize.sku != "") & CarpetSize.archived_at.is_null()))


class RenderJob(BaseModel):
    id = BigAutoField()
    organization_id = BigIntegerField()
    user_id = BigIntegerField(null=True)
    carpet = ForeignKeyField(Carpet, on_delete="RESTRICT", index=False)
    carpet_id: int  # the key's value (peewee's accessor, typed)
    # NULL: a job from before sizes, which showed the one size whose id is its carpet's id
    # (migrations/0013_carpet_catalogues.py); read it through size_id_of().
    carpet_size = ForeignKeyField(CarpetSize, null=True, index=False)
    carpet_size_id: int | None  # the key's value (peewee's accessor, typed)
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
    # Worker lease: a processing job whose lease ran out is claimed again.
    lease_owner = CharField(max_length=100, null=True)
    lease_expires_at = DateTimeField(null=True)
    attempts = IntegerField(default=0)
    # The job ended but its hold may still be held (the credit service was unreachable):
    # the worker pool's settler releases it and clears the flag.
    release_pending = BooleanField(default=False)
    output_path = CharField(max_length=500, null=True)
    output_content_type = CharField(max_length=32, null=True)
    # What is stored now, in bytes (0 once removed); render_storage sums them per organisation.
    input_bytes = BigIntegerField(default=0)
    output_bytes = BigIntegerField(default=0)
    has_room_image = BooleanField(default=False)  # a room picture was submitted
    output_expired = BooleanField(default=False)  # RENDER_OUTPUT_RETENTION removed the picture
    placement = TextField(default="")  # JSON of the four corners asked for ('' : default)
    renderer = CharField(max_length=32, default="")  # which renderer made the picture
    # Workers take the lowest first (0 backends and staff, 10 the widget); a widget render has
    # the unguessable id it is addressed by, and the key it came with
    # (migrations/0015_publishable_keys.py).
    # No Python default: an insert that leaves it out gets the column's DEFAULT 0 (so rows
    # written through the model by an older schema's code still insert).
    priority = IntegerField(constraints=[SQL("DEFAULT 0")])
    public_id = CharField(max_length=32, null=True, unique=True)
    # A render on a measured floor: its scene as JSON (render_service.floor; '' otherwise);
    # no Python default, like priority.
    scene = TextField(constraints=[SQL("DEFAULT ''")])
    # The submission's W3C traceparent, for the render work's span link (carpet_common.tracing;
    # '' untraced); no Python default, like priority.
    trace_parent = CharField(max_length=64, constraints=[SQL("DEFAULT ''")])
    publishable_key_id = BigIntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        constraints = [
            # A success is charged (it names its credit-log row), unless the local renderer
            # stood in for a down image API and the admin chose not to charge for that
            # (RENDER_FALLBACK_CHARGE off; migrations/0007_render_fallback.py).
            Check("status <> 'success' OR credit_log_id IS NOT NULL"
                  " OR (renderer = 'local-fallback' AND credits_charged = 0)",
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
            (("publishable_key_id", "status"), False),
            (("status", "priority", "id"), False),
        )


def size_id_of(job: RenderJob) -> int:
    """The id of the carpet size a job shows."""
    return job.carpet_size_id or job.carpet_id


class RenderCount(BaseModel):
    """How many jobs each organisation has in each status, kept by database triggers on
    render_job (migrations/0002_render_counts.py) in the very statement that changes a job, so
    overview totals cost the same at a thousand jobs and at a million, and no code path can
    forget them. `python -m render_service verify` recounts them."""

    organization_id = BigIntegerField()
    status = CharField(max_length=16, constraints=[
        Check("status IN ('queued', 'processing', 'success', 'failed')")])
    jobs = BigIntegerField(constraints=[Check("jobs >= 0")])

    class Meta:
        primary_key = CompositeKey("organization_id", "status")


class RenderInput(BaseModel):
    """The optional room photo, apart from the job row so that row stays small."""

    job = ForeignKeyField(RenderJob, primary_key=True, on_delete="CASCADE")
    room_image = BlobField()


class RenderStorage(BaseModel):
    """Bytes each organisation keeps on the render side (room pictures and outputs), kept by
    triggers on render_job (migrations/0003_render_storage.py)."""

    organization_id = BigIntegerField(primary_key=True)
    bytes = BigIntegerField(constraints=[Check("bytes >= 0")])


class RenderDaily(BaseModel):
    """Jobs per organisation, day of creation (UTC) and status, kept by triggers like
    RenderCount (migrations/0004_render_daily.py): the console's daily chart reads a few rows per
    day, whatever the history's size. `python -m render_service verify` recounts them."""

    organization_id = BigIntegerField()
    day = DateField()
    status = CharField(max_length=16, constraints=[
        Check("status IN ('queued', 'processing', 'success', 'failed')")])
    jobs = BigIntegerField(constraints=[Check("jobs >= 0")])

    class Meta:
        primary_key = CompositeKey("organization_id", "day", "status")
        indexes = ((("day",), False),)


class RenderCarpetDaily(BaseModel):
    """Render jobs per organisation, day of creation (UTC), carpet and size, kept by triggers on
    render_job (migrations/0014_render_carpet_daily.py): which carpets shops render, a few rows
    a day whatever the history's size. `python -m render_service verify` recounts them."""

    organization_id = BigIntegerField()
    day = DateField()
    carpet_id = BigIntegerField()
    carpet_size_id = BigIntegerField()
    jobs = BigIntegerField(constraints=[Check("jobs >= 0")])

    class Meta:
        primary_key = CompositeKey("organization_id", "day", "carpet_id", "carpet_size_id")
        indexes = ((("day",), False),)


class RenderEvent(BaseModel):
    """The outbox of finished jobs for webhooks: written by a trigger on render_job in the
    statement that ends a job (migrations/0008_render_events.py), relayed to the credit service
    and deleted by render_service.events."""

    job_id = BigIntegerField(primary_key=True)
    organization_id = BigIntegerField()
    type = CharField(max_length=32, constraints=[
        Check("type IN ('render.succeeded', 'render.failed')")])
    occurred_at = DateTimeField()


class CarpetImport(BaseModel):
    """An applied catalogue import's report, kept (render_service.catalogue_import); its id is
    the target of its one audit entry, `import:<id>`."""

    id = CharField(max_length=32, primary_key=True)
    organization_id = BigIntegerField()
    file_name = CharField(max_length=200)
    actor = CharField(max_length=320)
    created = IntegerField()
    updated = IntegerField()
    unchanged = IntegerField()
    rejected = IntegerField()
    rows = TextField()  # JSON: [[line, sku, outcome, [[column, code, message], …]], …]
    created_at = DateTimeField()

    class Meta:
        indexes = ((("organization_id", "created_at"), False),)


class RenderAudit(BaseModel):
    """The outbox of audit entries of changes made here, written in the change's transaction
    (migrations/0010_render_audit.py), relayed to the credit service's audit chain and deleted
    by render_service.audit_outbox."""

    id = BigAutoField()
    key = CharField(max_length=32)  # random: ids of deleted rows may come again (SQLite)
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



class PublishableKey(BaseModel):
    """A key a shop's web pages show (render_service.publishable_keys): stored as its SHA-256,
    with its last four characters; a rotated key's predecessor works until
    previous_expires_at."""

    id = BigAutoField()
    organization_id = BigIntegerField()
    name = CharField(max_length=100, default="")
    key_hash = CharField(max_length=64, unique=True)
    last4 = CharField(max_length=4)
    previous_hash = CharField(max_length=64, null=True, index=True)
    previous_expires_at = DateTimeField(null=True)
    allowed_origins = TextField()  # JSON list of exact origins
    development = BooleanField(default=False)  # also http://localhost:* and 127.0.0.1:*
    renders_per_day = IntegerField(constraints=[Check("renders_per_day BETWEEN 1 AND 1000000")])
    max_concurrent = IntegerField(constraints=[Check("max_concurrent BETWEEN 1 AND 1000")])
    rate_per_visitor = CharField(max_length=32)
    created_at = DateTimeField()
    updated_at = DateTimeField()
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("organization_id", "id"), False),)


class PublishableKeyDay(BaseModel):
    """Renders submitted through a key on one UTC day, counted under its daily cap."""

    key = ForeignKeyField(PublishableKey, on_delete="CASCADE", index=False)
    key_id: int  # the key's value (peewee's accessor, typed)
    day = DateField()
    renders = IntegerField(constraints=[Check("renders >= 0")])

    class Meta:
        primary_key = CompositeKey("key", "day")


class RenderShare(BaseModel):
    """A link to one render's result page (render_service.shares): its token kept as SHA-256."""

    id = BigAutoField()
    organization_id = BigIntegerField()
    job_id = BigIntegerField(index=True)
    token_hash = CharField(max_length=64, unique=True)
    shop_name = CharField(max_length=200, default="")  # as it was when the link was made
    created_at = DateTimeField()
    expires_at = DateTimeField()
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("organization_id", "id"), False),)


class ShopLogo(BaseModel):
    """A shop's logo on its share pages (render_service.shop_logos), kept reduced."""

    organization_id = BigIntegerField(primary_key=True)
    image = BlobField()
    content_type = CharField(max_length=32)
    updated_at = DateTimeField()


LEAD_STATUSES = ("new", "contacted", "won", "lost")
OPEN_LEAD_STATUSES = ("new", "contacted")


class Lead(BaseModel):
    """A shopper's quote request about a render (render_service.leads): personal data, kept
    for LEAD_RETENTION and erased on request."""

    id = BigAutoField()
    organization_id = BigIntegerField()
    job_id = BigIntegerField(index=True)
    carpet_id = BigIntegerField()
    publishable_key_id = BigIntegerField(null=True)
    name = CharField(max_length=200)
    phone = CharField(max_length=16, index=True)  # E.164
    email = CharField(max_length=320, default="", index=True)
    message = TextField(default="")
    consent_text = TextField()
    consent_version = CharField(max_length=50)
    consent_accepted_at = DateTimeField()
    status = CharField(max_length=16, default="new", constraints=[
        Check("status IN ('new', 'contacted', 'won', 'lost')")])
    note = TextField(default="")
    created_at = DateTimeField(index=True)
    updated_at = DateTimeField()

    class Meta:
        indexes = ((("organization_id", "id"), False),)


# One open (new or contacted) request per phone and render, kept by the database.
Lead.add_index(Lead.index(Lead.job_id, Lead.phone, unique=True, name="lead_open_per_phone")
               .where(Lead.status.in_(OPEN_LEAD_STATUSES)))


class LeadEvent(BaseModel):
    """The outbox of `lead.created` webhooks, relayed to the credit service and deleted."""

    lead_id = BigIntegerField(primary_key=True)
    organization_id = BigIntegerField()
    occurred_at = DateTimeField()


FUNNEL_STEPS = ("opened", "photo_added", "rendered", "shared", "lead")


class FunnelDaily(BaseModel):
    """The widget's events counted per organisation, UTC day and carpet (render_service.funnel)."""

    organization_id = BigIntegerField()
    day = DateField(index=True)
    carpet_id = BigIntegerField()
    opened = IntegerField(default=0)
    photo_added = IntegerField(default=0)
    rendered = IntegerField(default=0)
    shared = IntegerField(default=0)
    lead = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("organization_id", "day", "carpet_id")


class FunnelSession(BaseModel):
    """The carpet an anonymous widget session last looked at, for attributing a sale."""

    organization_id = BigIntegerField()
    session_id = CharField(max_length=64)
    carpet_id = BigIntegerField()
    last_seen_at = DateTimeField(index=True)

    class Meta:
        primary_key = CompositeKey("organization_id", "session_id")


class FunnelConversion(BaseModel):
    """A sale the shop's backend reported, attributed to a carpet."""

    id = BigAutoField()
    organization_id = BigIntegerField()
    order_id = CharField(max_length=100, null=True)
    carpet_id = BigIntegerField()
    day = DateField()
    value_cents = BigIntegerField(constraints=[Check("value_cents >= 0")])
    created_at = DateTimeField()

    class Meta:
        indexes = ((("organization_id", "order_id"), True), (("organization_id", "day"), False))


ALL_MODELS = (Carpet, CarpetSize, RenderJob, RenderInput, RenderCount, RenderStorage,
              RenderDaily, RenderCarpetDaily, RenderEvent, CarpetImport, RenderAudit,
              PublishableKey, PublishableKeyDay, RenderShare, Lead, LeadEvent, FunnelDaily,
              FunnelSession, FunnelConversion, ShopLogo)
