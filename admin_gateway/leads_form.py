"""A shopper's quote request as the gateway receives it, from the widget (JSON,
`POST /public/v1/leads`) or from a share link's page (a plain HTML form), turned into
SubmitPublicLead (`docs/shares-and-leads.md`).

Spam: a bot that fills the hidden `website` field gets the same answer as a person and nothing
is stored; the render service limits requests per visitor and per key and keeps one open
request per phone and render.
"""
from __future__ import annotations

import logging

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from admin_gateway.responses import Response, error_response, json_response, rpc_error_response
from protos.carpet.render.v1 import render_pb2

logger = logging.getLogger(__name__)

HONEYPOT = "website"
CALL_TIMEOUT_S = 15.0
RECEIVED = {"status": "received"}


def _text(document: dict, name: str, limit: int) -> str:
    value = document.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text")
    return value[:limit]


def is_bot(document: dict) -> bool:
    """A person never sees the honeypot field, so never fills it."""
    return bool(str(document.get(HONEYPOT, "")).strip())


def lead_request(document: dict, caller: render_pb2.PublicRequest, *,
                 share_token: str = "") -> render_pb2.SubmitPublicLeadRequest:
    """The request for SubmitPublicLead; ValueError naming what is malformed (what is merely
    wrong, like a bad phone, the render service says in words)."""
    consent = document.get("consent") or {}
    if not isinstance(consent, dict):
        raise ValueError("consent must be an object: {\"text\", \"version\", \"acceptedAt\"}")
    accepted = Timestamp()
    accepted_text = _text(consent, "acceptedAt", 40)
    if accepted_text:
        try:
            accepted.FromJsonString(accepted_text)
        except ValueError:
            raise ValueError("consent.acceptedAt must be a time like "
                             "2026-12-05T10:00:00Z") from None
    return render_pb2.SubmitPublicLeadRequest(
        caller=caller, share_token=share_token,
        render_id="" if share_token else _text(document, "renderId", 32),
        name=_text(document, "name", 400), phone=_text(document, "phone", 40),
        email=_text(document, "email", 400), message=_text(document, "message", 4000),
        session_id=_text(document, "sessionId", 64),
        consent=render_pb2.Consent(text=_text(consent, "text", 6000),
                                   version=_text(consent, "version", 100),
                                   accepted_at=accepted if accepted_text else None))


def submit_lead(renders, document: dict, caller: render_pb2.PublicRequest) -> Response:
    """The widget's request: 201 `{"status": "received"}`, or the refusal."""
    if is_bot(document):
        logger.info("quote request with the honeypot filled: dropped")
        return json_response(201, RECEIVED)
    try:
        request = lead_request(document, caller)
    except ValueError as malformed:
        return error_response(400, "INVALID_ARGUMENT", str(malformed))
    try:
        renders.SubmitPublicLead(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        return rpc_error_response(error)
    return json_response(201, RECEIVED)
