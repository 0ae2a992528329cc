"""The public render API for browsers (`/public/v1/…`) and the widget's script
(`/widget/v1/widget.js`), on the gateway's HTTP port (`docs/widget.md`).

A page of a shop's website calls it with the shop's publishable key (`X-Publishable-Key`, or
`?key=` where a header cannot be set: `<img>`, EventSource). The gateway relays every call to
the render service under its own service identity, naming the key, the page's `Origin` and the
visitor's address; the render service checks all three on every call (an unknown or revoked
key, an origin not on the key's list, a visitor over the key's rate are refused there). So the
key works here and nowhere else: every other path of every port takes people's and services'
credentials only.

CORS: a successful answer names exactly the page's origin (never `*`, never credentials); an
error names it too, so the widget can read why and say so in the browser's console — an error
carries no data.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterator

import grpc
from google.protobuf import json_format

from admin_gateway.forms import form_parts, part_bytes, part_text
from admin_gateway.leads_form import submit_lead
from admin_gateway.responses import (
    Response,
    error_response,
    json_response,
    picture_response,
    rpc_error_response,
)
from admin_gateway.router import Router
from admin_gateway.share_page import SharePage, share_url
from carpet_common.calls import client_ip
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc

logger = logging.getLogger(__name__)

PREFIX = "/public/v1/"
WIDGET_PATH = "/widget/v1/widget.js"
WIDGET_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "widget.js")
# The public API's routes: (method, template, handler method). Each handler takes the WSGI
# environ, the caller and the path's parameters (tests/unit/test_router.py checks the table).
ROUTES = (
    ("GET", "/public/v1/carpets", "_carpets"),
    ("GET", "/public/v1/carpets/{id}/thumbnail", "_thumbnail"),
    ("POST", "/public/v1/renders", "_submit"),
    ("GET", "/public/v1/renders/{token}", "_render"),
    ("GET", "/public/v1/renders/{token}/events", "_events"),
    ("GET", "/public/v1/renders/{token}/image", "_image"),
    ("POST", "/public/v1/renders/{token}/share", "_share"),
    ("POST", "/public/v1/leads", "_lead"),
    ("POST", "/public/v1/events", "_event"),
)
MAX_JSON_BYTES = 16 * 1024  # a quote request's fields, with room to spare
# A room photo is at most 10 MB (the render service's limit); the form around it adds little.
MAX_SUBMISSION_BYTES = 10 * 1024 * 1024 + 64 * 1024
CALL_TIMEOUT_S = 15.0
# Server-Sent Events hold one of the HTTP server's threads each while they wait: at most this
# many per process, each for at most EVENTS_LIFETIME_S (the browser's EventSource then
# connects again); over it the answer is 503 and the widget polls instead.
MAX_EVENT_STREAMS = 4
EVENTS_LIFETIME_S = 55.0
EVENTS_RETRY_MS = 2000
STATUS_NAMES = {render_pb2.RENDER_STATUS_QUEUED: "queued",
                render_pb2.RENDER_STATUS_PROCESSING: "processing",
                render_pb2.RENDER_STATUS_SUCCESS: "success",
                render_pb2.RENDER_STATUS_FAILED: "failed"}
WIDGET_CACHE_S = 24 * 3600


class PublicApi:
    """Serves `/public/v1/…` and the widget's script; `renders` presents the gateway's own
    service identity."""

    def __init__(self, renders: render_pb2_grpc.RenderServiceStub, trusted_proxies=()):
        self._renders = renders
        self._trusted = tuple(trusted_proxies)
        self._share_page = SharePage(renders, self._trusted)
        self._event_streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)
        self._routes = Router.of((method, template, getattr(self, handler))
                                 for method, template, handler in ROUTES)
        with open(WIDGET_FILE, "rb") as script:
            self._widget = script.read()
        self._widget_etag = '"' + hashlib.sha256(self._widget).hexdigest()[:32] + '"'

    @staticmethod
    def serves(path: str) -> bool:
        return path.startswith(PREFIX) or path == WIDGET_PATH or SharePage.serves(path)

    def handle(self, environ, method: str, path: str) -> tuple[str, Response]:
        """(route label, response); labels come from a fixed set."""
        if path == WIDGET_PATH:
            return path, self._widget_script(environ, method)
        if SharePage.serves(path):
            return self._share_page.handle(environ, method, path)
        origin = environ.get("HTTP_ORIGIN", "")
        if method == "OPTIONS":
            return "/public/v1 preflight", _preflight(origin)
        route, response = self._route(environ, method, path, self._caller(environ, origin))
        if origin:
            response.headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin"})
        return route, response

    def _caller(self, environ, origin: str) -> render_pb2.PublicRequest:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        key = environ.get("HTTP_X_PUBLISHABLE_KEY") or query.get("key", [""])[-1]
        visitor = client_ip(environ.get("REMOTE_ADDR", ""),
                            environ.get("HTTP_X_FORWARDED_FOR", ""), self._trusted)
        # Only what gRPC can carry and the render service can match: anything else is simply
        # not a key (UNAUTHENTICATED there) or not an allowed origin.
        return render_pb2.PublicRequest(key=_printable(key, 64), origin=_printable(origin, 300),
                                        visitor=_printable(visitor, 64))

    def _route(self, environ, method: str, path: str, caller) -> tuple[str, Response]:
        found = self._routes.match(method, path)
        if found.target is None:
            if found.status == 405:
                return found.template, error_response(405, "METHOD_NOT_ALLOWED", "wrong method")
            return found.template, error_response(404, "NOT_FOUND", "no such endpoint")
        return found.template, found.target(environ, caller, found.params)

    def _carpets(self, environ, caller, _params) -> Response:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        request = render_pb2.ListPublicCarpetsRequest(
            caller=caller, sku=_printable(query.get("sku", [""])[-1], 64),
            page_token=_printable(query.get("pageToken", [""])[-1], 200))
        try:
            page = self._renders.ListPublicCarpets(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        return json_response(200, {"carpets": [_carpet(carpet, caller.key)
                                               for carpet in page.carpets],
                                   "nextPageToken": page.next_page_token})

    def _submit(self, environ, caller, _params) -> Response:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "INVALID_ARGUMENT", "bad Content-Length")
        if not 0 <= length <= MAX_SUBMISSION_BYTES:
            return error_response(413, "TOO_LARGE", "the room photo is too large: at most 10 MB")
        parts = form_parts(environ.get("CONTENT_TYPE", ""),
                           environ["wsgi.input"].read(length) if length else b"")
        if parts is None:
            return error_response(400, "INVALID_ARGUMENT",
                                  "send multipart/form-data with roomImage, carpetId and mode")
        try:
            request = _submission(parts, caller)
        except ValueError as refused:
            return error_response(400, "INVALID_ARGUMENT", str(refused))
        try:
            render = self._renders.SubmitPublicRender(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        return json_response(201, _render(render))

    def _share(self, environ, caller, params) -> Response:
        """A share link to a finished render: `{"id", "url", "expiresAt"}`."""
        document = _json_body(environ, allow_empty=True)
        if isinstance(document, Response):
            return document
        try:
            link = self._renders.CreatePublicShare(render_pb2.CreatePublicShareRequest(
                caller=caller, id=params["token"],
                session_id=_printable(str(document.get("sessionId", "")), 64)),
                timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        return json_response(201, {"id": str(link.id),
                                   "url": share_url(environ, self._trusted, link.token),
                                   "expiresAt": link.expires_at.ToJsonString()})

    def _lead(self, environ, caller, _params) -> Response:
        """A quote request (JSON); 201 `{"status": "received"}`."""
        document = _json_body(environ)
        if isinstance(document, Response):
            return document
        return submit_lead(self._renders, document, caller)

    def _event(self, environ, caller, _params) -> Response:
        document = _json_body(environ)
        if isinstance(document, Response):
            return document
        carpet = str(document.get("carpetId", ""))
        if not carpet.isdigit() or len(carpet) > 18:
            return error_response(400, "INVALID_ARGUMENT", "carpetId must be a carpet's id")
        try:
            answer = self._renders.RecordPublicEvent(render_pb2.RecordPublicEventRequest(
                caller=caller, session_id=_printable(str(document.get("sessionId", "")), 64),
                type=_printable(str(document.get("type", "")), 32), carpet_id=int(carpet)),
                timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            return rpc_error_response(error)
        return json_response(202, {"counted": answer.counted})

    def _thumbnail(self, _environ, caller, params) -> Response:
        return picture_response(lambda: self._renders.GetPublicCarpetThumbnail(
            render_pb2.PublicCarpetRequest(caller=caller, carpet_id=int(params["id"])),
            timeout=CALL_TIMEOUT_S))

    def _image(self, _environ, caller, params) -> Response:
        request = render_pb2.PublicRenderRequest(caller=caller, id=params["token"])
        return picture_response(
            lambda: self._renders.GetPublicRenderOutput(request, timeout=CALL_TIMEOUT_S))

    def _render(self, _environ, caller, params) -> Response:
        request = render_pb2.PublicRenderRequest(caller=caller, id=params["token"])
        try:
            return json_response(200, _render(self._renders.GetPublicRender(
                request, timeout=CALL_TIMEOUT_S)))
        except grpc.RpcError as error:
            return rpc_error_response(error)

    def _events(self, _environ, caller, params) -> Response:
        """`text/event-stream`: an event `status` with the render at each change until it
        ends. The first answer is awaited here, so a refusal is still a JSON error."""
        if not self._event_streams.acquire(blocking=False):
            return error_response(503, "UNAVAILABLE", "too many event streams: poll "
                                  "GET /public/v1/renders/{id} instead", retry_after="2")
        request = render_pb2.PublicRenderRequest(caller=caller, id=params["token"])
        try:
            updates = self._renders.WatchPublicRender(request, timeout=EVENTS_LIFETIME_S)
            first = next(updates)
        except grpc.RpcError as error:
            self._event_streams.release()
            return rpc_error_response(error)
        return Response(200, self._event_lines(first, updates), "text/event-stream",
                        {"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _event_lines(self, first, updates) -> Iterator[bytes]:
        try:
            yield f"retry: {EVENTS_RETRY_MS}\n\n".encode()
            for render in _then(first, updates):
                yield f"event: status\ndata: {json.dumps(_render(render))}\n\n".encode()
        except grpc.RpcError as error:
            # The stream's lifetime ran out (the browser connects again) or the service
            # went away; either way the page reads the render again.
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                logger.warning("render event stream ended: %s", error.code().name)
        finally:
            self._event_streams.release()

    def _widget_script(self, environ, method: str) -> Response:
        if method != "GET":
            return error_response(405, "METHOD_NOT_ALLOWED", "wrong method")
        headers = {"Cache-Control": f"public, max-age={WIDGET_CACHE_S}",
                   "ETag": self._widget_etag, "Cross-Origin-Resource-Policy": "cross-origin"}
        if environ.get("HTTP_IF_NONE_MATCH") == self._widget_etag:
            return Response(304, b"", "text/javascript; charset=utf-8", headers)
        return Response(200, self._widget, "text/javascript; charset=utf-8", headers)


def _then(first, rest):
    yield first
    yield from rest


def _preflight(origin: str) -> Response:
    """A browser's CORS preflight (a page sending `X-Publishable-Key`): it grants nothing by
    itself — the request that follows is checked against its key's origins."""
    if not origin:
        return error_response(400, "INVALID_ARGUMENT", "a preflight needs an Origin")
    return Response(204, b"", "text/plain", {
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "X-Publishable-Key",
        "Access-Control-Max-Age": "600"})


def _json_body(environ, allow_empty: bool = False) -> dict | Response:
    """The request's JSON object, or the 400/413 answer saying why not."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return error_response(400, "INVALID_ARGUMENT", "bad Content-Length")
    if not 0 <= length <= MAX_JSON_BYTES:
        return error_response(413, "TOO_LARGE", f"at most {MAX_JSON_BYTES} bytes of JSON")
    body = environ["wsgi.input"].read(length) if length else b""
    if not body and allow_empty:
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        return error_response(400, "INVALID_ARGUMENT", "send a JSON object")
    return document


def _printable(value: str, limit: int) -> str:
    return value[:limit] if value.isascii() and value.isprintable() else ""


def _carpet(carpet: render_pb2.Carpet, key: str) -> dict:
    """What a shopper's page may show of a carpet."""
    version = carpet.updated_at.ToNanoseconds()
    return {"id": str(carpet.id), "sku": carpet.sku, "name": carpet.name,
            "material": carpet.material,
            "sizes": [{"id": str(size.id), "sku": size.sku, "widthCm": size.width_cm,
                       "lengthCm": size.length_cm} for size in carpet.sizes],
            "thumbnailUrl": f"/public/v1/carpets/{carpet.id}/thumbnail?"
                            + urllib.parse.urlencode({"key": key, "v": version})}


def _render(render: render_pb2.PublicRender) -> dict:
    document = json_format.MessageToDict(render, always_print_fields_with_no_presence=True)
    document["status"] = STATUS_NAMES.get(render.status, "unknown")
    if render.status == render_pb2.RENDER_STATUS_SUCCESS:
        document["imageUrl"] = f"/public/v1/renders/{render.id}/image"
    return document


def _submission(parts, caller) -> render_pb2.SubmitPublicRenderRequest:
    """The form's fields as a request; ValueError naming what is wrong."""
    room = part_bytes(parts, "roomImage")
    if not room:
        raise ValueError("roomImage is required: a PNG or JPEG photo of the room")
    carpet, size = part_text(parts, "carpetId"), part_text(parts, "carpetSizeId", "0")
    if not carpet.isdigit() or len(carpet) > 18 or not size.isdigit() or len(size) > 18:
        raise ValueError("carpetId (and carpetSizeId, if given) must be numbers")
    request = render_pb2.SubmitPublicRenderRequest(
        caller=caller, carpet_id=int(carpet), carpet_size_id=int(size),
        mode=part_text(parts, "mode", "preview")[:32], room_image=room)
    # Where the carpet goes: four corners, or a measured floor with carpets in cm
    # (docs/render-api.md), each a JSON field of the form.
    for name, example in (("placement", '{"carpetCorners": [{"x": 0.2, "y": 0.6}, …]}'),
                          ("floor", '{"rectangle": [{"x": 0.2, "y": 0.6}, …], '
                                    '"widthCm": 200, "lengthCm": 300}'),
                          ("carpets", '[{"carpetSizeId": "7", "centerXCm": 100, '
                                      '"centerYCm": 150, "rotationDeg": 0}]'),
                          ("occluders", '[{"points": [{"x": 0.4, "y": 0.7}, …]}]')):
        text = part_text(parts, name)
        if not text:
            continue
        try:
            json_format.ParseDict({name: json.loads(text)}, request)
        except (json_format.ParseError, ValueError):
            raise ValueError(f"{name} must be JSON like {example}") from None
    return request
