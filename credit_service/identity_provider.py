"""Signing in with an outside identity provider's token (JWT_JWKS_URL, `docs/security.md`).

The provider's keys are fetched from its JWKS URL by PyJWT's PyJWKClient: cached by `kid` for
five minutes, fetched again when a token names a `kid` not in the cache (the provider rotated
its keys; at most once per REFETCH_COOLDOWN_S, so made-up kids cannot hammer it), no redirects.
A token must be RS256 or ES256 (never HS256: the provider's public keys are no secret), carry
JWT_AUDIENCE and JWT_ISSUER like every JWT here, live at most 24 h, and name the person in
`email` (with `email_verified` not false). That email is mapped to a user of the table, whose
row gives role and organisation; the result is an ordinary session of ours (Login with
`id_token`), so logout, deactivation and the ended-sessions list apply unchanged.
"""
from __future__ import annotations

import urllib.parse

import jwt

from carpet_common.auth import MAX_JWT_LIFETIME_S
from carpet_common.errors import Unauthenticated, Unavailable
from carpet_common.settings import Settings, SettingsError

ALGORITHMS = ("RS256", "ES256")
CACHE_LIFESPAN_S = 300
REFETCH_COOLDOWN_S = 5
FETCH_TIMEOUT_S = 5
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _checked_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return url
    raise SettingsError("JWT_JWKS_URL must be https:// (plain http only on loopback)")


class IdentityProvider:
    def __init__(self, settings: Settings):
        self._keys = jwt.PyJWKClient(_checked_url(settings.jwt_jwks_url or ""), cache_keys=True,
                                     lifespan=CACHE_LIFESPAN_S, timeout=FETCH_TIMEOUT_S,
                                     cooldown_duration=REFETCH_COOLDOWN_S)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def email_of(self, token: str) -> str:
        """The email a valid provider token names; Unauthenticated otherwise."""
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Unavailable("the identity provider's keys cannot be fetched") from None
        except (jwt.PyJWKClientError, jwt.PyJWTError):
            raise Unauthenticated("token not signed by a key of the identity provider") from None
        if key.algorithm_name not in ALGORITHMS:
            raise Unauthenticated("identity provider tokens must be RS256 or ES256")
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name],
                                audience=self._audience, issuer=self._issuer,
                                options={"require": ["exp", "iat", "email"]})
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"identity provider token not accepted: {error}") from None
        if not (isinstance(claims["iat"], int) and isinstance(claims["exp"], int)) or \
                claims["exp"] - claims["iat"] > MAX_JWT_LIFETIME_S:
            raise Unauthenticated("JWT lifetime (exp - iat) must be at most 24 h")
        if claims.get("email_verified") is False or not isinstance(claims["email"], str):
            raise Unauthenticated("the identity provider has not verified this email")
        return claims["email"]
