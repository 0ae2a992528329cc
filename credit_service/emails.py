"""Email addresses as sign-in names: one normal form, compared the way a Turkish user expects.

`İSMAİL@Firma.com.tr`, `ismail@firma.com.tr` and `ismail@FİRMA.com.tr` are one address. The
normal form is: Unicode NFC; the local part lower-cased with `İ` (U+0130) mapped to `i` first
(Python's lower() would give `i` + U+0307 COMBINING DOT ABOVE, a different string); the domain
lower-cased the same way, then in its IDNA (UTS #46, ASCII) form. The address as typed is kept
apart, for display.
"""
from __future__ import annotations

import re
import unicodedata

import idna

from carpet_common.errors import InvalidArgument

MAX_EMAIL_LENGTH = 320
# Deliberately simple: one @, no spaces or controls, a dot in the domain. Delivery is not ours.
_LOCAL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}$")
_DOMAIN = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z0-9-]{2,}$")


def display_form(email: str) -> str:
    """The address as typed, trimmed and NFC-composed (what the admin page shows)."""
    return unicodedata.normalize("NFC", email.strip())


def _lower(text: str) -> str:
    # `i` + U+0307 is what lower() made of `İ` before (rows stored so by earlier versions).
    lowered = text.replace("\u0130", "i").lower().replace("i\u0307", "i")
    return unicodedata.normalize("NFC", lowered)


def normalize_email(email: str) -> str:
    """The unique sign-in name of `email`; InvalidArgument when it is not an address."""
    typed = display_form(email)
    local, at, domain = typed.rpartition("@")
    if not at or not _LOCAL.match(local):
        raise InvalidArgument("email is not a valid address")
    local = _lower(local)
    try:
        domain = idna.encode(_lower(domain), uts46=True).decode("ascii")
    except idna.IDNAError:
        raise InvalidArgument("email is not a valid address") from None
    if not _DOMAIN.match(domain):
        raise InvalidArgument("email is not a valid address")
    normalized = f"{local}@{domain}"
    if len(normalized) > MAX_EMAIL_LENGTH or len(typed) > MAX_EMAIL_LENGTH:
        raise InvalidArgument(f"email must be at most {MAX_EMAIL_LENGTH} characters")
    return normalized
