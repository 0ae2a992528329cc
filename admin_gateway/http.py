"""The gateway's HTTP JSON API (CONTRACT §7) on ADMIN_HTTP_ADDR.

Each request becomes a call to the gateway's own AdminService over a private Unix socket, so
HTTP and gRPC share one pipeline: the same credentials (`x-admin-token` or
`Authorization: Bearer`), role guard, rate limit, audit and error mapping. The browser's address
travels in x-forwarded-for, which the gateway believes only from that socket.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format

from carpet_common.calls import client_ip
from carpet_common.interceptors import error_reason
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2
from protos.carpet.render.v1 import render_pb2

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CALL_TIMEOUT_S = 15.0
FORWARDED_HEADERS = ("x-admin-token", "authorization", "x-request-id")

# (HTTP method, path) -> (AdminService method, request type)
ROUTES = {
    ("GET", "/admin/overview"): ("GetOverview", admin_pb2.GetOverviewRequest),
    ("GET", "/admin/users"): ("ListUsers", account_pb2.ListUsersRequest),
    ("POST", "/admin/users"): ("CreateUser", account_pb2.CreateUserRequest),
    ("GET", "/admin/renders"): ("ListRenders", render_pb2.ListRendersRequest),
    ("POST", "/admin/credits/adjust"): ("AdjustCredits", credit_pb2.AdjustCreditsRequest),
    ("GET", "/admin/organizations"): ("ListOrganizations", account_pb2.ListOrganizationsRequest),
    ("GET", "/admin/credit-logs"): ("ListCreditLogs", credit_pb2.ListCreditLogsRequest),
    ("GET", "/admin/audit"): ("ListAuditLogs", audit_pb2.ListAuditLogsRequest),
}

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class BadRequest(ValueError):
    pass


def parse_request(request_type, method: str, query: str, body: bytes):
    """Query parameters (GET) or a JSON body (POST) -> the request message; names may be the
    proto field names or their JSON (lowerCamelCase) names."""
    try:
        if method == "GET":
            fields = {key: values[-1] for key, values in
                      urllib.parse.parse_qs(query, keep_blank_values=False).items()}
        else:
            fields = json.loads(body or b"{}")
            if not isinstance(fields, dict):
                raise BadRequest("the body must be a JSON object")
        return json_format.ParseDict(fields, request_type())
    except (json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(str(error).splitlines()[0][:300]) from None


class AdminHttpServer:
    def __init__(self, address: str, grpc_target: str, trusted_proxies=()):
        host, _, port = address.rpartition(":")
        self._channel = grpc.insecure_channel(grpc_target)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self._trusted = tuple(trusted_proxies)
        self._server = ThreadingHTTPServer((host, int(port)), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="admin-http",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._channel.close()

    def _handler_class(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "carpet-admin"
            sys_version = ""

            def log_message(self, format, *args):  # noqa: A002 - the base class's name
                # Paths and codes only: headers (credentials) are never logged.
                logger.info("%s %s", self.address_string(), format % args)

            def do_GET(self):
                outer._dispatch(self, "GET")

            def do_POST(self):
                outer._dispatch(self, "POST")

        return Handler

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        route = ROUTES.get((method, url.path.rstrip("/") or "/"))
        if route is None:
            known = {path for (_, path) in ROUTES}
            status = 405 if url.path in known else 404
            return self._error(handler, status, "NOT_FOUND" if status == 404
                               else "METHOD_NOT_ALLOWED", "no such endpoint")
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return self._error(handler, 413, "TOO_LARGE", "request body too large")
        body = handler.rfile.read(length) if length else b""
        name, request_type = route
        try:
            request = parse_request(request_type, method, url.query, body)
        except BadRequest as error:
            return self._error(handler, 400, "INVALID_ARGUMENT", str(error))
        browser = client_ip(handler.client_address[0],
                            handler.headers.get("X-Forwarded-For", ""), self._trusted)
        metadata = [(key, handler.headers[key]) for key in FORWARDED_HEADERS
                    if handler.headers.get(key)]
        metadata.append(("x-forwarded-for", browser))
        try:
            response = getattr(self._admin, name)(request, metadata=metadata,
                                                  timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            trailers = dict(error.trailing_metadata() or ())
            return self._error(handler, HTTP_STATUS.get(error.code(), 500),
                               error_reason(error) or error.code().name,
                               error.details() or "internal error",
                               retry_after=trailers.get("retry-after"))
        self._send(handler, 200, json_format.MessageToDict(response))

    def _error(self, handler, status: int, code: str, message: str,
               retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self._send(handler, status, {"code": code, "message": message}, headers)

    @staticmethod
    def _send(handler, status: int, document: dict, headers: dict | None = None) -> None:
        payload = json.dumps(document, ensure_ascii=False).encode()
        handler.send_response(status, HTTPStatus(status).phrase if status in
                              HTTPStatus._value2member_map_ else None)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
