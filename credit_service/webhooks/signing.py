"""Endpoint secrets and Standard Webhooks signatures (https://www.standardwebhooks.com/).

An endpoint's secret is never stored: the database keeps a random salt, and the secret is
HMAC(key, salt) with a key derived from AUDIT_HMAC_KEY, which is kept outside the database. So a
copy of the database alone cannot forge a webhook, and the secret can be shown once at creation
and recomputed for every delivery.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from carpet_common import sources

SECRET_PREFIX = "whsec_"
_key: bytes | None = None


def use_key(audit_hmac_key: bytes) -> None:
    """Bind this process's key (a domain-separated derivation of AUDIT_HMAC_KEY)."""
    global _key
    _key = hmac.new(audit_hmac_key, b"carpet webhook endpoint secrets v1", hashlib.sha256).digest()


def new_salt() -> str:
    return sources.token_hex(16)


def endpoint_secret(salt: str) -> str:
    """`whsec_` + base64 of 32 bytes, the form every Standard Webhooks library takes."""
    if _key is None:
        raise RuntimeError("webhook signing key not bound (signing.use_key)")
    raw = hmac.new(_key, salt.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
