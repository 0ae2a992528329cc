"""Share links (`docs/shares-and-leads.md`): a link to one finished render's result page that a
shopper sends to someone ("what do you think?").

The link's token is 32 random characters, kept as its SHA-256 like a publishable key: whoever
holds the link sees that one render's picture, the carpet's name and size and the shop's name,
and nothing else. A link works until it expires (30 days by default), is revoked from the
console, or the render's picture is no longer kept (RENDER_OUTPUT_RETENTION); after that it is
gone (SHARE_GONE), which the page answers with 410. Making a link counts a share in the funnel
in the same transaction; a revocation is audited in its own.
"""
from __future__ import annotations

import datetime
import hashlib
import string

from carpet_common import sources
from carpet_common.calls import Who
from carpet_common.errors import FailedPrecondition, NotFound
from render_service import audit_outbox, funnel
from render_service.models import RenderJob, RenderShare, database

ALPHABET = string.ascii_letters + string.digits
TOKEN_CHARACTERS = 32
DEFAULT_LIFETIME = datetime.timedelta(days=30)
MAX_LINKS_PER_RENDER = 20  # a shopper sharing one render with everyone they know, and a bit
REVOKE = audit_outbox.REVOKE_SHARE


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_share(job: RenderJob, *, shop_name: str, session_id: str,
                 now: datetime.datetime) -> tuple[RenderShare, str]:
    """A new link to `job`'s result page and its token (shown this once)."""
    if job.status != "success" or job.output_expired:
        raise FailedPrecondition("only a finished render whose picture is kept can be shared",
                                 reason="RENDER_NOT_READY")
    token = "".join(sources.choice(ALPHABET) for _ in range(TOKEN_CHARACTERS))
    with database.atomic():
        if RenderShare.select().where(RenderShare.job_id == job.id).count() \
                >= MAX_LINKS_PER_RENDER:
            raise FailedPrecondition(f"a render has at most {MAX_LINKS_PER_RENDER} share links")
        row = RenderShare.create(organization_id=job.organization_id, job_id=job.id,
                                 token_hash=token_hash(token), shop_name=shop_name[:200],
                                 created_at=now, expires_at=now + DEFAULT_LIFETIME)
        funnel.count_step(job.organization_id, job.carpet_id, "shared", session_id, now)
    return row, token


def shared_render(token: str, now: datetime.datetime) -> tuple[RenderShare, RenderJob]:
    """The link and its render; NOT_FOUND for a token never made, SHARE_GONE for a link that
    no longer works."""
    row = None
    if len(token) == TOKEN_CHARACTERS and token.isalnum() and token.isascii():
        row = RenderShare.get_or_none(RenderShare.token_hash == token_hash(token))
    if row is None:
        raise NotFound("no such share link")
    job = RenderJob.get_or_none(RenderJob.id == row.job_id)
    if row.revoked_at is not None:
        raise FailedPrecondition("this link was withdrawn", reason="SHARE_GONE")
    if row.expires_at <= now:
        raise FailedPrecondition("this link has expired", reason="SHARE_GONE")
    if job is None or job.output_expired or job.status != "success":
        raise FailedPrecondition("this picture is no longer kept", reason="SHARE_GONE")
    return row, job


def list_shares(organization_id: int, job_id: int) -> list[RenderShare]:
    """An organisation's links (0: every organisation's), of one render if `job_id`, newest
    first."""
    rows = RenderShare.select()
    if organization_id:
        rows = rows.where(RenderShare.organization_id == organization_id)
    if job_id:
        rows = rows.where(RenderShare.job_id == job_id)
    return list(rows.order_by(RenderShare.id.desc()).limit(500))


def revoke_share(share_id: int, *, organization_scope: int | None, now: datetime.datetime,
                 who: Who) -> RenderShare:
    """The link refused from now on (revoking twice keeps the first time)."""
    with database.atomic():
        row = RenderShare.get_or_none(RenderShare.id == share_id)
        if row is None or organization_scope not in (None, row.organization_id):
            raise NotFound(f"share link {share_id} not found")
        if row.revoked_at is None:
            row.revoked_at = now
            row.save()
        audit_outbox.record(REVOKE, who, outcome="ok", organization_id=row.organization_id,
                            target=f"share:{row.id}", details={"render_id": row.job_id},
                            now=now)
    return row


def revoke_for_jobs(job_ids: list[int], now: datetime.datetime) -> None:
    """Inside the caller's transaction (an erasure): every link to these renders stops."""
    (RenderShare.update(revoked_at=now)
     .where(RenderShare.job_id.in_(job_ids) & RenderShare.revoked_at.is_null()).execute())
