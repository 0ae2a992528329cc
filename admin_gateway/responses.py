"""The gateway's HTTP answers: JSON documents, errors as `{"code", "message"}` with their status,
and a service's refusal turned into one."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc

from carpet_common.errors import http_status_for, rpc_error_reason
from protos.carpet.render.v1 import render_pb2


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes]  # an iterable is streamed (no Content-Length)
    content_type: str
    headers: dict[str, str]


def rpc_error_response(error: grpc.RpcError) -> Response:
    trailers = dict(error.trailing_metadata() or ())
    return error_response(http_status_for(error.code()),
                          rpc_error_reason(error) or error.code().name,
                          error.details() or "internal error",
                          retry_after=trailers.get("retry-after"))


def error_response(status: int, code: str, message: str,
                   retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return json_response(status, {"code": code, "message": message}, headers)


def json_response(status: int, document: dict, headers: dict | None = None) -> Response:
    payload = json.dumps(document, ensure_ascii=False).encode()
    return Response(status, payload, "application/json; charset=utf-8",
                    {"Cache-Control": "no-store", **(headers or {})})


def logo_chunk(logo) -> render_pb2.RenderOutputChunk:
    """A shop's logo (one message) as the one chunk of a picture."""
    return render_pb2.RenderOutputChunk(content_type=logo.content_type, data=logo.image)


def picture_response(chunks: Callable[[], Iterable],
                     cache: str = "private, max-age=3600") -> Response:
    """A picture a service streams in chunks (the first names its content type) as one answer,
    or the service's refusal. Kept a while by the browser by default: a render's picture, and a
    thumbnail of one version of a carpet, never change; a logo can (`cache`)."""
    try:
        received = list(chunks())
    except grpc.RpcError as error:
        return rpc_error_response(error)
    content_type = received[0].content_type if received else "application/octet-stream"
    return Response(200, b"".join(chunk.data for chunk in received), content_type,
                    {"Cache-Control": cache})
