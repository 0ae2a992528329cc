"""multipart/form-data bodies (a catalogue import, a widget's room photo), read with the standard
library's MIME parser; the body is already bounded by the route's limit."""
from __future__ import annotations

import email.parser
import email.policy
from email.message import Message
from email.utils import collapse_rfc2231_value


def form_parts(content_type: str, body: bytes) -> dict[str, Message] | None:
    """The form's parts by name, or None when the body is not multipart/form-data."""
    if not content_type.startswith("multipart/form-data"):
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    return {collapse_rfc2231_value(part.get_param("name", "", header="content-disposition")): part
            for part in message.iter_parts()}


def part_text(parts: dict[str, Message], name: str, default: str = "") -> str:
    return part_bytes(parts, name).decode("utf-8", "replace").strip() if name in parts \
        else default


def part_bytes(parts: dict[str, Message], name: str) -> bytes:
    part = parts.get(name)
    payload = part.get_payload(decode=True) if part else None
    return payload if isinstance(payload, bytes) else b""
