"""The gateway's HTTP JSON API (docs/architecture.md, "Admin gateway") on ADMIN_HTTP_ADDR.

Each request becomes a call to the gateway's own AdminService over a private Unix socket, so
HTTP and gRPC share one pipeline: the same credentials (`x-admin-token` or
`Authorization: Bearer`), role guard, rate limit, audit and error mapping. The browser's address
travels in x-forwarded-for, which the gateway believes only from that socket.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from admin_gateway import imports
from admin_gateway.exports import EXPORTS, csv_lines, csv_style
from admin_gateway.openapi import build_document
from admin_gateway.public_api import PublicApi
from admin_gateway.responses import (
    Response,
    error_response,
    json_response,
    logo_chunk,
    picture_response,
    rpc_error_response,
)
from admin_gateway.router import Router
from admin_gateway.surface import OPERATIONS, Operation
from carpet_common import tracing
from carpet_common.auth import Authenticator
from carpet_common.calls import client_ip
from carpet_common.errors import Unauthenticated
from carpet_common.server import PLAINTEXT, ChannelSecurity, service_channel
from protos.carpet.admin.v1 import admin_pb2_grpc
from protos.carpet.render.v1 import render_pb2

logger = logging.getLogger(__name__)

# Serves one request: (WSGI environ, the path's variables) -> the response.
Handler = Callable[[dict, dict[str, str]], Response]

MAX_BODY_BYTES = 64 * 1024
# A route whose request carries a picture (a carpet's or a logo: 10 MB at most, base64 in
# JSON: 4/3 of it) reads a larger body.
MAX_PICTURE_BODY_BYTES = 14 * 1024 * 1024
CALL_TIMEOUT_S = 15.0
FORWARDED_HEADERS = ("x-admin-token", "authorization", "x-request-id")
CREDENTIAL_HEADERS = {"x-admin-token": "malformed", "authorization": "Bearer malformed"}
# gRPC metadata values must be printable ASCII; HTTP headers may carry any byte.
METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
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


def parse_request(request_type, from_body: bool, query: str, body: bytes):
    """A JSON body (`from_body`) or query parameters -> the request message; names may be the
    proto field names or their JSON (lowerCamelCase) names. The parser's message may quote a
    value, so a body carrying a password or token gets a fixed one instead."""
    try:
        if not from_body:
            fields: dict[str, object] = {
                key: _query_bool(values[-1]) if _is_bool(request_type, key) else values[-1]
                for key, values in urllib.parse.parse_qs(query, keep_blank_values=False).items()}
        else:
            fields = json.loads(body or b"{}")
            if not isinstance(fields, dict):
                raise BadRequest("the body must be a JSON object")
        return json_format.ParseDict(fields, request_type())
    except (json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError) as error:
        if _carries_secret(request_type):
            names = ", ".join(field.json_name for field in request_type.DESCRIPTOR.fields)
            raise BadRequest(f"the body must be a JSON object with string fields ({names})"
                             ) from None
        raise BadRequest(str(error).splitlines()[0][:300]) from None


def _carries_picture(request_type) -> bool:
    return any(field.type == field.TYPE_BYTES for field in request_type.DESCRIPTOR.fields)


def _set_path_fields(request, params: dict[str, str]) -> None:
    """The path's variables (`{id}`: digits, admin_gateway.router) into the request."""
    for name, value in params.items():
        setattr(request, name, int(value))


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


class AdminHttpApp:
    """The WSGI application: the router's target for a request, the call to AdminService, the
    answer (JSON, a picture, a CSV file)."""

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
        self._openapi = json.dumps(build_document(OPERATIONS)).encode()
        self._router = self._routes()

    def _routes(self) -> Router[Handler]:
        """Every AdminService method with an HTTP route (its proto's google.api.http), served
        by the kind of its answer, and the gateway's own pages."""
        router: Router[Handler] = Router()
        router.add("GET", "/healthz", lambda environ, params: self._healthz())
        router.add("GET", "/metrics", lambda environ, params: self._metrics(environ))
        router.add("GET", "/admin/openapi.json", lambda environ, params: Response(
            200, self._openapi, "application/json", {}))
        router.add("GET", "/admin", lambda environ, params: _static("index.html"))
        router.add("GET", "/admin/static/{name=**}",
                   lambda environ, params: _static(params["name"]))
        by_hand = {"GetShopLogo": self._logo}  # a picture inside a message
        for operation in OPERATIONS:
            if operation.http is None:
                continue
            serve = by_hand.get(operation.name) or (
                self._import if operation.upload else self._picture if operation.picture
                else self._export if operation.export else self._call)
            router.add(operation.http.verb, operation.http.template,
                       functools.partial(serve, operation))
        return router

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
        """Serve the request; returns (route label, response). Labels are route templates
        (admin_gateway.router), never the request's path."""
        if self._public is not None and self._public.serves(path):
            return self._public.handle(environ, method, path)
        found = self._router.match(method, path)
        if found.target is not None:
            return found.template, found.target(environ, found.params)
        if found.status == 405:
            response = error_response(405, "METHOD_NOT_ALLOWED", "wrong method")
            response.headers["Allow"] = ", ".join(found.allowed)
            return found.template, response
        return found.template, error_response(404, "NOT_FOUND", "no such endpoint")

    def _metrics(self, environ) -> Response:
        """Prometheus metrics, on this public port only for an ADMIN or a service identity (a
        scraper's `x-service-token`): they name every credential and its use. METRICS_ADDR
        serves them on a private address instead."""
        try:
            identity = self._metrics_reader.identify(_credentials(environ))
        except Unauthenticated as error:
            return error_response(401, "UNAUTHENTICATED", error.message)
        if identity.service is None and not (identity.person and identity.person.is_admin):
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

    def _call(self, operation: Operation, environ, params: dict[str, str]) -> Response:
        """A JSON answer: the request from the path, and the body (`body: "*"`) or the query."""
        route = operation.route
        max_body = MAX_PICTURE_BODY_BYTES if _carries_picture(operation.request_type) \
            else MAX_BODY_BYTES
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "INVALID_ARGUMENT", "bad Content-Length")
        if not 0 <= length <= max_body:
            return error_response(413, "TOO_LARGE",
                                  f"request body too large (at most {max_body} bytes)")
        body = environ["wsgi.input"].read(length) if length and route.body else b""
        try:
            request = parse_request(operation.request_type, route.body,
                                    environ.get("QUERY_STRING", ""), body)
            if route.verb == "PATCH":
                _mask_from_body(request, body)
        except BadRequest as error:
            return error_response(400, "INVALID_ARGUMENT", str(error))
        _set_path_fields(request, params)  # the path names the resource, whatever the body says
        try:
            response = getattr(self._admin, operation.name)(
                request, metadata=self._metadata(environ), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        # Zero values are written out (`"held": "0"`), so a client never has to guess a
        # missing field's meaning.
        answer = json_response(200, json_format.MessageToDict(
            response, always_print_fields_with_no_presence=True))
        if _carries_secret(operation.request_type) or _carries_secret(operation.response_type):
            answer.headers["Cache-Control"] = "no-store"  # passwords, tokens: never cached
        return answer

    def _import(self, operation: Operation, environ, params: dict[str, str]) -> Response:
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

    def _picture(self, operation: Operation, environ, params: dict[str, str]) -> Response:
        request = operation.request_type()
        _set_path_fields(request, params)
        return picture_response(lambda: getattr(self._admin, operation.name)(
            request, metadata=self._metadata(environ), timeout=CALL_TIMEOUT_S))

    def _logo(self, operation: Operation, environ, params: dict[str, str]) -> Response:
        request = operation.request_type()
        _set_path_fields(request, params)
        return picture_response(lambda: [logo_chunk(self._admin.GetShopLogo(
            request, metadata=self._metadata(environ), timeout=CALL_TIMEOUT_S))],
            cache="no-cache")

    def _export(self, operation: Operation, environ, params: dict[str, str]) -> Response:
        """The CSV, streamed: the first page is awaited here so that a refusal is still a JSON
        error with its status; a failure after that cuts the response off (an incomplete
        chunked body), so a truncated file is never mistaken for a whole one."""
        try:
            style, query = csv_style(environ.get("QUERY_STRING", ""))
            request = parse_request(operation.request_type, False, query, b"")
        except (BadRequest, ValueError) as error:
            return error_response(400, "INVALID_ARGUMENT", str(error))
        pages = getattr(self._admin, operation.name)(request, metadata=self._metadata(environ),
                                                     timeout=EXPORT_TIMEOUT_S)
        try:
            first = next(pages, None)
        except grpc.RpcError as error:
            return rpc_error_response(error)

        def all_pages():
            if first is not None:
                yield first
            yield from pages

        name = operation.name.removeprefix("Export").lower()
        return Response(200, csv_lines(EXPORTS[operation.name], all_pages(), style),
                        "text/csv; charset=utf-8",
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
