"""Idempotency keys, the same way in every service: a mutating call's key is trimmed and
bounded, and its request is fingerprinted without the key, so "same key + same request" is a
replay of the first result and "same key + another request" is IDEMPOTENCY_KEY_REUSED.

Where the first result is kept is each service's own business (the credit service keeps the
serialized response, the render service the job the key created)."""
from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from carpet_common.errors import InvalidArgument

MAX_IDEMPOTENCY_KEY_LENGTH = 200


def clean_key(key: str) -> str:
    """The key as stored ('' when the call carries none)."""
    key = key.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidArgument(
            f"idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")
    return key


def request_fingerprint(request: Message) -> str:
    """SHA-256 of the request's deterministic serialization, without its idempotency key and
    without passwords: a hash of a password must not be stored, so a retry is not compared on
    its password (CreateUser with the same key and another password replays the first user)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("idempotency_key")
    for field in copy.DESCRIPTOR.fields:
        if "password" in field.name:
            copy.ClearField(field.name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()
