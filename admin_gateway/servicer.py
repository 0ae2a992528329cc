"""AdminService: aggregates the credit and render services for admins. It owns no tables;
every call goes to the services with the caller's credential, which they check again."""
from __future__ import annotations

import functools

import grpc

from admin_gateway.clients import ServiceClients, relayed
from carpet_common.calls import current_call, current_principal
from carpet_common.convert import timestamp
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2
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


def _from_caller(request):
    """A copy of a sign-in request with the caller's address as the gateway sees it."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.client_ip = current_call().client_ip
    return copy


def _scope(organization_id: int) -> int:
    """STAFF reads only its own organisation (PERMISSION_DENIED for another)."""
    return current_principal().check_organization(organization_id)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, clients: ServiceClients, clock):
        self._clients = clients
        self._clock = clock

    @relaying
    def GetOverview(self, request, context):
        organization_id = _scope(request.organization_id)
        # Both services are asked at once; the slower one sets the latency.
        accounts = self._clients.accounts.GetAccountTotals.future(
            account_pb2.GetAccountTotalsRequest(organization_id=organization_id))
        renders = self._clients.renders.GetRenderTotals.future(
            render_pb2.GetRenderTotalsRequest(organization_id=organization_id))
        account_totals, render_totals = accounts.result(), renders.result()
        return admin_pb2.Overview(
            total_users=account_totals.users, total_renders=render_totals.total,
            total_remaining_credit=account_totals.total_balance,
            total_held=account_totals.total_held, organizations=account_totals.organizations,
            renders_by_status=dict(render_totals.by_status), as_of=timestamp(self._clock()),
            storage_bytes=render_totals.storage_bytes)

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
        page = self._clients.renders.ListRenders(scoped)
        user_ids = sorted({job.user_id for job in page.renders if job.user_id})
        users = {}
        if user_ids:  # one batched look-up per page, never one call per row
            found = self._clients.accounts.BatchGetUsers(
                account_pb2.BatchGetUsersRequest(ids=user_ids))
            users = {user.id: user for user in found.users}
        rows = []
        for job in page.renders:
            user = users.get(job.user_id)
            rows.append(admin_pb2.RenderRow(
                render=job, user_name=user.name if user else "",
                user_email=user.email if user else "",
                image_path=(f"/admin/renders/{job.id}/image"
                            if job.status == render_pb2.RENDER_STATUS_SUCCESS else "")))
        return admin_pb2.ListRendersResponse(renders=rows, next_page_token=page.next_page_token)

    @relaying
    def ListOrganizations(self, request, context):
        return self._clients.accounts.ListOrganizations(request)

    @relaying
    def ListCreditLogs(self, request, context):
        return self._clients.credits.ListCreditLogs(request)

    @relaying
    def ListAuditLogs(self, request, context):
        return self._clients.audit.ListAuditLogs(request)

    @relaying
    def CreateOrganization(self, request, context):
        return self._clients.accounts.CreateOrganization(request)

    @relaying
    def CreateUser(self, request, context):
        return self._clients.accounts.CreateUser(request)

    @relaying
    def AdjustCredits(self, request, context):
        return self._clients.credits.AdjustCredits(request)

    @relaying
    def SetUserPassword(self, request, context):
        return self._clients.accounts.SetUserPassword(request)

    @relaying
    def DeactivateUser(self, request, context):
        return self._clients.accounts.DeactivateUser(request)

    @relaying
    def ActivateUser(self, request, context):
        return self._clients.accounts.ActivateUser(request)

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

    @relaying
    def ChangePassword(self, request, context):
        return self._clients.auth.ChangePassword(request)

    def GetRenderImage(self, request, context):
        try:
            job = self._clients.renders.GetRender(render_pb2.GetRenderRequest(id=request.id))
            _scope(job.organization_id)  # STAFF: only its own organisation's pictures
            yield from self._clients.renders.GetRenderOutput(request)
        except grpc.RpcError as error:
            raise relayed(error) from None


