"""Quote requests (`docs/shares-and-leads.md`): a shopper who has seen a carpet in their room
asks the shop for a price or a home visit.

A lead is personal data: a name, a phone (kept in E.164), an optional e-mail and message, and
the consent the shopper accepted to be contacted (its words, version and time: KVKK asks for an
explicit consent, separate from anything else). It lives only here, in the render database:
the `lead.created` webhook names the lead and its render but carries none of it, so
retention (LEAD_RETENTION) and an erasure on request reach every copy. A lead is written with
its webhook outbox row and its funnel count in one transaction; a phone has at most one open
(new or contacted) lead per render, kept by a partial unique index so concurrent submissions
cannot both pass.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from peewee import IntegrityError, ModelSelect

from carpet_common.calls import Who
from carpet_common.errors import AlreadyExists, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from render_service import audit_outbox, funnel, jobs, shares
from render_service.models import (
    LEAD_STATUSES,
    Lead,
    LeadEvent,
    RenderJob,
    database,
)
from render_service.storage import ImageStore

UPDATE = audit_outbox.UPDATE_LEAD
EXPORT = audit_outbox.EXPORT_PERSONAL_DATA
ERASE = audit_outbox.ERASE_PERSONAL_DATA
MAX_NAME = 200
MAX_MESSAGE = 2000
MAX_NOTE = 2000
MAX_CONSENT_TEXT = 5000
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}")
PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")
TURKISH_NUMBER = re.compile(r"[2-5]\d{9}")  # landlines 2xx-4xx, mobiles 5xx: 10 digits
CONSENT_CLOCK_SKEW = datetime.timedelta(days=1)  # a phone whose clock is off
CONSENT_MAX_AGE = datetime.timedelta(days=1)


def e164(phone: str) -> str:
    """A phone number as E.164 (+905321234567). Turkish numbers may be written as people write
    them (0532 123 45 67, 532 123 4567, +90 (532) 123-45-67, 0090 532…); any other country's
    needs its + and country code. InvalidArgument for anything else."""
    digits = PHONE_PUNCTUATION.sub("", phone.strip())
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+90") or (digits.startswith("90") and len(digits) == 12):
        national = digits.removeprefix("+").removeprefix("90")
    elif digits.startswith("+"):
        if re.fullmatch(r"\+[1-9]\d{7,14}", digits):
            return digits
        national = ""
    else:
        national = digits.removeprefix("0") if len(digits) == 11 else digits
    if not TURKISH_NUMBER.fullmatch(national):
        raise InvalidArgument("phone must be a number like 0532 123 45 67 or +90 532 123 45 67",
                              reason="PHONE_INVALID")
    return "+90" + national


def normalized_email(email: str) -> str:
    email = email.strip()
    if not email:
        return ""
    if len(email) > 320 or not EMAIL.fullmatch(email):
        raise InvalidArgument("email must be an address like name@example.com",
                              reason="EMAIL_INVALID")
    # Lower case whole, as people's addresses are matched everywhere else here: an erasure
    # asked for with other capitals must still find it.
    return email.lower()


@dataclass(frozen=True)
class Contact:
    """What a shopper typed and accepted."""

    name: str
    phone: str
    email: str
    message: str
    consent_text: str
    consent_version: str
    consent_accepted_at: datetime.datetime | None


def checked(contact: Contact, now: datetime.datetime) -> Contact:
    """The contact as stored, or InvalidArgument naming the first wrong field."""
    name = contact.name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise InvalidArgument(f"name is required (at most {MAX_NAME} characters)",
                              reason="NAME_INVALID")
    message = contact.message.strip()
    if len(message) > MAX_MESSAGE or "\x00" in message:
        raise InvalidArgument(f"message is at most {MAX_MESSAGE} characters")
    text, version = contact.consent_text.strip(), contact.consent_version.strip()
    # Without a time (the widget and the share page send none): accepted as it arrives.
    accepted = contact.consent_accepted_at or now
    if not text or not version:
        raise InvalidArgument("consent to be contacted is required: the text accepted and its "
                              "version", reason="CONSENT_REQUIRED")
    if len(text) > MAX_CONSENT_TEXT or len(version) > 50:
        raise InvalidArgument(f"consent text is at most {MAX_CONSENT_TEXT} characters and its "
                              f"version at most 50")
    if not now - CONSENT_MAX_AGE <= accepted <= now + CONSENT_CLOCK_SKEW:
        raise InvalidArgument("consent acceptedAt must be the moment the box was ticked",
                              reason="CONSENT_REQUIRED")
    return Contact(name, e164(contact.phone), normalized_email(contact.email), message, text,
                   version, accepted)


def submit_lead(job: RenderJob, contact: Contact, *, publishable_key_id: int | None,
                session_id: str, now: datetime.datetime) -> Lead:
    """A new lead about `job` from a contact as `checked` returned it (the servicer checks
    first, so a malformed request never counts against the spam limits), with its webhook and
    its funnel count; ALREADY_EXISTS while the phone has an open lead about this render."""
    try:
        with database.atomic():
            lead = Lead.create(
                organization_id=job.organization_id, job_id=job.id, carpet_id=job.carpet_id,
                publishable_key_id=publishable_key_id, name=contact.name, phone=contact.phone,
                email=contact.email, message=contact.message, consent_text=contact.consent_text,
                consent_version=contact.consent_version,
                consent_accepted_at=contact.consent_accepted_at, status="new", note="",
                created_at=now, updated_at=now)
            LeadEvent.create(lead_id=lead.id, organization_id=lead.organization_id,
                             occurred_at=now)
            funnel.count_step(job.organization_id, job.carpet_id, "lead", session_id, now)
    except IntegrityError:
        raise AlreadyExists("you have already asked about this picture; the shop will contact "
                            "you", reason="LEAD_ALREADY_OPEN") from None
    return lead


def list_leads(organization_id: int, status: str, page_size: int, page_token: str) -> Page:
    """Newest first, a page at a time (keyset)."""
    rows = Lead.select()
    if organization_id:
        rows = rows.where(Lead.organization_id == organization_id)
    if status:
        rows = rows.where(Lead.status == status)
    return paginate(rows, Lead.created_at, Lead.id, page_size, page_token)


def update_lead(lead_id: int, *, status: str | None, note: str | None,
                organization_scope: int | None, now: datetime.datetime,
                who: Who) -> Lead:
    """The lead with its new status and/or note; the audit entry holds neither the note nor
    anything of the shopper."""
    if status is not None and status not in LEAD_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(LEAD_STATUSES)}")
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidArgument(f"note is at most {MAX_NOTE} characters")
    try:
        with database.atomic():
            lead = Lead.get_or_none(Lead.id == lead_id)
            if lead is None or organization_scope not in (None, lead.organization_id):
                raise NotFound(f"lead {lead_id} not found")
            if status is not None:
                lead.status = status
            if note is not None:
                lead.note = note
            lead.updated_at = now
            lead.save()
            audit_outbox.record(UPDATE, who, outcome="ok", organization_id=lead.organization_id,
                                target=f"lead:{lead.id}",
                                details={"status": lead.status, "note_changed": note is not None},
                                now=now)
    except IntegrityError:
        raise AlreadyExists("this phone already has an open lead about this render",
                            reason="LEAD_ALREADY_OPEN") from None
    return lead


def _person(phone: str, email: str, organization_scope: int | None) -> ModelSelect[Lead]:
    """The leads of one phone or e-mail (exactly one of them), as a query."""
    if bool(phone.strip()) == bool(email.strip()):
        raise InvalidArgument("name one phone or one email")
    rows = Lead.select()
    if phone.strip():
        rows = rows.where(Lead.phone == e164(phone))
    else:
        rows = rows.where(Lead.email == normalized_email(email))
    if organization_scope is not None:
        rows = rows.where(Lead.organization_id == organization_scope)
    return rows


def export_person(phone: str, email: str, *, organization_scope: int | None,
                  now: datetime.datetime, who: Who) -> list[Lead]:
    """Every lead of the person; the access is audited with how many were found."""
    with database.atomic():
        found = list(_person(phone, email, organization_scope).order_by(Lead.id))
        audit_outbox.record(EXPORT, who, outcome="ok", organization_id=organization_scope,
                            target="person", details={"leads": len(found)}, now=now)
    return found


def erase_person(phone: str, email: str, *, store: ImageStore, organization_scope: int | None,
                 now: datetime.datetime, who: Who) -> tuple[int, int]:
    """Deletes the person's leads and, of the renders they were about, the room pictures,
    the rendered pictures and the share links, in one transaction with its audit entry (which
    holds the counts only); (leads erased, renders erased)."""
    with database.atomic():
        found = list(_person(phone, email, organization_scope))
        renders = len({lead.job_id for lead in found})
        outputs = _delete(found, now)
        audit_outbox.record(ERASE, who, outcome="ok", organization_id=organization_scope,
                            target="person", details={"leads": len(found), "renders": renders},
                            now=now)
    for path in outputs:
        store.remove(path)
    return len(found), renders


def _delete(found: list[Lead], now: datetime.datetime) -> list[str]:
    """Inside the caller's transaction: the leads, their webhook rows, and their renders'
    pictures and share links; the picture files to remove once it commits (a crash in between
    leaves files no row points to, never a row without its file)."""
    job_ids = sorted({lead.job_id for lead in found})
    outputs = jobs.forget_pictures(job_ids, now)
    shares.revoke_for_jobs(job_ids, now)
    lead_ids = [lead.id for lead in found]
    LeadEvent.delete().where(LeadEvent.lead_id.in_(lead_ids)).execute()
    Lead.delete().where(Lead.id.in_(lead_ids)).execute()
    return outputs


def expire(before: datetime.datetime, store: ImageStore, now: datetime.datetime,
           limit: int = 500) -> int:
    """Leads created before `before` (LEAD_RETENTION) are deleted with the pictures of their
    renders; how many leads. Deleting twice deletes once, so replicas need no coordination."""
    found = list(Lead.select(Lead.id, Lead.job_id).where(Lead.created_at < before)
                 .order_by(Lead.id).limit(limit))
    if not found:
        return 0
    with database.atomic():
        outputs = _delete(found, now)
    for path in outputs:
        store.remove(path)
    return len(found)
