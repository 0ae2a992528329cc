"""The policy tables, walked exhaustively: every method of every service descriptor, called on
its real server by every kind of caller (no credential, STAFF of another organisation, an ADMIN
token, each service identity), gets exactly what a policy written out by hand says (not read
from the servers' tables, so a wrong entry in one is caught). A method missing from a table
fails here (deny by default is the server's answer, but the table must say so)."""
import time

import grpc
import jwt
import pytest
from google.protobuf.message_factory import GetMessageClass

from admin_gateway.surface import POLICY as GATEWAY_POLICY
from carpet_common.auth import Identity, Principal
from credit_service.app import policy as credit_policy
from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import account_pb2, audit_pb2, auth_pb2, credit_pb2, notification_pb2
from protos.carpet.render.v1 import render_pb2
from render_service.app import policy as render_policy
from tests.helpers import ADMIN, JWT_SECRET, SERVICE_TOKEN, as_service, bearer

pytestmark = pytest.mark.usefixtures("engine")

SERVICES = {  # descriptor -> which server answers it
    account_pb2.DESCRIPTOR.services_by_name["AccountService"]: "credit",
    credit_pb2.DESCRIPTOR.services_by_name["CreditService"]: "credit",
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"]: "credit",
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"]: "credit",
    notification_pb2.DESCRIPTOR.services_by_name["NotificationService"]: "credit",
    render_pb2.DESCRIPTOR.services_by_name["RenderService"]: "render",
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"]: "gateway",
}
OTHER_ORG = 424242
# Sign-in methods whose request carries a credential of its own (a password, a refresh token):
# an admitted caller with an empty request is refused by that credential's check.
CHECKS_REQUEST_CREDENTIAL = {f"/{service}/{method}" for service in (
    "carpet.credit.v1.AuthService", "carpet.admin.v1.AdminService")
    for method in ("Login", "Refresh", "Logout", "ChangePassword")}


def staff_of_another_organisation():
    now = int(time.time())
    return bearer(jwt.encode({"sub": "stranger", "role": "STAFF", "org": OTHER_ORG, "iat": now,
                              "exp": now + 300, "aud": "carpet-admin", "iss": "carpet"},
                             JWT_SECRET, algorithm="HS256"))


def callers():
    """(name, metadata, the identity the server should see) for every kind of caller."""
    yield "no credential", (), None
    yield "STAFF of another organisation", staff_of_another_organisation(), Identity(
        person=Principal("stranger", "STAFF", OTHER_ORG))
    yield "ADMIN token", ADMIN, Identity(person=Principal("alice", "ADMIN"))
    for service in SERVICE_TOKEN:
        yield f"service {service}", as_service(service), Identity(service=service)


def call(channel, method, metadata):
    path = f"/{method.containing_service.full_name}/{method.name}"
    request = GetMessageClass(method.input_type)()
    deserialize = GetMessageClass(method.output_type).FromString
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                          response_deserializer=deserialize)
            for _ in stream(request, metadata=metadata, timeout=5):
                pass
        else:
            channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                response_deserializer=deserialize)(
                request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# Who may call each method, written out by hand from docs/security.md, independently of the
# servers' tables (a test that read the expected answers from the table the server uses could
# not notice a wrong entry in it). A: an ADMIN person; S: a STAFF person (of any organisation:
# the walk's empty requests name none); then the services; "public": sign-in, proven by the
# request itself.
READERS = "A S render admin-gateway web"
# The catalogue on the admin gateway: STAFF their own organisation's (render_service.catalogue).
CATALOGUE = ("ListCarpets", "GetCarpet", "CreateCarpet", "UpdateCarpet", "ArchiveCarpet",
             "RestoreCarpet", "ExportCarpets", "ImportCarpets", "GetCarpetThumbnail",
             "GetCarpetImport")
# Publishable keys (docs/widget.md): STAFF their own organisation's.
PUBLISHABLE_KEYS = ("CreatePublishableKey", "ListPublishableKeys", "UpdatePublishableKey",
                    "RotatePublishableKey", "RevokePublishableKey")
PUBLIC_RENDER_API = ("ListPublicCarpets", "GetPublicCarpetThumbnail", "SubmitPublicRender",
                     "GetPublicRender", "WatchPublicRender", "GetPublicRenderOutput",
                     "CreatePublicShare", "SubmitPublicLead", "RecordPublicEvent",
                     "GetSharedRender", "GetSharedRenderOutput", "GetSharedShopLogo")
# Share links, leads and the funnel (docs/shares-and-leads.md): STAFF their own organisation's.
SALES = ("ListShares", "RevokeShare", "ListLeads", "UpdateLead", "ExportPersonalData",
         "ErasePersonalData", "RecordConversion", "GetFunnel", "SetShopLogo", "GetShopLogo",
         "DeleteShopLogo")
EXPECTED = {
    "AccountService": {"CreateOrganization": "A", "GetOrganization": READERS,
                       "ListOrganizations": "A", "CreateUser": "A", "GetUser": READERS,
                       "BatchGetUsers": "admin-gateway web", "ListUsers": "A S",
                       "GetAccountTotals": "admin-gateway", "SetUserPassword": "A",
                       "DeactivateUser": "A", "ActivateUser": "A"},
    "AuthService": {"Login": "admin-gateway", "Refresh": "admin-gateway",
                    "Logout": "admin-gateway", "ChangePassword": "A S",
                    "ListRevokedSessions": "render admin-gateway web"},
    "CreditService": {"GetBalance": READERS, "AdjustCredits": "A", "ReserveCredits": "render",
                      "CaptureHold": "render", "ReleaseHold": "render",
                      "ListCreditLogs": "A S", "GetCreditUsage": "A S admin-gateway",
                      "GrantCredits": "A"},
    "AuditService": {"ListAuditLogs": "A", "RecordDenial": "admin-gateway render",
                     "RecordAction": "render", "VerifyAuditChain": "A"},
    "NotificationService": {
        **dict.fromkeys(("CreateWebhookEndpoint", "ListWebhookEndpoints",
                         "DeleteWebhookEndpoint", "ListWebhookDeliveries",
                         "RetryWebhookDelivery", "SetLowBalanceAlert", "SetSpendLimits",
                         "SuspendOrganization", "ResumeOrganization"), "A"),
        "GetOrganizationControls": "A S admin-gateway",
        "ListOrganizationControls": "A admin-gateway", "PublishRenderEvents": "render"},
    "RenderService": {**dict.fromkeys(("CreateCarpet", "UpdateCarpet", "ArchiveCarpet",
                                       "RestoreCarpet", "ImportCarpets", "GetCarpetImport"),
                                      "A S web"),
                      "GetCarpet": "A S web admin-gateway", "GetCarpetImage": "A S web",
                      "ListCarpets": "A S web admin-gateway",
                      **dict.fromkeys(("SubmitRender", "GetRender", "ListRenders",
                                       "WatchRender", "CancelRender", "GetRenderOutput",
                                       "GetRenderTotals", "GetRenderUsage", "GetRenderInput",
                                       *PUBLISHABLE_KEYS, *SALES), "A S web"),
                      # The public render API: the gateway relays it, naming the key.
                      **dict.fromkeys(PUBLIC_RENDER_API, "admin-gateway")},
    "AdminService": {
        **dict.fromkeys(("Login", "Refresh", "Logout"), "public"),
        **dict.fromkeys(("GetOverview", "ListUsers", "ListRenders", "ListCreditLogs",
                         "GetRenderImage", "ChangePassword", "GetUsage", "ExportRenders",
                         "ExportUsers", "ExportCreditLogs", "GetRenderThumbnail",
                         "GetRenderRoom", "GetConsoleSettings", "GetBalance",
                         *CATALOGUE, *PUBLISHABLE_KEYS, *SALES, "ExportLeads",
                         "ExportFunnel"), "A S"),
        **dict.fromkeys(("ListOrganizations", "ListAuditLogs", "CreateOrganization",
                         "CreateUser", "AdjustCredits", "SetUserPassword", "DeactivateUser",
                         "ActivateUser", "ExportOrganizations", "ExportAuditLogs",
                         "CancelRender", "VerifyAuditChain", "CreateWebhookEndpoint",
                         "ListWebhookEndpoints", "DeleteWebhookEndpoint",
                         "ListWebhookDeliveries", "RetryWebhookDelivery", "SetLowBalanceAlert",
                         "SetSpendLimits", "SuspendOrganization", "ResumeOrganization",
                         "ListOrganizationControls", "GrantCredits"), "A")},
}


def may_call(allowed: str, identity: Identity) -> bool:
    """Whether `allowed` (an EXPECTED entry) admits the caller: a person by role, where the
    method admits people, else the service it presents."""
    words = allowed.split()
    if identity.person is not None:
        return {"ADMIN": "A", "STAFF": "S"}[identity.person.role] in words
    return identity.service in words


def test_every_method_answers_every_caller_as_written_by_hand(credit_server, render_server,
                                                              render_settings, gateway):
    tables = {"credit": credit_policy(render_settings), "render": render_policy(render_settings),
              "gateway": GATEWAY_POLICY}
    ports = {"credit": credit_server.port, "render": render_server.port, "gateway": gateway[1]}
    channels = {target: grpc.insecure_channel(f"127.0.0.1:{port}")
                for target, port in ports.items()}
    walked = {target: set() for target in tables}
    try:
        for service, target in SERVICES.items():
            assert set(EXPECTED[service.name]) == {method.name for method in service.methods}, \
                f"{service.name}: the expected policy names other methods than the protos"
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                assert path in tables[target], f"{path} is missing from the {target} table"
                walked[target].add(path)
                allowed = EXPECTED[service.name][method.name]
                for name, metadata, identity in callers():
                    code = call(channels[target], method, metadata)
                    if allowed == "public":  # sign-in: the request is the credential
                        expected = set(grpc.StatusCode) - {grpc.StatusCode.PERMISSION_DENIED,
                                                           grpc.StatusCode.INTERNAL}
                    elif identity is None:
                        expected = {grpc.StatusCode.UNAUTHENTICATED}
                    elif not may_call(allowed, identity):
                        expected = {grpc.StatusCode.PERMISSION_DENIED}
                    else:  # admitted: whatever the empty request gets, not a refusal
                        expected = set(grpc.StatusCode) - {
                            grpc.StatusCode.UNAUTHENTICATED,
                            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL}
                        if path in CHECKS_REQUEST_CREDENTIAL or (
                                method.name in PUBLIC_RENDER_API):  # the key in the request
                            expected |= {grpc.StatusCode.UNAUTHENTICATED,
                                         grpc.StatusCode.PERMISSION_DENIED}
                    assert code in expected, f"{path} for {name}: {code.name}"
    finally:
        for channel in channels.values():
            channel.close()
    for target, table in tables.items():
        assert set(table) == walked[target], f"the {target} table names unknown methods"


def test_the_tables_say_what_the_boundary_promises(render_settings):
    """The rules that matter most, read from the tables themselves."""
    credit, render = credit_policy(render_settings), render_policy(render_settings)
    hold_cycle = [f"/carpet.credit.v1.CreditService/{name}"
                  for name in ("ReserveCredits", "CaptureHold", "ReleaseHold")]
    for path in hold_cycle:
        assert credit[path].services == {"render"} and not credit[path].admin
    for name in ("BatchGetUsers", "GetAccountTotals", "RecordDenial"):
        rule = credit[f"/carpet.credit.v1.AccountService/{name}"] if name != "RecordDenial" \
            else credit["/carpet.credit.v1.AuditService/RecordDenial"]
        assert not rule.admin and not rule.staff and rule.services
    for path, rule in render.items():  # STAFF: their own organisation's catalogue and jobs
        if path.rsplit("/", 1)[1] in PUBLIC_RENDER_API:  # the gateway's relay, nobody else
            assert not rule.admin and not rule.staff and rule.services == {"admin-gateway"}
            continue
        assert rule.admin and rule.staff and "web" in rule.services, path
