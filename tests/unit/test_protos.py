"""Every generated module imports as a normal package and declares the public services
(docs/reference.md)."""
import importlib

import pytest

MODULES = {
    "protos.carpet.credit.v1.account": ["carpet.credit.v1.AccountService"],
    "protos.carpet.credit.v1.credit": ["carpet.credit.v1.CreditService"],
    "protos.carpet.credit.v1.audit": ["carpet.credit.v1.AuditService"],
    "protos.carpet.credit.v1.auth": ["carpet.credit.v1.AuthService"],
    "protos.carpet.credit.v1.notification": ["carpet.credit.v1.NotificationService"],
    "protos.carpet.render.v1.render": ["carpet.render.v1.RenderService"],
    "protos.carpet.admin.v1.admin": ["carpet.admin.v1.AdminService"],
}

PUBLIC_METHODS = {
    "carpet.credit.v1.AccountService": {
        "CreateOrganization", "GetOrganization", "ListOrganizations", "CreateUser", "GetUser",
        "BatchGetUsers", "ListUsers"},
    "carpet.credit.v1.CreditService": {
        "GetBalance", "AdjustCredits", "ReserveCredits", "CaptureHold", "ReleaseHold",
        "ListCreditLogs"},
    "carpet.credit.v1.AuditService": {"ListAuditLogs"},
    "carpet.render.v1.RenderService": {
        "CreateCarpet", "GetCarpet", "ListCarpets", "SubmitRender", "GetRender", "ListRenders",
        "WatchRender", "CancelRender", "GetRenderOutput"},
    "carpet.admin.v1.AdminService": {
        "GetOverview", "ListUsers", "ListRenders", "ListOrganizations", "ListCreditLogs",
        "ListAuditLogs", "CreateUser", "AdjustCredits"},
}


# Methods added beside the original public surface (internal helpers of the admin gateway,
# and sign-in, whose HTTP paths are fixed and whose RPCs are ours to name).
SIGN_IN_ADMIN = {"SetUserPassword", "DeactivateUser", "ActivateUser"}
# The console's (usage chart, exports, pictures, chain check).
CONSOLE = {
    "carpet.credit.v1.AuditService": {"RecordAction", "VerifyAuditChain"},
    "carpet.credit.v1.CreditService": {"GetCreditUsage"},
    "carpet.render.v1.RenderService": {"GetRenderUsage", "GetRenderInput"},
    "carpet.admin.v1.AdminService": {
        "GetUsage", "ExportRenders", "ExportOrganizations", "ExportUsers", "ExportCreditLogs",
        "ExportAuditLogs",
        "GetRenderThumbnail", "GetRenderRoom", "CancelRender", "VerifyAuditChain",
        "GetConsoleSettings"},
}
# Webhooks, alerts, limits and suspension (their HTTP paths are fixed: docs/reference.md).
NOTIFICATIONS = {"CreateWebhookEndpoint", "ListWebhookEndpoints", "DeleteWebhookEndpoint",
                 "ListWebhookDeliveries", "RetryWebhookDelivery", "SetLowBalanceAlert",
                 "SetSpendLimits", "SuspendOrganization", "ResumeOrganization",
                 "ListOrganizationControls"}
# Catalogues per organisation (docs/catalogue.md).
CATALOGUE = {"ListCarpets", "GetCarpet", "CreateCarpet", "UpdateCarpet", "ArchiveCarpet",
             "RestoreCarpet", "ImportCarpets"}
# Publishable keys and the public render API the gateway relays (docs/widget.md).
PUBLISHABLE_KEYS = {"CreatePublishableKey", "ListPublishableKeys", "UpdatePublishableKey",
                    "RotatePublishableKey", "RevokePublishableKey"}
PUBLIC_RENDER_API = {"ListPublicCarpets", "GetPublicCarpetThumbnail", "SubmitPublicRender",
                     "GetPublicRender", "WatchPublicRender", "GetPublicRenderOutput"}
# Share links, quote requests and the funnel (docs/shares-and-leads.md).
SALES_PUBLIC = {"CreatePublicShare", "SubmitPublicLead", "RecordPublicEvent", "GetSharedRender",
                "GetSharedRenderOutput", "GetSharedShopLogo"}
SALES_ADMIN = {"ListShares", "RevokeShare", "ListLeads", "UpdateLead", "ExportPersonalData",
               "ErasePersonalData", "RecordConversion", "GetFunnel", "SetShopLogo",
               "GetShopLogo", "DeleteShopLogo"}
ADDED_METHODS = {
    "carpet.credit.v1.NotificationService": NOTIFICATIONS | {"GetOrganizationControls",
                                                             "PublishRenderEvents"},
    "carpet.credit.v1.AccountService": {"GetAccountTotals"} | SIGN_IN_ADMIN,
    "carpet.credit.v1.AuditService": {"RecordDenial"} | CONSOLE["carpet.credit.v1.AuditService"],
    "carpet.credit.v1.CreditService": CONSOLE["carpet.credit.v1.CreditService"]
                                      | {"GrantCredits"},
    "carpet.credit.v1.AuthService": {"Login", "Refresh", "Logout", "ChangePassword",
                                     "ListRevokedSessions"},
    "carpet.render.v1.RenderService": {"GetRenderTotals"}
                                      | CONSOLE["carpet.render.v1.RenderService"]
                                      | {"UpdateCarpet", "ArchiveCarpet", "RestoreCarpet",
                                         "ImportCarpets", "GetCarpetImage",
                                         "GetCarpetImport"}
                                      | PUBLISHABLE_KEYS | PUBLIC_RENDER_API | SALES_PUBLIC
                                      | SALES_ADMIN,
    "carpet.admin.v1.AdminService": {"GetRenderImage", "CreateOrganization", "Login",
                                     "Refresh", "Logout", "ChangePassword"} | SIGN_IN_ADMIN
                                    | CONSOLE["carpet.admin.v1.AdminService"] | NOTIFICATIONS
                                    | {"GrantCredits", "GetBalance", "ExportCarpets",
                                       "GetCarpetThumbnail", "GetCarpetImport"}
                                    | CATALOGUE | PUBLISHABLE_KEYS | SALES_ADMIN
                                    | {"ExportLeads", "ExportFunnel"},
}


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_generated_modules_import_and_name_their_services(module_name):
    messages = importlib.import_module(module_name + "_pb2")
    importlib.import_module(module_name + "_pb2_grpc")
    services = {service.full_name: service
                for service in messages.DESCRIPTOR.services_by_name.values()}
    assert sorted(services) == MODULES[module_name]
    for name, service in services.items():
        assert {method.name for method in service.methods} == (
            PUBLIC_METHODS.get(name, set()) | ADDED_METHODS.get(name, set()))


def test_public_fields_exist():
    from protos.carpet.admin.v1 import admin_pb2
    from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2
    from protos.carpet.render.v1 import render_pb2

    expected = {
        account_pb2.Organization: "id name balance held created_at",
        account_pb2.User: "id organization_id organization_name name email role credit created_at",
        credit_pb2.Balance: "organization_id balance held available",
        credit_pb2.CreditLog: ("id organization_id user_id delta balance_after kind reason "
                               "reference actor created_at"),
        credit_pb2.Hold: "id organization_id amount state reference expires_at",
        audit_pb2.AuditLog: ("id actor role action organization_id target details outcome peer "
                             "request_id created_at"),
        render_pb2.Carpet: "id sku name width_cm length_cm material created_at",
        render_pb2.RenderJob: ("id organization_id user_id carpet_id mode status error_text "
                               "credits_charged credit_log_id created_at started_at finished_at"),
        admin_pb2.Overview: ("total_users total_renders total_remaining_credit total_held "
                             "organizations renders_by_status"),
        account_pb2.CreateOrganizationRequest: "name initial_credits idempotency_key",
        account_pb2.CreateUserRequest: "organization_id name email role idempotency_key",
        credit_pb2.AdjustCreditsRequest: "organization_id delta reason idempotency_key",
        credit_pb2.AdjustCreditsResponse: "log balance",
        credit_pb2.ReserveCreditsRequest: "organization_id amount reference ttl_seconds user_id",
        credit_pb2.CaptureHoldRequest: "hold_id",
        credit_pb2.ReleaseHoldRequest: "hold_id reason",
        credit_pb2.CaptureHoldResponse: "hold log",
        render_pb2.CreateCarpetRequest: "sku name width_cm length_cm material image",
        render_pb2.SubmitRenderRequest: ("organization_id user_id carpet_id mode room_image "
                                         "idempotency_key"),
    }
    for message, fields in expected.items():
        declared = set(message.DESCRIPTOR.fields_by_name)
        missing = set(fields.split()) - declared
        assert not missing, f"{message.DESCRIPTOR.full_name} lacks {missing}"


def test_enums_start_unspecified():
    from protos.carpet.credit.v1 import account_pb2, credit_pb2
    from protos.carpet.render.v1 import render_pb2

    assert account_pb2.Role.Name(0) == "ROLE_UNSPECIFIED"
    assert credit_pb2.HoldState.Name(0) == "HOLD_STATE_UNSPECIFIED"
    assert render_pb2.RenderStatus.Name(0) == "RENDER_STATUS_UNSPECIFIED"
    assert [render_pb2.RenderStatus.Name(i) for i in range(1, 5)] == [
        "RENDER_STATUS_QUEUED", "RENDER_STATUS_PROCESSING", "RENDER_STATUS_SUCCESS",
        "RENDER_STATUS_FAILED"]
    assert [credit_pb2.HoldState.Name(i) for i in range(1, 5)] == [
        "HOLD_STATE_HELD", "HOLD_STATE_CAPTURED", "HOLD_STATE_RELEASED", "HOLD_STATE_EXPIRED"]
