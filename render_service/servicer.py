"""gRPC servicer of the render service: parse, call the domain, build the response."""
from __future__ import annotations

import time

from carpet_common import idempotency, outbound
from carpet_common.calls import current_principal, who_calls
from carpet_common.convert import optional_time, timestamp
from carpet_common.days import day_range, each_day
from carpet_common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from carpet_common.lru import LruCache
from carpet_common.settings import Settings
from carpet_common.thumbnails import CACHED as CACHED_THUMBNAILS
from carpet_common.thumbnails import CONTENT_TYPE as THUMBNAIL_TYPE
from carpet_common.thumbnails import make_thumbnail
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from render_service import (
    audit_outbox,
    catalogue,
    catalogue_import,
    floor,
    jobs,
    placement,
    publishable_keys,
    renders,
)
from render_service.callers import own_organization, scope
from render_service.credit_client import CreditClient
from render_service.images import MAX_IMAGE_BYTES
from render_service.models import RENDER_STATUSES, PublishableKey, RenderJob, size_id_of
from render_service.sales_servicer import LeadLimits, SalesMethods
from render_service.status_hub import StatusHub
from render_service.storage import ImageStore

PICTURE_FETCH_TIMEOUT_S = 10.0  # one picture an import names by address
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # room pictures are PNG or JPEG (images.check_image)
INPUT_CHUNK_BYTES = 256 * 1024

STATUS_TO_PROTO = {"queued": render_pb2.RENDER_STATUS_QUEUED,
                   "processing": render_pb2.RENDER_STATUS_PROCESSING,
                   "success": render_pb2.RENDER_STATUS_SUCCESS,
                   "failed": render_pb2.RENDER_STATUS_FAILED}
STATUS_FROM_PROTO = {value: key for key, value in STATUS_TO_PROTO.items()}
WATCH_LIMIT_S = 5 * 60  # then the client watches again (its slot: carpet_common.streams)


def carpet_message(shown: catalogue.ShownCarpet) -> render_pb2.Carpet:
    row, sizes = shown.carpet, shown.sizes
    first = sizes[0] if sizes else None
    return render_pb2.Carpet(
        id=row.id, organization_id=row.organization_id, sku=row.sku, name=row.name,
        width_cm=first.width_cm if first else 0, length_cm=first.length_cm if first else 0,
        material=row.material, created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at or row.created_at),
        archived_at=timestamp(row.archived_at), image_content_type=row.image_content_type,
        sizes=[render_pb2.CarpetSize(id=size.id, sku=size.sku, width_cm=size.width_cm,
                                     length_cm=size.length_cm) for size in sizes])


def import_report(result: catalogue_import.ImportReport) -> render_pb2.CarpetImportReport:
    report = render_pb2.CarpetImportReport(
        id=result.import_id, organization_id=result.organization_id,
        file_name=result.file_name, created_at=timestamp(result.created_at),
        rows=[render_pb2.CarpetImportRow(
            line=row.line, sku=row.sku, outcome=row.outcome,
            errors=[render_pb2.CarpetImportProblem(column=problem.column, code=problem.code,
                                                   message=problem.message)
                    for problem in row.problems]) for row in result.rows])
    for row in result.rows:
        setattr(report, row.outcome, getattr(report, row.outcome) + 1)
    return report


def _size_specs(sizes) -> list[catalogue.SizeSpec]:
    return [catalogue.SizeSpec(width_cm=size.width_cm, length_cm=size.length_cm, sku=size.sku,
                               size_id=size.id) for size in sizes]


def _catalogues() -> catalogue.Catalogues:
    """STAFF: its organisation's catalogue and the shared one (which it does not change);
    ADMIN and the internal backends: every catalogue."""
    return catalogue.Catalogues(own_organization())


def render_message(row: RenderJob) -> render_pb2.RenderJob:
    scene = floor.load(row.scene)
    return render_pb2.RenderJob(
        id=row.id, organization_id=row.organization_id, user_id=row.user_id or 0,
        carpet_id=row.carpet_id, carpet_size_id=size_id_of(row), mode=row.mode,
        status=STATUS_TO_PROTO[row.status],
        error_text=row.error_text, credits_charged=row.credits_charged,
        credit_log_id=row.credit_log_id or 0, created_at=timestamp(row.created_at),
        started_at=timestamp(row.started_at), finished_at=timestamp(row.finished_at),
        hold_id=row.hold_id or 0, placement=placement_message(row.placement),
        renderer=row.renderer or "", placed_carpets=placed_carpets(scene),
        floor=floor_message(scene))


def key_message(row: PublishableKey, key: str = "", renders_today: int = 0
                ) -> render_pb2.PublishableKey:
    settings = publishable_keys.settings_of(row)
    return render_pb2.PublishableKey(
        id=row.id, organization_id=row.organization_id, name=settings.name, last4=row.last4,
        allowed_origins=settings.allowed_origins, development=settings.development,
        renders_per_day=settings.renders_per_day, max_concurrent=settings.max_concurrent,
        rate_per_visitor=settings.rate_per_visitor, created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at), revoked_at=timestamp(row.revoked_at),
        previous_expires_at=timestamp(row.previous_expires_at), renders_today=renders_today,
        key=key)


def public_render_message(row: RenderJob) -> render_pb2.PublicRender:
    """What the widget sees of a render: no internal ids, no credit."""
    return render_pb2.PublicRender(
        id=row.public_id, status=STATUS_TO_PROTO[row.status], carpet_id=row.carpet_id,
        carpet_size_id=size_id_of(row), mode=row.mode, error_text=row.error_text,
        created_at=timestamp(row.created_at), finished_at=timestamp(row.finished_at),
        placed_carpets=placed_carpets(floor.load(row.scene)))


def placement_message(text: str) -> render_pb2.Placement | None:
    corners = placement.load(text)
    if not corners:
        return None
    return render_pb2.Placement(carpet_corners=[render_pb2.Point(x=x, y=y) for x, y in corners])


def _submitting_user(user_id: int) -> int | None:
    """Who a render is charged to. A person is always itself (its signed-in user id; none for
    an admin token or a minted JWT) and cannot name anyone else; a backend names any member of
    the organisation, which the credit service checks when it reserves."""
    principal = current_principal()
    if principal.is_service:
        return user_id or None
    if user_id and user_id != principal.user_id:
        raise PermissionDenied("a person submits renders as themselves: leave user_id unset")
    return principal.user_id


def _visible_job(job_id: int) -> RenderJob:
    """The job, or NOT_FOUND when it does not exist for the caller (another organisation's job
    is, for STAFF, as if it did not exist)."""
    job = jobs.get_job(job_id)
    if not current_principal().sees(job.organization_id):
        raise NotFound(f"render {job_id} not found")
    return job


def _measured(request) -> renders.Measured | None:
    """A submission's measured floor, carpets and occluders (None when it has none of them:
    placed by four corners or by default)."""
    if not (request.HasField("floor") or request.carpets or request.occluders):
        return None
    if not request.HasField("floor"):
        raise InvalidArgument("carpets and occluders are placed on a measured floor: give floor")
    return renders.Measured(
        floor=_measure(request.floor),
        spots=[floor.Spot(carpet.carpet_size_id, carpet.center_x_cm, carpet.center_y_cm,
                          carpet.rotation_deg) for carpet in request.carpets],
        occluders=[[(point.x, point.y) for point in polygon.points]
                   for polygon in request.occluders])


def _measure(message: render_pb2.Floor) -> floor.Measure:
    """The floor as measured: a line when one is given (its photo's shape is filled in by the
    submission), else the rectangle."""
    if message.HasField("line"):
        line = message.line
        if message.rectangle:
            raise InvalidArgument("measure the floor by a rectangle or by a line, not both")
        return floor.FloorLine(
            (line.start.x, line.start.y), (line.end.x, line.end.y), line.length_cm,
            (line.vanishing_point.x, line.vanishing_point.y),
            line.focal_length_mm or floor.DEFAULT_FOCAL_LENGTH_MM)
    return floor.Floor(tuple((point.x, point.y) for point in message.rectangle),
                       message.width_cm, message.length_cm)


def placed_carpets(scene: floor.Scene | None) -> list[render_pb2.PlacedCarpet]:
    if scene is None:
        return []
    return [render_pb2.PlacedCarpet(
        carpet_size_id=carpet.carpet_size_id, width_cm=carpet.width_cm,
        length_cm=carpet.length_cm,
        corners=[render_pb2.Point(x=x, y=y) for x, y in carpet.corners],
        fit=render_pb2.Fit(**vars(carpet.fit)) if carpet.fit else None)
        for carpet in scene.carpets]


def floor_message(scene: floor.Scene | None) -> render_pb2.Floor | None:
    if scene is None:
        return None
    measure = scene.floor
    if isinstance(measure, floor.FloorLine):
        return render_pb2.Floor(line=render_pb2.FloorLine(
            start=render_pb2.Point(x=measure.start[0], y=measure.start[1]),
            end=render_pb2.Point(x=measure.end[0], y=measure.end[1]),
            length_cm=measure.length_cm, focal_length_mm=measure.focal_length_mm,
            vanishing_point=render_pb2.Point(x=measure.vanishing_point[0],
                                             y=measure.vanishing_point[1])))
    return render_pb2.Floor(rectangle=[render_pb2.Point(x=x, y=y) for x, y in measure.rectangle],
                            width_cm=measure.width_cm, length_cm=measure.length_cm)


class RenderServicer(SalesMethods, render_pb2_grpc.RenderServiceServicer):
    def __init__(self, settings: Settings, credit: CreditClient, store: ImageStore, clock,
                 status_hub: StatusHub):
        self._settings = settings
        self._credit = credit
        self._store = store
        self._clock = clock
        self._status_hub = status_hub
        self._visitor_limits = publishable_keys.VisitorLimits(settings.rate_limit_storage)
        self._lead_limits = LeadLimits(settings.rate_limit_storage)
        self._carpet_thumbnails: LruCache[tuple, bytes] = LruCache(CACHED_THUMBNAILS)

    def _catalogue_change(self, action: str, target: str, organization_id: int | None,
                          details: dict, change):
        return carpet_message(self._audited_change(action, target, organization_id, details,
                                                   change))

    def _audited_change(self, action: str, target: str, organization_id: int | None,
                        details: dict, change):
        """`change(now, who)`, which audits itself; a refusal is audited on its own."""
        now, who = self._clock(), who_calls()
        try:
            return change(now, who)
        except DomainError as refused:
            audit_outbox.record_refusal(action, who, refused.grpc_code.name, target,
                                        organization_id, details, now)
            raise

    def CreateCarpet(self, request, context):
        catalogues = _catalogues()
        # STAFF adds to its own catalogue; 0 means the shared one for everyone else.
        organization_id = request.organization_id or (catalogues.organization_id or 0)
        sizes = _size_specs(request.sizes) or [catalogue.SizeSpec(request.width_cm,
                                                                  request.length_cm)]
        return self._catalogue_change(
            catalogue.CREATE, "carpet", organization_id, {"sku": request.sku[:64]},
            lambda now, who: catalogue.create_carpet(
                organization_id=organization_id, sku=request.sku, name=request.name,
                material=request.material, image=request.image, sizes=sizes,
                idempotent=bool(request.idempotency_key), catalogues=catalogues, now=now,
                who=who))

    def UpdateCarpet(self, request, context):
        fields = {"name": lambda: request.name, "material": lambda: request.material,
                  "image": lambda: request.image, "sizes": lambda: _size_specs(request.sizes)}
        paths = list(request.update_mask.paths)
        changes = {path: fields[path]() if path in fields else None for path in paths}
        return self._catalogue_change(
            catalogue.UPDATE, f"carpet:{request.id}", None,
            {"changed": sorted(path[:40] for path in paths[:10])},
            lambda now, who: catalogue.update_carpet(request.id, changes,
                                                     catalogues=_catalogues(), now=now,
                                                     who=who))

    def ArchiveCarpet(self, request, context):
        return self._set_archived(request.id, True, catalogue.ARCHIVE)

    def RestoreCarpet(self, request, context):
        return self._set_archived(request.id, False, catalogue.RESTORE)

    def _set_archived(self, carpet_id: int, archived: bool, action: str):
        return self._catalogue_change(
            action, f"carpet:{carpet_id}", None, {},
            lambda now, who: catalogue.set_archived(carpet_id, archived,
                                                    catalogues=_catalogues(), now=now, who=who))

    def ImportCarpets(self, request, context):
        catalogues = _catalogues()
        organization_id = request.organization_id or (catalogues.organization_id or 0)
        designs = [catalogue_import.ImportedDesign(
            lines=list(carpet.lines), sku=carpet.sku, name=carpet.name,
            material=carpet.material, image=carpet.image, image_url=carpet.image_url,
            sizes=[(size.width_cm, size.length_cm) for size in carpet.sizes])
            for carpet in request.carpets]
        now, who = self._clock(), who_calls()
        try:
            result = catalogue_import.import_carpets(
                organization_id, designs, dry_run=request.dry_run,
                file_name=request.file_name, catalogues=catalogues, now=now, who=who,
                fetch=self._fetch_picture)
        except DomainError as refused:
            audit_outbox.record_refusal(catalogue_import.IMPORT, who, refused.grpc_code.name,
                                        f"catalogue:{organization_id}", organization_id,
                                        {"file": request.file_name[:200]}, now)
            raise
        return import_report(result)

    def GetCarpetImport(self, request, context):
        return import_report(catalogue_import.get_import(request.id, _catalogues()))

    def GetCarpetImage(self, request, context):
        data, content_type = catalogue.carpet_image(request.id, _catalogues())
        for offset in range(0, len(data), INPUT_CHUNK_BYTES):
            yield render_pb2.RenderOutputChunk(content_type=content_type,
                                               data=data[offset:offset + INPUT_CHUNK_BYTES])

    def _fetch_picture(self, url: str) -> bytes:
        """A picture an import names by address, through the SSRF guard, bounded."""
        return outbound.fetch(url, max_bytes=MAX_IMAGE_BYTES, timeout_s=PICTURE_FETCH_TIMEOUT_S,
                              allow_private=self._settings.webhook_allow_private)

    def GetCarpet(self, request, context):
        return carpet_message(catalogue.get_carpet(request.id, _catalogues()))

    def ListCarpets(self, request, context):
        page, sizes = catalogue.list_carpets(
            request.page_size, request.page_token, catalogues=_catalogues(),
            organization_id=request.organization_id, material=request.material,
            query=request.query, include_archived=request.include_archived)
        return render_pb2.ListCarpetsResponse(
            carpets=[carpet_message(catalogue.ShownCarpet(row, sizes.get(row.id, [])))
                     for row in page.rows],
            next_page_token=page.next_page_token)

    def SubmitRender(self, request, context):
        job = renders.submit_render(
            organization_id=scope(request.organization_id),
            user_id=_submitting_user(request.user_id),
            carpet_id=request.carpet_id, carpet_size_id=request.carpet_size_id,
            mode=request.mode, room_image=request.room_image,
            idempotency_key=request.idempotency_key,
            # Only a retry with the same key is compared with it: without a key, no copy and
            # hash of the request (and its room picture) at all.
            fingerprint=(idempotency.request_fingerprint(request)
                         if request.idempotency_key else ""),
            credit=self._credit,
            settings=self._settings, now=self._clock(),
            placement=[(point.x, point.y) for point in request.placement.carpet_corners],
            measured=_measured(request))
        return render_message(job)

    def GetRender(self, request, context):
        return render_message(_visible_job(request.id))

    def ListRenders(self, request, context):
        status = ""
        if request.status:
            if request.status not in STATUS_FROM_PROTO:
                raise InvalidArgument("unknown status")
            status = STATUS_FROM_PROTO[request.status]
        page = jobs.list_jobs(
            request.page_size, request.page_token,
            organization_id=scope(request.organization_id),
            user_id=request.user_id, status=status, mode=request.mode,
            created_after=optional_time(request, "created_after"),
            created_before=optional_time(request, "created_before"))
        return render_pb2.ListRendersResponse(renders=[render_message(r) for r in page.rows],
                                              next_page_token=page.next_page_token)

    def WatchRender(self, request, context):
        job = _visible_job(request.id)
        for update in self._watch(job.id):
            yield render_message(update) if isinstance(update, RenderJob) else update

    def _watch(self, job_id: int):
        """The job now, then at each change of its status until it ends. Between changes the
        stream waits on the event loop without a thread, and the job is read again only when
        the status hub says it changed (render_service.status_hub): the generator yields the
        job (for the caller to turn into its message) or the hub's wait, passed on as it is."""
        last_status = None
        deadline = time.monotonic() + WATCH_LIMIT_S
        with self._status_hub.watching(job_id) as changes:
            while True:
                job = jobs.get_job(job_id)
                if job.status != last_status:
                    last_status = job.status
                    yield job
                remaining = deadline - time.monotonic()
                if job.status in jobs.TERMINAL or remaining <= 0:
                    return
                yield changes.next_change(remaining)

    def CancelRender(self, request, context):
        return render_message(renders.cancel_render(
            _visible_job(request.id), who=who_calls(), credit=self._credit,
            now=self._clock()))

    def GetRenderOutput(self, request, context):
        yield from self._output(_visible_job(request.id))

    def _output(self, job: RenderJob):
        if job.output_expired:
            raise FailedPrecondition(f"render {job.id}'s picture has expired (kept for "
                                     f"RENDER_OUTPUT_RETENTION)", reason="RENDER_OUTPUT_EXPIRED")
        if job.status != "success":
            raise FailedPrecondition(f"render {job.id} is {job.status}, it has no image",
                                     reason="RENDER_NOT_READY")
        if job.output_path is None or not self._store.exists(job.output_path):
            raise NotFound(f"the image of render {job.id} is missing from storage")
        for chunk in self._store.read_chunks(job.output_path):
            yield render_pb2.RenderOutputChunk(content_type=job.output_content_type, data=chunk)

    def GetRenderInput(self, request, context):
        job = _visible_job(request.id)
        picture = jobs.room_image(job.id)
        if picture is None:
            raise NotFound(f"render {job.id} has no room picture (none was sent, or it is no "
                           f"longer kept: RENDER_INPUT_RETENTION)")
        content_type = "image/png" if picture.startswith(PNG_SIGNATURE) else "image/jpeg"
        for offset in range(0, len(picture), INPUT_CHUNK_BYTES):
            yield render_pb2.RenderOutputChunk(content_type=content_type,
                                               data=picture[offset:offset + INPUT_CHUNK_BYTES])

    def GetRenderUsage(self, request, context):
        organization_id = scope(request.organization_id)
        start, end = day_range(request.from_date, request.to_date)
        usage = jobs.render_usage(start, end, organization_id)
        empty = dict.fromkeys(RENDER_STATUSES, 0)
        return render_pb2.RenderUsage(days=[
            render_pb2.RenderDay(date=day.isoformat(), by_status=usage.get(day, empty))
            for day in each_day(start, end)], carpets=[
            render_pb2.CarpetRenders(carpet_id=carpet, carpet_size_id=size, renders=renders)
            for carpet, size, renders in jobs.carpet_usage(start, end, organization_id)])

    def GetRenderTotals(self, request, context):
        organization_id = scope(request.organization_id)
        by_status = jobs.render_totals(organization_id)
        return render_pb2.RenderTotals(total=sum(by_status.values()), by_status=by_status,
                                       storage_bytes=jobs.stored_bytes(organization_id))

    # --- publishable keys (render_service.publishable_keys) -----------------------------------

    def CreatePublishableKey(self, request, context):
        organization_id = scope(request.organization_id)
        defaults = publishable_keys.KeySettings()
        settings = publishable_keys.KeySettings(
            name=request.name, allowed_origins=tuple(request.allowed_origins),
            development=request.development,
            renders_per_day=request.renders_per_day or defaults.renders_per_day,
            max_concurrent=request.max_concurrent or defaults.max_concurrent,
            rate_per_visitor=request.rate_per_visitor or defaults.rate_per_visitor)
        row, key = self._audited_change(
            publishable_keys.CREATE, "publishable_key", organization_id,
            {"allowed_origins": [origin[:100] for origin in request.allowed_origins[:20]]},
            lambda now, who: publishable_keys.create_key(organization_id, settings, now=now,
                                                         who=who))
        return key_message(row, key)

    def ListPublishableKeys(self, request, context):
        rows = publishable_keys.list_keys(scope(request.organization_id))
        today = publishable_keys.renders_today([row.id for row in rows], self._clock().date())
        return render_pb2.ListPublishableKeysResponse(publishable_keys=[
            key_message(row, renders_today=today.get(row.id, 0)) for row in rows])

    def UpdatePublishableKey(self, request, context):
        fields = {"name": lambda: request.name,
                  "allowed_origins": lambda: tuple(request.allowed_origins),
                  "development": lambda: request.development,
                  "renders_per_day": lambda: request.renders_per_day,
                  "max_concurrent": lambda: request.max_concurrent,
                  "rate_per_visitor": lambda: request.rate_per_visitor}
        paths = list(request.update_mask.paths)
        changes = {path: fields[path]() if path in fields else None for path in paths}
        return key_message(self._audited_change(
            publishable_keys.UPDATE, f"publishable_key:{request.id}", None,
            {"changed": sorted(path[:40] for path in paths[:10])},
            lambda now, who: publishable_keys.update_key(
                request.id, changes, organization_scope=own_organization(), now=now, who=who)))

    def RotatePublishableKey(self, request, context):
        row, key = self._audited_change(
            publishable_keys.ROTATE, f"publishable_key:{request.id}", None, {},
            lambda now, who: publishable_keys.rotate_key(
                request.id, request.overlap_seconds, organization_scope=own_organization(),
                now=now, who=who))
        return key_message(row, key)

    def RevokePublishableKey(self, request, context):
        return key_message(self._audited_change(
            publishable_keys.REVOKE, f"publishable_key:{request.id}", None, {},
            lambda now, who: publishable_keys.revoke_key(
                request.id, organization_scope=own_organization(), now=now, who=who)))

    # --- the public render API, relayed by the gateway (docs/widget.md) -----------------------

    def _public_key(self, caller) -> PublishableKey:
        """The caller's key, checked with its origin and counted in the visitor's rate."""
        row = publishable_keys.key_for_origin(caller.key, caller.origin, self._clock())
        self._visitor_limits.check(row, caller.visitor)
        return row

    def _public_job(self, request) -> RenderJob:
        """The render, or NOT_FOUND unless the key's organisation made it through a key."""
        row = self._public_key(request.caller)
        job = jobs.get_public_job(request.id)
        if job is None or job.organization_id != row.organization_id:
            raise NotFound("render not found")
        return job

    def ListPublicCarpets(self, request, context):
        row = self._public_key(request.caller)
        page, sizes = catalogue.list_carpets(
            request.page_size, request.page_token,
            catalogues=catalogue.Catalogues(row.organization_id),
            organization_id=row.organization_id, sku=request.sku.strip()[:64])
        return render_pb2.ListCarpetsResponse(
            carpets=[carpet_message(catalogue.ShownCarpet(carpet, sizes.get(carpet.id, [])))
                     for carpet in page.rows],
            next_page_token=page.next_page_token)

    def GetPublicCarpetThumbnail(self, request, context):
        row = self._public_key(request.caller)
        catalogues = catalogue.Catalogues(row.organization_id)
        carpet = catalogue.get_carpet(request.carpet_id, catalogues).carpet
        if carpet.archived_at is not None:
            raise NotFound(f"carpet {request.carpet_id} not found")
        version = (carpet.id, carpet.updated_at or carpet.created_at)
        thumbnail = self._carpet_thumbnails.get(version)
        if thumbnail is None:
            thumbnail = make_thumbnail(catalogue.carpet_image(carpet.id, catalogues)[0])
            self._carpet_thumbnails.put(version, thumbnail)
        yield render_pb2.RenderOutputChunk(content_type=THUMBNAIL_TYPE, data=thumbnail)

    def SubmitPublicRender(self, request, context):
        row = self._public_key(request.caller)
        if request.mode not in publishable_keys.WIDGET_MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(publishable_keys.WIDGET_MODES)}")
        job = renders.submit_render(
            organization_id=row.organization_id, user_id=None, carpet_id=request.carpet_id,
            carpet_size_id=request.carpet_size_id, mode=request.mode,
            room_image=request.room_image, idempotency_key="", fingerprint="",
            credit=self._credit, settings=self._settings, now=self._clock(),
            placement=[(point.x, point.y) for point in request.placement.carpet_corners],
            publishable_key=row, measured=_measured(request))
        return public_render_message(job)

    def GetPublicRender(self, request, context):
        return public_render_message(self._public_job(request))

    def WatchPublicRender(self, request, context):
        job = self._public_job(request)
        for update in self._watch(job.id):
            yield public_render_message(update) if isinstance(update, RenderJob) else update

    def GetPublicRenderOutput(self, request, context):
        yield from self._output(self._public_job(request))
