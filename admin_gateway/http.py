"""The gateway's HTTP JSON API (docs/architecture.md, "Admin gateway") on ADMIN_HTTP_ADDR.

Each request becomes a call to the gateway's own AdminService over a private Unix socket, so
HTTP and gRPC share one pipeline: the same credentials (`x-admin-token` or
`Authorization: Bearer`), role guard, rate limit, audit and error mapping. The browser's address
travels in x-forwarded-for, which the gateway believes only from that socket.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import urllib.parse
from http import HTTPStatus

import grpc
import waitress
import waitress.channel
import waitress.wasyncore
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from admin_gateway import imports
from admin_gateway.exports import EXPORTS, csv_lines, csv_style
from admin_gateway.openapi import (
    build_document,
    export_path_item,
    import_path_item,
    picture_path_item,
)
from admin_gateway.public_api import PublicApi
from admin_gateway.responses import (
    Response,
    error_response,
    json_response,
    logo_chunk,
    picture_response,
    rpc_error_response,
)
from carpet_common import tracing
from carpet_common.auth import Authenticator
from carpet_common.calls import client_ip, is_trusted, trusted_networks
from carpet_common.errors import Unauthenticated
from carpet_common.ratelimit import client_key
from carpet_common.server import PLAINTEXT, ChannelSecurity, service_channel
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import (
    account_pb2,
    audit_pb2,
    auth_pb2,
    credit_pb2,
    notification_pb2,
)
from protos.carpet.render.v1 import render_pb2

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
IMPORT_PATH = "/admin/carpets/import"  # multipart, read by admin_gateway.imports
# Routes whose body carries a picture (a carpet's: 10 MB at most, base64 in JSON: 4/3 of it).
PICTURE_UPLOADS = {("POST", "/admin/carpets"), ("PATCH", "/admin/carpets/{id}"),
                   ("PUT", "/admin/organizations/{id}/logo")}
MAX_PICTURE_BODY_BYTES = 14 * 1024 * 1024
CALL_TIMEOUT_S = 15.0
FORWARDED_HEADERS = ("x-admin-token", "authorization", "x-request-id")
CREDENTIAL_HEADERS = {"x-admin-token": "malformed", "authorization": "Bearer malformed"}
# gRPC metadata values must be printable ASCII; HTTP headers may carry any byte.
METADATA_VALUE = re.compile(r"[\x20-\x7e]*")

# (HTTP method, path) -> (AdminService method, request type, response type)
ROUTES = {
    ("GET", "/admin/overview"): ("GetOverview", admin_pb2.GetOverviewRequest, admin_pb2.Overview),
    ("GET", "/admin/users"): ("ListUsers", account_pb2.ListUsersRequest,
                              account_pb2.ListUsersResponse),
    ("POST", "/admin/users"): ("CreateUser", account_pb2.CreateUserRequest, account_pb2.User),
    ("GET", "/admin/renders"): ("ListRenders", render_pb2.ListRendersRequest,
                                admin_pb2.ListRendersResponse),
    ("POST", "/admin/credits/adjust"): ("AdjustCredits", credit_pb2.AdjustCreditsRequest,
                                        credit_pb2.AdjustCreditsResponse),
    ("POST", "/admin/credits/grants"): ("GrantCredits", credit_pb2.GrantCreditsRequest,
                                        credit_pb2.GrantCreditsResponse),
    ("POST", "/admin/organizations"): ("CreateOrganization",
                                       account_pb2.CreateOrganizationRequest,
                                       account_pb2.Organization),
    ("GET", "/admin/organizations"): ("ListOrganizations", account_pb2.ListOrganizationsRequest,
                                      account_pb2.ListOrganizationsResponse),
    ("GET", "/admin/credit-logs"): ("ListCreditLogs", credit_pb2.ListCreditLogsRequest,
                                    credit_pb2.ListCreditLogsResponse),
    ("GET", "/admin/audit"): ("ListAuditLogs", audit_pb2.ListAuditLogsRequest,
                              audit_pb2.ListAuditLogsResponse),
    ("POST", "/admin/users/{id}/password"): ("SetUserPassword",
                                             account_pb2.SetUserPasswordRequest, account_pb2.User),
    ("POST", "/admin/users/{id}/deactivate"): ("DeactivateUser", account_pb2.SetUserActiveRequest,
                                               account_pb2.User),
    ("POST", "/admin/users/{id}/activate"): ("ActivateUser", account_pb2.SetUserActiveRequest,
                                             account_pb2.User),
    ("GET", "/admin/usage"): ("GetUsage", admin_pb2.GetUsageRequest, admin_pb2.Usage),
    ("POST", "/admin/renders/{id}/cancel"): ("CancelRender", render_pb2.CancelRenderRequest,
                                             render_pb2.RenderJob),
    ("GET", "/admin/audit/verify"): ("VerifyAuditChain", audit_pb2.VerifyAuditChainRequest,
                                     audit_pb2.AuditChainCheck),
    ("GET", "/admin/console-settings"): ("GetConsoleSettings",
                                         admin_pb2.GetConsoleSettingsRequest,
                                         admin_pb2.ConsoleSettings),
    # Notifications, alerts and spend controls (`docs/webhooks.md`).
    ("POST", "/admin/webhooks"): ("CreateWebhookEndpoint",
                                  notification_pb2.CreateWebhookEndpointRequest,
                                  notification_pb2.CreatedWebhookEndpoint),
    ("GET", "/admin/webhooks"): ("ListWebhookEndpoints",
                                 notification_pb2.ListWebhookEndpointsRequest,
                                 notification_pb2.ListWebhookEndpointsResponse),
    ("DELETE", "/admin/webhooks/{id}"): ("DeleteWebhookEndpoint",
                                         notification_pb2.DeleteWebhookEndpointRequest,
                                         notification_pb2.WebhookEndpoint),
    ("GET", "/admin/webhooks/{id}/deliveries"): ("ListWebhookDeliveries",
                                                 notification_pb2.ListWebhookDeliveriesRequest,
                                                 notification_pb2.ListWebhookDeliveriesResponse),
    ("POST", "/admin/webhooks/deliveries/{id}/retry"): (
        "RetryWebhookDelivery", notification_pb2.RetryWebhookDeliveryRequest,
        notification_pb2.WebhookDelivery),
    ("PUT", "/admin/organizations/{id}/alerts"): ("SetLowBalanceAlert",
                                                  notification_pb2.SetLowBalanceAlertRequest,
                                                  notification_pb2.OrganizationControls),
    ("PUT", "/admin/organizations/{id}/limits"): ("SetSpendLimits",
                                                  notification_pb2.SetSpendLimitsRequest,
                                                  notification_pb2.OrganizationControls),
    ("POST", "/admin/organizations/{id}/suspend"): ("SuspendOrganization",
                                                    notification_pb2.SuspendOrganizationRequest,
                                                    notification_pb2.OrganizationControls),
    ("POST", "/admin/organizations/{id}/resume"): ("ResumeOrganization",
                                                   notification_pb2.ResumeOrganizationRequest,
                                                   notification_pb2.OrganizationControls),
    ("GET", "/admin/balance"): ("GetBalance", credit_pb2.GetBalanceRequest, credit_pb2.Balance),
    # The carpet catalogues (`docs/catalogue.md`).
    ("GET", "/admin/carpets"): ("ListCarpets", render_pb2.ListCarpetsRequest,
                                render_pb2.ListCarpetsResponse),
    ("POST", "/admin/carpets"): ("CreateCarpet", render_pb2.CreateCarpetRequest,
                                 render_pb2.Carpet),
    ("GET", "/admin/carpets/{id}"): ("GetCarpet", render_pb2.GetCarpetRequest,
                                     render_pb2.Carpet),
    ("PATCH", "/admin/carpets/{id}"): ("UpdateCarpet", render_pb2.UpdateCarpetRequest,
                                       render_pb2.Carpet),
    ("POST", "/admin/carpets/{id}/archive"): ("ArchiveCarpet", render_pb2.ArchiveCarpetRequest,
                                              render_pb2.Carpet),
    ("POST", "/admin/carpets/{id}/restore"): ("RestoreCarpet", render_pb2.RestoreCarpetRequest,
                                              render_pb2.Carpet),
    ("GET", "/admin/carpets/import-report"): ("GetCarpetImport",
                                              render_pb2.GetCarpetImportRequest,
                                              render_pb2.CarpetImportReport),
    # Publishable keys for the widget (`docs/widget.md`).
    ("POST", "/admin/publishable-keys"): ("CreatePublishableKey",
                                          render_pb2.CreatePublishableKeyRequest,
                                          render_pb2.PublishableKey),
    ("GET", "/admin/publishable-keys"): ("ListPublishableKeys",
                                         render_pb2.ListPublishableKeysRequest,
                                         render_pb2.ListPublishableKeysResponse),
    ("PATCH", "/admin/publishable-keys/{id}"): ("UpdatePublishableKey",
                                                render_pb2.UpdatePublishableKeyRequest,
                                                render_pb2.PublishableKey),
    ("POST", "/admin/publishable-keys/{id}/rotate"): ("RotatePublishableKey",
                                                      render_pb2.RotatePublishableKeyRequest,
                                                      render_pb2.PublishableKey),
    ("POST", "/admin/publishable-keys/{id}/revoke"): ("RevokePublishableKey",
                                                      render_pb2.RevokePublishableKeyRequest,
                                                      render_pb2.PublishableKey),
    # Share links, quote requests and the funnel (`docs/shares-and-leads.md`).
    ("GET", "/admin/shares"): ("ListShares", render_pb2.ListSharesRequest,
                               render_pb2.ListSharesResponse),
    ("POST", "/admin/shares/{id}/revoke"): ("RevokeShare", render_pb2.RevokeShareRequest,
                                            render_pb2.Share),
    ("GET", "/admin/leads"): ("ListLeads", render_pb2.ListLeadsRequest,
                              render_pb2.ListLeadsResponse),
    ("PATCH", "/admin/leads/{id}"): ("UpdateLead", render_pb2.UpdateLeadRequest,
                                     render_pb2.Lead),
    ("POST", "/admin/privacy/export"): ("ExportPersonalData", render_pb2.PersonalDataRequest,
                                        render_pb2.PersonalData),
    ("POST", "/admin/privacy/erase"): ("ErasePersonalData", render_pb2.PersonalDataRequest,
                                       render_pb2.ErasePersonalDataResponse),
    ("POST", "/admin/conversions"): ("RecordConversion", render_pb2.RecordConversionRequest,
                                     render_pb2.Conversion),
    ("GET", "/admin/analytics"): ("GetFunnel", render_pb2.GetFunnelRequest, render_pb2.Funnel),
    ("PUT", "/admin/organizations/{id}/logo"): ("SetShopLogo", render_pb2.SetShopLogoRequest,
                                                render_pb2.ShopLogo),
    ("DELETE", "/admin/organizations/{id}/logo"): ("DeleteShopLogo",
                                                   render_pb2.ShopLogoRequest,
                                                   render_pb2.ShopLogo),
    ("GET", "/admin/organizations/controls"): ("ListOrganizationControls",
                                               notification_pb2.ListOrganizationControlsRequest,
                                               notification_pb2.ListOrganizationControlsResponse),
    # Sign-in (`docs/security.md`): no credential header but the password or refresh token itself.
    ("POST", "/auth/login"): ("Login", auth_pb2.LoginRequest, auth_pb2.Session),
    ("POST", "/auth/refresh"): ("Refresh", auth_pb2.RefreshRequest, auth_pb2.Session),
    ("POST", "/auth/logout"): ("Logout", auth_pb2.LogoutRequest, auth_pb2.LogoutResponse),
    ("POST", "/auth/password"): ("ChangePassword", auth_pb2.ChangePasswordRequest,
                                 auth_pb2.ChangePasswordResponse),
}
PUBLIC_ROUTES = {"/auth/login", "/auth/refresh", "/auth/logout"}
# Routes with an id in the path: the template -> a pattern capturing it.
TEMPLATED_ROUTES = {path: re.compile(re.escape(path).replace(r"\{id\}", r"(\d{1,18})"))
                    for _, path in ROUTES if "{id}" in path}
# Pictures of a render: the result, its thumbnail, the room it was submitted with.
CARPET_THUMBNAIL_PATH = re.compile(r"/admin/carpets/(\d{1,18})/thumbnail")
LOGO_PATH = re.compile(r"/admin/organizations/(\d{1,18})/logo")  # GET: the picture itself
PICTURE_PATH = re.compile(r"/admin/renders/(\d{1,18})/(image|thumbnail|room)")
PICTURE_METHODS = {"image": "GetRenderImage", "thumbnail": "GetRenderThumbnail",
                   "room": "GetRenderRoom"}
EXPORT_TIMEOUT_S = 3600.0  # a million rows take well under a minute; a slow reader more
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript",
                "api.js": "text/javascript", "i18n.js": "text/javascript",
                "charts.js": "text/javascript", "ui.js": "text/javascript",
                "controls.js": "text/javascript", "catalogue.js": "text/javascript",
                "keys.js": "text/javascript", "sales.js": "text/javascript",
                "style.css": "text/css",
                "i18n/en.json": "application/json", "i18n/tr.json": "application/json"}
PAGE_HEADERS = {  # the admin page loads nothing from elsewhere and runs no inline script
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
}
HTTP_REQUESTS = Counter("carpet_http_requests_total", "HTTP requests handled",
                        ["route", "status"])
HTTP_SECONDS = Histogram("carpet_http_duration_seconds", "HTTP request latency",
                         ["route", "status"])


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


class BadRequest(ValueError):
    pass


def _carries_secret(request_type) -> bool:
    return any("password" in field.name or "token" in field.name
               for field in request_type.DESCRIPTOR.fields)


def _is_bool(request_type, name: str) -> bool:
    field = request_type.DESCRIPTOR.fields_by_name.get(name) or next(
        (f for f in request_type.DESCRIPTOR.fields if f.json_name == name), None)
    return field is not None and field.type == field.TYPE_BOOL


def _query_bool(value: str) -> bool:
    """A yes/no query parameter (`includeArchived=true`): true or 1, false or 0."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f"{value[:20]!r} is not true or false")


def parse_request(request_type, method: str, query: str, body: bytes):
    """Query parameters (GET) or a JSON body (POST) -> the request message; names may be the
    proto field names or their JSON (lowerCamelCase) names. The parser's message may quote a
    value, so a body carrying a password or token gets a fixed one instead."""
    try:
        if method == "GET":
            fields = {key: values[-1] for key, values in
                      urllib.parse.parse_qs(query, keep_blank_values=False).items()}
            fields = {key: _query_bool(value) if _is_bool(request_type, key) else value
                      for key, value in fields.items()}
        else:
            fields = json.loads(body or b"{}")
            if not isinstance(fields, dict):
                raise BadRequest("the body must be a JSON object")
        return json_format.ParseDict(fields, request_type())
    except (json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError) as error:
        if _carries_secret(request_type):
            fields = ", ".join(field.json_name for field in request_type.DESCRIPTOR.fields)
            raise BadRequest(f"the body must be a JSON object with string fields ({fields})"
                             ) from None
        raise BadRequest(str(error).splitlines()[0][:300]) from None


def _mask_from_body(request, body: bytes) -> None:
    """PATCH changes the fields its body holds: without an explicit `updateMask`, the mask
    names them (JSON or proto names; `id` comes from the path)."""
    if request.update_mask.paths:
        return
    fields = request.DESCRIPTOR.fields_by_name
    by_json = {field.json_name: name for name, field in fields.items()}
    named = [by_json.get(key, key) for key in json.loads(body or b"{}")]
    request.update_mask.paths.extend(sorted(name for name in named
                                            if name in fields and name != "id"))


# waitress's limits for this server: bounded threads and connections, small requests (the API
# takes JSON bodies of at most MAX_BODY_BYTES), idle connections closed.
HTTP_LIMITS = {
    "threads": 8,  # each waits on the gateway's own gRPC calls
    "connection_limit": 1000,  # open connections at once; more wait to be accepted
    "channel_timeout": 30,  # seconds an idle (keep-alive) connection is kept
    "cleanup_interval": 2,  # how often both timeouts are checked
    "max_request_header_size": 16 * 1024,
    # Above a route's limit (MAX_BODY_BYTES, or MAX_PICTURE_BODY_BYTES for a picture upload)
    # the API answers its own JSON 413 without reading the body; far above it waitress refuses
    # before reading the body at all.
    "max_request_body_size": imports.MAX_UPLOAD_BYTES + MAX_BODY_BYTES,
    # X-Forwarded-For is judged by this module (TRUSTED_PROXIES), not dropped by waitress.
    "clear_untrusted_proxy_headers": False,
}
SHUTDOWN_GRACE_S = 5.0
# A request must arrive whole (headers and body) within this many seconds of its first byte:
# waitress's own timeout only closes idle connections, and a client trickling a byte a second
# is never idle. It holds no thread meanwhile, but it holds one of the connections.
REQUEST_READ_TIMEOUT_S = 20.0
CONNECTIONS_PER_ADDRESS = 100  # a tenth of HTTP_LIMITS' connection_limit


class _TimedChannel(waitress.channel.HTTPChannel):
    """Remembers when the request it is reading began."""

    reading_since: float | None = None

    def received(self, data):
        if data and self.request is None and self.reading_since is None:
            self.reading_since = time.monotonic()
        result = super().received(data)
        if self.request is None:  # nothing half-read: the request (if any) is complete
            self.reading_since = None
        return result


def _limited_channels(server, trusted_proxies) -> None:
    """At most CONNECTIONS_PER_ADDRESS open connections per client address (an IPv6 one by its
    /64), well below the global limit, so one address trickling bytes on a thousand
    connections cannot keep everyone else waiting to be accepted. A trusted proxy carries many
    clients and is not capped. A connection over the cap is closed at once."""
    trusted = trusted_networks(tuple(trusted_proxies))

    def channel(server, conn, addr, adj, map=None):
        address = addr[0] if isinstance(addr, tuple) else str(addr)
        if isinstance(addr, tuple) and not is_trusted(address, trusted):
            key = client_key(address)
            open_here = sum(1 for other in list(server.active_channels.values())
                            if isinstance(other.addr, tuple)
                            and client_key(other.addr[0]) == key)
            if open_here >= CONNECTIONS_PER_ADDRESS:
                conn.close()
                return None
        return _TimedChannel(server, conn, addr, adj, map=map)

    server.channel_class = channel


def _with_read_timeout(server) -> None:
    """Also close connections whose request has been arriving for too long."""
    close_idle = server.maintenance

    def maintenance(now):
        close_idle(now)
        cutoff = time.monotonic() - REQUEST_READ_TIMEOUT_S
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "reading_since", None)
            if started is not None and started < cutoff:
                channel.will_close = True

    server.maintenance = maintenance


class AdminHttpApp:
    """The WSGI application: routes, the call to AdminService, the JSON answer."""

    def __init__(self, grpc_target: str, metrics_reader: Authenticator, trusted_proxies=(),
                 backends: dict[str, str] | None = None,
                 security: ChannelSecurity = PLAINTEXT, public: PublicApi | None = None):
        self._channel = tracing.traced_channel(grpc.insecure_channel(grpc_target))
        self._public = public
        self._metrics_reader = metrics_reader
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self._trusted = tuple(trusted_proxies)
        # /healthz is ready only when every backend answers its health check.
        self._backend_channels = {name: service_channel(target, security)
                                  for name, target in (backends or {}).items()}
        extra = {f"/admin/renders/{{id}}/{kind}": picture_path_item(method)
                 for kind, method in PICTURE_METHODS.items()}
        extra["/admin/carpets/{id}/thumbnail"] = picture_path_item("GetCarpetThumbnail")
        extra["/admin/organizations/{id}/logo"] = picture_path_item("GetShopLogo")
        extra.update({path: export_path_item(export.rpc, export.request_type)
                      for path, export in EXPORTS.items()})
        extra[IMPORT_PATH] = import_path_item("ImportCarpets", render_pb2.CarpetImportReport)
        self._openapi = json.dumps(build_document(ROUTES, extra, PUBLIC_ROUTES)).encode()

    def close(self) -> None:
        self._channel.close()
        for channel in self._backend_channels.values():
            channel.close()

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        with tracing.http_request(environ) as span:
            try:
                route, response = self._route(environ, method, path)
            except Exception:  # noqa: BLE001 - the caller gets a generic 500, the log the rest
                logger.exception("HTTP %s %s failed", method, _escaped(path))
                route, response = "error", error_response(500, "INTERNAL", "internal error")
            tracing.name_http(span, method, route, response.status)
            # Paths and codes only: headers (credentials) are never logged; control
            # characters in a path are escaped, so it cannot forge log lines.
            logger.info("%s %s %s %d", environ.get("REMOTE_ADDR", "-"), method, _escaped(path),
                        response.status)
        HTTP_REQUESTS.labels(route, str(response.status)).inc()
        HTTP_SECONDS.labels(route, str(response.status)).observe(time.perf_counter() - started)
        headers = [("Content-Type", response.content_type),
                   ("X-Content-Type-Options", "nosniff"),  # on every response
                   *response.headers.items()]
        if isinstance(response.body, bytes):
            headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [response.body] if isinstance(response.body, bytes) else response.body

    def _route(self, environ, method: str, path: str) -> tuple[str, Response]:
        """Serve the request; returns (route label, response). Labels come from a fixed set,
        never from the request, so /metrics cannot grow with bogus paths."""
        if self._public is not None and self._public.serves(path):
            return self._public.handle(environ, method, path)
        if method == "GET":
            if path == "/healthz":
                return path, self._healthz()
            if path == "/metrics":
                return path, self._metrics(environ)
            if path == "/admin/openapi.json":
                return path, Response(200, self._openapi, "application/json", {})
            if path in ("/admin", "/admin/"):
                return "/admin/", _static("index.html")
            if path.startswith("/admin/static/"):
                return "/admin/static", _static(path[len("/admin/static/"):])
            carpet = CARPET_THUMBNAIL_PATH.fullmatch(path)
            if carpet:
                return ("/admin/carpets/{id}/thumbnail", self._picture(
                    environ, "GetCarpetThumbnail",
                    render_pb2.GetCarpetRequest(id=int(carpet.group(1)))))
            logo = LOGO_PATH.fullmatch(path)
            if logo:
                return "/admin/organizations/{id}/logo", self._logo(environ, int(logo.group(1)))
            picture = PICTURE_PATH.fullmatch(path)
            if picture:
                kind = picture.group(2)
                return (f"/admin/renders/{{id}}/{kind}",
                        self._picture(environ, PICTURE_METHODS[kind],
                                      render_pb2.GetRenderOutputRequest(id=int(picture.group(1)))))
            if path in EXPORTS:
                return path, self._export(environ, EXPORTS[path])
        if method == "POST" and path == IMPORT_PATH:
            return path, self._import(environ)
        route, path_id = path.rstrip("/"), None
        for template, pattern in TEMPLATED_ROUTES.items():
            match = pattern.fullmatch(route)
            if match:
                route, path_id = template, int(match.group(1))
        key = (method, route)
        if key not in ROUTES:
            if any(route_path == route for _, route_path in ROUTES):  # a known route: a label
                return route, error_response(405, "METHOD_NOT_ALLOWED", "wrong method")
            return "unknown", error_response(404, "NOT_FOUND", "no such endpoint")
        response = self._call(environ, method, *ROUTES[key][:2], path_id=path_id,
                              max_body=MAX_PICTURE_BODY_BYTES if key in PICTURE_UPLOADS
                              else MAX_BODY_BYTES)
        if route.startswith("/auth/"):
            response.headers["Cache-Control"] = "no-store"  # tokens: never kept by a cache
        return route, response

    def _metrics(self, environ) -> Response:
        """Prometheus metrics, on this public port only for an ADMIN or a service identity (a
        scraper's `x-service-token`): they name every credential and its use. METRICS_ADDR
        serves them on a private address instead."""
        try:
            identity = self._metrics_reader.identify(_credentials(environ))
        except Unauthenticated as error:
            return error_response(401, "UNAUTHENTICATED", error.message)
        if identity.service is None and not identity.person.is_admin:
            return error_response(403, "PERMISSION_DENIED", "metrics are for ADMIN or a service")
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST, {"Cache-Control": "no-store"})

    def _metadata(self, environ) -> list[tuple[str, str]]:
        # Every X-Forwarded-For line counts: the server joins repeated headers with commas.
        browser = client_ip(environ.get("REMOTE_ADDR", ""),
                            environ.get("HTTP_X_FORWARDED_FOR", ""), self._trusted)
        metadata = []
        for key in FORWARDED_HEADERS:
            value = environ.get("HTTP_" + key.upper().replace("-", "_"))
            if not value:
                continue
            if not METADATA_VALUE.fullmatch(value):
                # A credential gRPC cannot carry is still passed on as one that never
                # authenticates, so the refusal is audited and rate-limited like any other;
                # an unreadable request id is dropped (the gateway makes one).
                if key not in CREDENTIAL_HEADERS:
                    continue
                value = CREDENTIAL_HEADERS[key]
            metadata.append((key, value))
        metadata.append(("x-forwarded-for", browser))
        return metadata

    def _call(self, environ, method: str, name: str, request_type,
              path_id: int | None = None, max_body: int = MAX_BODY_BYTES) -> Response:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "INVALID_ARGUMENT", "bad Content-Length")
        if not 0 <= length <= max_body:
            return error_response(413, "TOO_LARGE",
                                  f"request body too large (at most {max_body} bytes)")
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            request = parse_request(request_type, method, environ.get("QUERY_STRING", ""), body)
            if method == "PATCH":
                _mask_from_body(request, body)
        except BadRequest as error:
            return error_response(400, "INVALID_ARGUMENT", str(error))
        if path_id is not None:
            request.id = path_id  # the path names the resource, whatever the body says
        try:
            response = getattr(self._admin, name)(request, metadata=self._metadata(environ),
                                                  timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        # Zero values are written out (`"held": "0"`), so a client never has to guess a
        # missing field's meaning.
        return json_response(200, json_format.MessageToDict(
            response, always_print_fields_with_no_presence=True))

    def _import(self, environ) -> Response:
        """A spreadsheet (and its pictures) read here, then one ImportCarpets call
        (admin_gateway.imports). The file is read only for a person: any other caller's
        call goes on empty, to be refused, audited and rate-limited like every refusal."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "INVALID_ARGUMENT", "bad Content-Length")
        if not 0 <= length <= imports.MAX_UPLOAD_BYTES:
            return error_response(413, "TOO_LARGE", f"an import is at most "
                          f"{imports.MAX_UPLOAD_BYTES // 2**20} MiB with its pictures: "
                          f"import the catalogue in parts")
        try:
            person = self._metrics_reader.identify(_credentials(environ)).person is not None
        except Unauthenticated:
            person = False
        request, rows = render_pb2.ImportCarpetsRequest(), []
        if person:
            body = environ["wsgi.input"].read(length) if length else b""
            try:
                upload = imports.read_upload(environ.get("CONTENT_TYPE", ""), body)
                rows = imports.read_rows(upload)
                request = render_pb2.ImportCarpetsRequest(
                    organization_id=upload.organization_id, dry_run=upload.dry_run,
                    file_name=upload.file_name[:200],
                    carpets=imports.designs(rows, imports.Pictures(upload.pictures)))
            except imports.ImportRefused as refused:
                return error_response(400, "INVALID_ARGUMENT", str(refused))
        try:
            report = self._admin.ImportCarpets(request, metadata=self._metadata(environ),
                                               timeout=EXPORT_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        return json_response(200, json_format.MessageToDict(imports.merged_report(rows, report),
                                                    always_print_fields_with_no_presence=True))

    def _picture(self, environ, method: str, request) -> Response:
        return picture_response(lambda: getattr(self._admin, method)(
            request, metadata=self._metadata(environ), timeout=CALL_TIMEOUT_S))

    def _logo(self, environ, organization_id: int) -> Response:
        return picture_response(lambda: [logo_chunk(self._admin.GetShopLogo(
            render_pb2.ShopLogoRequest(id=organization_id), metadata=self._metadata(environ),
            timeout=CALL_TIMEOUT_S))], cache="no-cache")

    def _export(self, environ, export) -> Response:
        """The CSV, streamed: the first page is awaited here so that a refusal is still a JSON
        error with its status; a failure after that cuts the response off (an incomplete
        chunked body), so a truncated file is never mistaken for a whole one."""
        try:
            style, query = csv_style(environ.get("QUERY_STRING", ""))
            request = parse_request(export.request_type, "GET", query, b"")
        except (BadRequest, ValueError) as error:
            return error_response(400, "INVALID_ARGUMENT", str(error))
        pages = getattr(self._admin, export.rpc)(request, metadata=self._metadata(environ),
                                                 timeout=EXPORT_TIMEOUT_S)
        try:
            first = next(pages, None)
        except grpc.RpcError as error:
            return rpc_error_response(error)

        def all_pages():
            if first is not None:
                yield first
            yield from pages

        name = export.rpc.removeprefix("Export").lower()
        return Response(200, csv_lines(export, all_pages(), style), "text/csv; charset=utf-8",
                        {"Content-Disposition": f'attachment; filename="{name}.csv"',
                         "Cache-Control": "no-store"})

    def _healthz(self) -> Response:
        down = []
        for name, channel in self._backend_channels.items():
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    down.append(name)
            except grpc.RpcError:
                down.append(name)
        if down:
            return json_response(503, {"status": "unavailable", "down": sorted(down)})
        return json_response(200, {"status": "ok"})


def _static(name: str) -> Response:
    if name not in STATIC_FILES:  # a fixed list: no path ever reaches the file system
        return error_response(404, "NOT_FOUND", "no such file")
    with open(os.path.join(STATIC_DIR, name), "rb") as page:
        return Response(200, page.read(), STATIC_FILES[name],
                        {**PAGE_HEADERS, "Cache-Control": "no-cache"})


def _credentials(environ) -> dict[str, str]:
    """The credential headers of a request, by their lower-case names."""
    return {key: environ["HTTP_" + key.upper().replace("-", "_")]
            for key in ("x-admin-token", "authorization", "x-service-token")
            if environ.get("HTTP_" + key.upper().replace("-", "_"))}


class AdminHttpServer:
    """AdminHttpApp served by waitress on its own thread."""

    def __init__(self, address: str, grpc_target: str, metrics_reader: Authenticator,
                 trusted_proxies=(), backends: dict[str, str] | None = None,
                 security: ChannelSecurity = PLAINTEXT, public: PublicApi | None = None):
        host, _, port = address.rpartition(":")
        self._app = AdminHttpApp(grpc_target, metrics_reader, trusted_proxies, backends,
                                 security, public)
        try:
            self._server = waitress.create_server(self._app, host=host.strip("[]"),
                                                  port=int(port), ident="carpet-admin",
                                                  **HTTP_LIMITS)
        except OSError as error:
            self._app.close()
            raise OSError(error.errno, f"could not bind HTTP address {address}: "
                                       f"{error.strerror}") from None
        _limited_channels(self._server, trusted_proxies)
        _with_read_timeout(self._server)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="admin-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.effective_port

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError:
            # stop() closes the sockets under the event loop's select: expected then only.
            if not self._stopping:
                raise

    def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let requests in flight finish (up to `grace`), then close."""
        self._stopping = True
        self._server.accepting = False
        self._server.task_dispatcher.shutdown(cancel_pending=False, timeout=grace)
        self._server.close()
        waitress.wasyncore.close_all(self._server._map)  # ends the server's loop
        self._thread.join(grace)
        self._app.close()
