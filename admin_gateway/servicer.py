"""AdminService: aggregates the credit and render services for admins. It owns no tables;
every call goes to the services with the caller's credential, which they check again.

A method that only passes its request on declares the service it relays to in its proto
(`relay`, admin_gateway.surface) and is served by one generic relay; `AdminServicer` holds the
methods that do more: aggregates, scoping a STAFF caller's request, exports page by page,
pictures, sign-in (which adds the caller's address)."""
from __future__ import annotations

import datetime
import functools

import grpc

from admin_gateway.clients import ServiceClients, relayed
from admin_gateway.surface import OPERATIONS, Operation, SurfaceError
from carpet_common.calls import current_call, current_principal
from carpet_common.convert import timestamp
from carpet_common.lru import LruCache
from carpet_common.thumbnails import CACHED as CACHED_THUMBNAILS
from carpet_common.thumbnails import CONTENT_TYPE as THUMBNAIL_TYPE
from carpet_common.thumbnails import make_thumbnail
from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import account_pb2, credit_pb2, notification_pb2
from protos.carpet.render.v1 import render_pb2


def relaying(method):
    """Service errors reach the caller with their own code and reason."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except grpc.RpcError as error:
            raise relayed(error) from None

    return wrapper


def relaying_stream(method):
    """`relaying` for server-streaming methods (generators)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            yield from method(*args, **kwargs)
        except grpc.RpcError as error:
            raise relayed(error) from None

    return wrapper


EXPORT_PAGE_SIZE = 500
IMPORT_TIMEOUT_S = 600.0  # ten thousand rows in one transaction
USAGE_DEFAULT_DAYS = 30


def _pages(list_call, request, **scoped):
    """Every page of a list call, from the first, with `scoped` fields set on the request."""
    page_request = type(request)()
    page_request.CopyFrom(request)
    for field, value in scoped.items():
        setattr(page_request, field, value)
    page_request.page_size = EXPORT_PAGE_SIZE
    while True:
        page = list_call(page_request)
        yield page
        if not page.next_page_token:
            return
        page_request.page_token = page.next_page_token


def _from_caller(request):
    """A copy of a sign-in request with the caller's address as the gateway sees it."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.client_ip = current_call().client_ip
    return copy


def _scope(organization_id: int) -> int:
    """STAFF reads only its own organisation (PERMISSION_DENIED for another)."""
    return current_principal().check_organization(organization_id)


CACHED_CARPET_NAMES = 10_000


class AdminServicer:
    def __init__(self, clients: ServiceClients, clock,
                 console: admin_pb2.ConsoleSettings | None = None):
        self._clients = clients
        self._clock = clock
        self._console = console or admin_pb2.ConsoleSettings()
        self._thumbnails: LruCache[int, bytes] = LruCache(CACHED_THUMBNAILS)
        # A carpet's picture may change: its thumbnail is kept under the carpet's version.
        self._carpet_thumbnails: LruCache[tuple[int, int], bytes] = LruCache(CACHED_THUMBNAILS)
        self._carpet_names: LruCache[int, str] = LruCache(CACHED_CARPET_NAMES)

    @relaying
    def GetOverview(self, request, context):
        organization_id = _scope(request.organization_id)
        # Both services are asked at once; the slower one sets the latency.
        accounts = self._clients.accounts.GetAccountTotals.future(
            account_pb2.GetAccountTotalsRequest(organization_id=organization_id))
        renders = self._clients.renders.GetRenderTotals.future(
            render_pb2.GetRenderTotalsRequest(organization_id=organization_id))
        # The low-balance list too: every organisation's for ADMIN, its own for STAFF.
        notifications = self._clients.notifications
        if current_principal().role == "ADMIN":
            low = notifications.ListOrganizationControls.future(
                notification_pb2.ListOrganizationControlsRequest(low_balance_only=True))
        else:
            own = notifications.GetOrganizationControls.future(
                notification_pb2.GetOrganizationControlsRequest(id=organization_id))
        account_totals, render_totals = accounts.result(), renders.result()
        if current_principal().role == "ADMIN":
            low_balance = list(low.result().organizations)
        else:
            mine = own.result()
            low_balance = [mine] if mine.low_balance else []
        return admin_pb2.Overview(
            total_users=account_totals.users, total_renders=render_totals.total,
            total_remaining_credit=account_totals.total_balance,
            total_held=account_totals.total_held, organizations=account_totals.organizations,
            renders_by_status=dict(render_totals.by_status), as_of=timestamp(self._clock()),
            storage_bytes=render_totals.storage_bytes,
            total_expiring_within_30_days=account_totals.total_expiring_within_30_days,
            low_balance=[row for row in low_balance
                         if not organization_id or row.organization_id == organization_id])

    @relaying
    def ListUsers(self, request, context):
        scoped = account_pb2.ListUsersRequest()
        scoped.CopyFrom(request)
        scoped.organization_id = _scope(request.organization_id)
        return self._clients.accounts.ListUsers(scoped)

    @relaying
    def ListRenders(self, request, context):
        scoped = render_pb2.ListRendersRequest()
        scoped.CopyFrom(request)
        scoped.organization_id = _scope(request.organization_id)
        return self._render_rows(self._clients.renders.ListRenders(scoped))

    def _render_rows(self, page) -> admin_pb2.ListRendersResponse:
        user_ids = sorted({job.user_id for job in page.renders if job.user_id})
        users = {}
        if user_ids:  # one batched look-up per page, never one call per row
            found = self._clients.accounts.BatchGetUsers(
                account_pb2.BatchGetUsersRequest(ids=user_ids))
            users = {user.id: user for user in found.users}
        carpets = self._carpet_names_of({job.carpet_id for job in page.renders})
        organizations = self._organization_names(
            {job.organization_id for job in page.renders},
            {user.organization_id: user.organization_name for user in users.values()})
        rows = []
        for job in page.renders:
            user = users.get(job.user_id)
            if user is not None and user.organization_id != job.organization_id:
                user = None  # only the job's own organisation's people are named on it
            rows.append(admin_pb2.RenderRow(
                render=job, user_name=user.name if user else "",
                user_email=user.email if user else "",
                organization_name=organizations.get(job.organization_id, ""),
                carpet_name=carpets.get(job.carpet_id, ""),
                image_path=(f"/admin/renders/{job.id}/image"
                            if job.status == render_pb2.RENDER_STATUS_SUCCESS else "")))
        return admin_pb2.ListRendersResponse(renders=rows, next_page_token=page.next_page_token)

    def _organization_names(self, wanted: set[int], known: dict[int, str]) -> dict[int, str]:
        """Names of the organisations `wanted`: from the page's users where they name it, one
        look-up per other organisation (a page rarely spans more than a few)."""
        names = {key: name for key, name in known.items() if key in wanted}
        for organization_id in sorted(wanted - names.keys()):
            names[organization_id] = self._clients.accounts.GetOrganization(
                account_pb2.GetOrganizationRequest(id=organization_id)).name
        return names

    def _carpet_names_of(self, carpet_ids: set[int]) -> dict[int, str]:
        """A carpet's name never changes once it is added: each is asked for once and kept."""
        names = {}
        for carpet_id in sorted(carpet_ids):
            name = self._carpet_names.get(carpet_id)
            if name is None:
                name = self._clients.renders.GetCarpet(
                    render_pb2.GetCarpetRequest(id=carpet_id)).name
                self._carpet_names.put(carpet_id, name)
            names[carpet_id] = name
        return names

    @relaying
    def ListCreditLogs(self, request, context):
        scoped = type(request)()
        scoped.CopyFrom(request)
        scoped.organization_id = _scope(request.organization_id)
        return self._clients.credits.ListCreditLogs(scoped)

    # Sign-in: the credit service checks the password or refresh token; the gateway says from
    # which address (a field the caller cannot set: it is overwritten here).
    @relaying
    def Login(self, request, context):
        return self._clients.sign_in.Login(_from_caller(request))

    @relaying
    def Refresh(self, request, context):
        return self._clients.sign_in.Refresh(_from_caller(request))

    @relaying
    def Logout(self, request, context):
        return self._clients.sign_in.Logout(_from_caller(request))

    @relaying_stream
    def GetRenderImage(self, request, context):
        self._visible_render(request.id)
        yield from self._clients.renders.GetRenderOutput(request)

    @relaying
    def GetUsage(self, request, context):
        organization_id = _scope(request.organization_id)
        first, last = request.from_date, request.to_date
        if not first and not last:
            today = self._clock().date()
            first = (today - datetime.timedelta(days=USAGE_DEFAULT_DAYS - 1)).isoformat()
            last = today.isoformat()
        # Both services at once; each reads its own daily roll-up.
        credits = self._clients.credits.GetCreditUsage.future(credit_pb2.GetCreditUsageRequest(
            organization_id=organization_id, from_date=first, to_date=last))
        renders = self._clients.renders.GetRenderUsage.future(render_pb2.GetRenderUsageRequest(
            organization_id=organization_id, from_date=first, to_date=last))
        credit_days, render_usage = credits.result().days, renders.result()
        return admin_pb2.Usage(days=[
            admin_pb2.DayUsage(date=money.date, renders_by_status=dict(jobs.by_status),
                               credits_spent=money.credits_spent,
                               credits_added=money.credits_added)
            for money, jobs in zip(credit_days, render_usage.days, strict=True)],
            carpets=render_usage.carpets)

    @relaying_stream
    def ExportRenders(self, request, context):
        for page in _pages(self._clients.renders.ListRenders, request,
                           organization_id=_scope(request.organization_id)):
            yield self._render_rows(page)

    @relaying_stream
    def ExportOrganizations(self, request, context):
        yield from _pages(self._clients.accounts.ListOrganizations, request)

    @relaying_stream
    def ExportUsers(self, request, context):
        yield from _pages(self._clients.accounts.ListUsers, request,
                          organization_id=_scope(request.organization_id))

    @relaying_stream
    def ExportCreditLogs(self, request, context):
        yield from _pages(self._clients.credits.ListCreditLogs, request,
                          organization_id=_scope(request.organization_id))

    @relaying_stream
    def ExportAuditLogs(self, request, context):
        yield from _pages(self._clients.audit.ListAuditLogs, request)

    @relaying_stream
    def GetRenderThumbnail(self, request, context):
        job = self._visible_render(request.id)
        thumbnail = self._thumbnails.get(job.id)
        if thumbnail is None:
            image = b"".join(chunk.data for chunk in
                             self._clients.renders.GetRenderOutput(request))
            thumbnail = make_thumbnail(image)
            self._thumbnails.put(job.id, thumbnail)
        yield render_pb2.RenderOutputChunk(content_type=THUMBNAIL_TYPE, data=thumbnail)

    @relaying_stream
    def GetRenderRoom(self, request, context):
        self._visible_render(request.id)
        yield from self._clients.renders.GetRenderInput(request)

    def _visible_render(self, job_id: int) -> render_pb2.RenderJob:
        job = self._clients.renders.GetRender(render_pb2.GetRenderRequest(id=job_id))
        _scope(job.organization_id)  # STAFF: only its own organisation's pictures
        return job

    def GetConsoleSettings(self, request, context):
        return self._console

    @relaying
    def GetBalance(self, request, context):
        return self._clients.credits.GetBalance(credit_pb2.GetBalanceRequest(
            organization_id=_scope(request.organization_id)))

    @relaying_stream
    def GetCarpetThumbnail(self, request, context):
        carpet = self._clients.renders.GetCarpet(request)  # NOT_FOUND outside its catalogues
        version = (carpet.id, carpet.updated_at.ToNanoseconds())
        thumbnail = self._carpet_thumbnails.get(version)
        if thumbnail is None:
            image = b"".join(chunk.data for chunk in
                             self._clients.renders.GetCarpetImage(request))
            thumbnail = make_thumbnail(image)
            self._carpet_thumbnails.put(version, thumbnail)
        yield render_pb2.RenderOutputChunk(content_type=THUMBNAIL_TYPE, data=thumbnail)

    @relaying_stream
    def ExportLeads(self, request, context):
        yield from _pages(self._clients.renders.ListLeads, request)

    @relaying_stream
    def ExportFunnel(self, request, context):
        yield self._clients.renders.GetFunnel(request)

    @relaying
    def ImportCarpets(self, request, context):
        return self._clients.renders.ImportCarpets(request, timeout=IMPORT_TIMEOUT_S)

    @relaying_stream
    def ExportCarpets(self, request, context):
        yield from _pages(self._clients.renders.ListCarpets, request)


def _relay(channel: grpc.Channel, operation: Operation):
    """The request, unchanged, to the method of the same name on the declared service."""
    call = channel.unary_unary(f"/{operation.relay}/{operation.name}",
                               request_serializer=operation.request_type.SerializeToString,
                               response_deserializer=operation.response_type.FromString)

    def relay(request, context):
        try:
            return call(request)
        except grpc.RpcError as error:
            raise relayed(error) from None

    return relay


def method_handlers(servicer: AdminServicer,
                    clients: ServiceClients) -> dict[str, grpc.RpcMethodHandler]:
    """Every AdminService method's handler: the servicer's own method, or the generic relay
    its proto declares. A method with neither, or both, stops the gateway at start."""
    handlers = {}
    for operation in OPERATIONS:
        own = getattr(servicer, operation.name, None)
        if (own is None) == (not operation.relay):
            raise SurfaceError(f"AdminService.{operation.name}: "
                               + ("implemented and relayed" if own else "not implemented"))
        behaviour = own or _relay(clients.relay_channel(operation.relay), operation)
        handler = (grpc.unary_stream_rpc_method_handler if operation.streaming
                   else grpc.unary_unary_rpc_method_handler)
        handlers[operation.name] = handler(
            behaviour, request_deserializer=operation.request_type.FromString,
            response_serializer=operation.response_type.SerializeToString)
    return handlers
