"""The RenderService methods from a render to a sale (`docs/shares-and-leads.md`): share links,
quote requests and the funnel, public (relayed by the gateway with a publishable key or a share
token) and for admins. A part of `render_service.servicer.RenderServicer`, which provides the
clock, the credit client, the picture store, the public key checks and the audited change."""
from __future__ import annotations

from carpet_common.convert import optional_time, timestamp
from carpet_common.errors import InvalidArgument
from carpet_common.ratelimit import RateLimiter
from protos.carpet.render.v1 import render_pb2
from render_service import catalogue, funnel, leads, shares, shop_logos
from render_service.callers import own_organization, scope
from render_service.models import LEAD_STATUSES, Lead, RenderShare, ShopLogo

# Quote requests are rare and personal: a visitor sends a few, a key's pages a few hundred a day.
LEADS_PER_VISITOR = "5/hour"
LEADS_PER_KEY = "300/day"


class LeadLimits:
    """Spam limits on quote requests, per visitor address and per key (or share page
    organisation), in RATE_LIMIT_STORAGE (Redis: shared by every replica)."""

    def __init__(self, storage_uri: str):
        self._visitor = RateLimiter(LEADS_PER_VISITOR, storage_uri, namespace="lead-visitor")
        self._source = RateLimiter(LEADS_PER_KEY, storage_uri, namespace="lead-source")

    def check(self, source: str, visitor: str) -> None:
        self._visitor.check(visitor or "unknown", scope=source)
        self._source.check(source)


def share_message(row: RenderShare) -> render_pb2.Share:
    return render_pb2.Share(id=row.id, organization_id=row.organization_id, render_id=row.job_id,
                            created_at=timestamp(row.created_at),
                            expires_at=timestamp(row.expires_at),
                            revoked_at=timestamp(row.revoked_at))


def lead_message(row: Lead) -> render_pb2.Lead:
    return render_pb2.Lead(
        id=row.id, organization_id=row.organization_id, render_id=row.job_id,
        carpet_id=row.carpet_id, name=row.name, phone=row.phone, email=row.email,
        message=row.message, consent=render_pb2.Consent(
            text=row.consent_text, version=row.consent_version,
            accepted_at=timestamp(row.consent_accepted_at)),
        status=row.status, note=row.note,
        created_at=timestamp(row.created_at), updated_at=timestamp(row.updated_at),
        publishable_key_id=row.publishable_key_id or 0)


def logo_message(row: ShopLogo) -> render_pb2.ShopLogo:
    return render_pb2.ShopLogo(organization_id=row.organization_id, content_type=row.content_type,
                               image=bytes(row.image), updated_at=timestamp(row.updated_at))


def _counts(counts: funnel.Counts) -> render_pb2.FunnelCounts:
    return render_pb2.FunnelCounts(
        opened=counts.opened, photo_added=counts.photo_added, rendered=counts.rendered,
        shared=counts.shared, leads=counts.leads, conversions=counts.conversions,
        conversion_value=counts.conversion_cents / 100)


class SalesMethods:
    """Share links, leads and the funnel; mixed into RenderServicer."""

    # --- public, relayed by the gateway ---------------------------------------------------------

    def CreatePublicShare(self, request, context):
        job = self._public_job(request)
        row, token = shares.create_share(
            job, shop_name=self._credit.organization_name(job.organization_id),
            session_id=request.session_id, now=self._clock())
        return render_pb2.ShareLink(id=row.id, token=token, expires_at=timestamp(row.expires_at))

    def GetSharedRender(self, request, context):
        row, job = shares.shared_render(request.token, self._clock())
        carpet = catalogue.rendered_carpet(job)
        return render_pb2.SharedRender(
            carpet_name=carpet.name, carpet_width_cm=carpet.width_cm,
            carpet_length_cm=carpet.length_cm, shop_name=row.shop_name,
            expires_at=timestamp(row.expires_at), created_at=timestamp(job.created_at),
            has_logo=shop_logos.has_logo(job.organization_id))

    def GetSharedRenderOutput(self, request, context):
        _row, job = shares.shared_render(request.token, self._clock())
        yield from self._output(job)

    def GetSharedShopLogo(self, request, context):
        _row, job = shares.shared_render(request.token, self._clock())
        return logo_message(shop_logos.logo(job.organization_id))

    def SubmitPublicLead(self, request, context):
        if request.share_token:
            _row, job = shares.shared_render(request.share_token, self._clock())
            key_id, source = None, f"share-org:{job.organization_id}"
        else:
            job = self._public_job(render_pb2.PublicRenderRequest(caller=request.caller,
                                                                  id=request.render_id))
            key_id, source = job.publishable_key_id, f"key:{job.publishable_key_id}"
        consent, now = request.consent, self._clock()
        contact = leads.checked(leads.Contact(
            name=request.name, phone=request.phone, email=request.email,
            message=request.message, consent_text=consent.text,
            consent_version=consent.version,
            consent_accepted_at=optional_time(consent, "accepted_at")), now)
        funnel.checked_session(request.session_id)
        # Counted once it is a request a person could have meant: a typo is not spam.
        self._lead_limits.check(source, request.caller.visitor)
        leads.submit_lead(job, contact, publishable_key_id=key_id,
                          session_id=request.session_id, now=now)
        return render_pb2.SubmitPublicLeadResponse()

    def RecordPublicEvent(self, request, context):
        row = self._public_key(request.caller)
        catalogue.get_carpet(request.carpet_id, catalogue.Catalogues(row.organization_id))
        return render_pb2.RecordPublicEventResponse(counted=funnel.record_page_step(
            row.organization_id, request.carpet_id, request.type, request.session_id,
            self._clock()))

    # --- for admins ------------------------------------------------------------------------------

    def ListShares(self, request, context):
        return render_pb2.ListSharesResponse(shares=[
            share_message(row) for row in
            shares.list_shares(scope(request.organization_id), request.render_id)])

    def RevokeShare(self, request, context):
        return share_message(self._audited_change(
            shares.REVOKE, f"share:{request.id}", None, {},
            lambda now, who: shares.revoke_share(request.id,
                                                 organization_scope=own_organization(),
                                                 now=now, who=who)))

    def ListLeads(self, request, context):
        if request.status and request.status not in LEAD_STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(LEAD_STATUSES)}")
        page = leads.list_leads(scope(request.organization_id), request.status,
                                request.page_size, request.page_token)
        return render_pb2.ListLeadsResponse(leads=[lead_message(row) for row in page.rows],
                                            next_page_token=page.next_page_token)

    def UpdateLead(self, request, context):
        paths = set(request.update_mask.paths) or {"status", "note"}
        unknown = paths - {"status", "note"}
        if unknown:
            raise InvalidArgument("update_mask may name status and note")
        status = request.status if "status" in paths else None
        return lead_message(self._audited_change(
            leads.UPDATE, f"lead:{request.id}", None, {},
            lambda now, who: leads.update_lead(
                request.id, status=status, note=request.note if "note" in paths else None,
                organization_scope=own_organization(), now=now, who=who)))

    def ExportPersonalData(self, request, context):
        found = self._audited_change(
            leads.EXPORT, "person", own_organization(), {},
            lambda now, who: leads.export_person(request.phone, request.email,
                                                 organization_scope=own_organization(),
                                                 now=now, who=who))
        return render_pb2.PersonalData(leads=[lead_message(row) for row in found],
                                       render_ids=sorted({row.job_id for row in found}))

    def ErasePersonalData(self, request, context):
        erased, renders = self._audited_change(
            leads.ERASE, "person", own_organization(), {},
            lambda now, who: leads.erase_person(request.phone, request.email, store=self._store,
                                                organization_scope=own_organization(),
                                                now=now, who=who))
        return render_pb2.ErasePersonalDataResponse(leads_erased=erased, renders_erased=renders)

    def RecordConversion(self, request, context):
        organization_id = scope(request.organization_id)
        if not organization_id:
            raise InvalidArgument("organization_id is required")
        row, recorded = funnel.record_conversion(
            organization_id, session_id=request.session_id, job_id=request.render_id,
            value=request.value, order_id=request.order_id, now=self._clock())
        return render_pb2.Conversion(id=row.id, carpet_id=row.carpet_id, recorded=recorded)

    def GetFunnel(self, request, context):
        result = funnel.report(scope(request.organization_id), request.days,
                               self._clock().date())
        names = catalogue.carpet_names(list(result.carpets))
        carpets = sorted(result.carpets.items(),
                         key=lambda item: (-item[1].rendered, -item[1].opened, item[0]))
        return render_pb2.Funnel(
            days=[render_pb2.FunnelDay(date=day.isoformat(), counts=_counts(counts))
                  for day, counts in sorted(result.days.items())],
            carpets=[render_pb2.FunnelCarpet(carpet_id=carpet_id,
                                             carpet_name=names.get(carpet_id, ""),
                                             counts=_counts(counts))
                     for carpet_id, counts in carpets],
            total=_counts(result.total))

    def SetShopLogo(self, request, context):
        organization_id = _logo_owner(request.id)
        return logo_message(self._audited_change(
            shop_logos.SET, f"organization:{organization_id}", organization_id, {},
            lambda now, who: shop_logos.set_logo(organization_id, request.image, now=now,
                                                 who=who)))

    def GetShopLogo(self, request, context):
        return logo_message(shop_logos.logo(_logo_owner(request.id)))

    def DeleteShopLogo(self, request, context):
        organization_id = _logo_owner(request.id)
        return logo_message(self._audited_change(
            shop_logos.DELETE, f"organization:{organization_id}", organization_id, {},
            lambda now, who: shop_logos.delete_logo(organization_id, now=now, who=who)))


def _logo_owner(organization_id: int) -> int:
    """The organisation whose logo a call names: STAFF their own (0 too), others as asked."""
    organization_id = scope(organization_id)
    if not organization_id:
        raise InvalidArgument("id (the organisation) is required")
    return organization_id
