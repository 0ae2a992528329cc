"""Password hashing (argon2id, argon2-cffi's defaults: RFC 9106's low-memory profile) and the
password rules: 12+ characters and not a common password (common_passwords.txt).

A password is only ever held in memory for the call that carries it: never stored, logged,
returned, audited (the audit summary redacts every `password` field) or put in an error.
"""
from __future__ import annotations

import functools
import os
import threading
import unicodedata

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from carpet_common.errors import InvalidArgument

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # bounds the work one request can ask for
_COMMON_PASSWORDS_FILE = os.path.join(os.path.dirname(__file__), "common_passwords.txt")
_hasher = argon2.PasswordHasher()  # argon2id
# Each hash or check takes ~64 MiB and tens of ms of CPU: at most this many at once per process,
# so a flood of sign-ins queues instead of exhausting memory (the rest of the service's calls
# never wait for these slots).
CONCURRENT_HASHES = 4
_slots = threading.BoundedSemaphore(CONCURRENT_HASHES)


@functools.cache
def _common_passwords() -> frozenset[str]:
    with open(_COMMON_PASSWORDS_FILE, encoding="utf-8") as handle:
        return frozenset(line.strip().casefold() for line in handle
                         if line.strip() and not line.startswith("#"))


def _canonical(password: str) -> str:
    # The same characters typed on another keyboard or OS compose the same way.
    return unicodedata.normalize("NFC", password)


def check_new_password(password: str, email: str = "") -> str:
    """The password to store, or InvalidArgument saying which rule it breaks (never echoing it)."""
    password = _canonical(password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"password must have at least {MIN_PASSWORD_LENGTH} characters",
                              reason="WEAK_PASSWORD")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"password must have at most {MAX_PASSWORD_LENGTH} characters",
                              reason="WEAK_PASSWORD")
    folded = password.casefold()
    if folded in _common_passwords():
        raise InvalidArgument("password is too common: choose another",
                              reason="WEAK_PASSWORD")
    if email and folded in (email.casefold(), email.partition("@")[0].casefold()):
        raise InvalidArgument("password must not be the email address",
                              reason="WEAK_PASSWORD")
    return password


def hash_password(password: str) -> str:
    with _slots:
        return _hasher.hash(_canonical(password))


# Checked when the email is unknown or has no password, so such a sign-in costs the same time
# as a wrong password for a real user.
_DUMMY_HASH = _hasher.hash("no user has this password: it only spends the same time")


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether `password` matches; an empty or unreadable hash still costs one verification."""
    if len(password) > MAX_PASSWORD_LENGTH:
        password = password[:MAX_PASSWORD_LENGTH + 1]  # cannot match; same cost either way
    try:
        with _slots:
            return _hasher.verify(stored_hash or _DUMMY_HASH, _canonical(password)) and \
                bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """After the parameters are raised, old hashes are replaced at the next sign-in."""
    return _hasher.check_needs_rehash(stored_hash)
