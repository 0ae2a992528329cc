"""Admin authentication and the role guard (docs/architecture.md), shared by every process.

Credentials: `x-admin-token` (a token of ADMIN_TOKENS, compared in constant time; the token's
name is the actor) or `authorization: Bearer <JWT>` (HS256 with JWT_SECRET, or RS256/ES256 keys
from JWT_JWKS_FILE chosen by `kid`). The accepted algorithm always comes from configuration,
never from the token, so `alg: none` and HS/RS confusion are refused.
"""
from __future__ import annotations

import enum
import hmac
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from carpet_common.errors import PermissionDenied, Unauthenticated
from carpet_common.settings import Settings

ROLE_ADMIN = "ADMIN"
ROLE_STAFF = "STAFF"
REQUIRED_CLAIMS = ("exp", "aud", "iss", "sub", "role")


class Access(enum.Enum):
    INTERNAL = "internal"  # service-to-service; authorised by the transport (loopback / mTLS)
    STAFF_READ = "staff_read"  # ADMIN, or STAFF restricted to its own organisation
    ADMIN = "admin"  # ADMIN only


@dataclass(frozen=True)
class Principal:
    actor: str
    role: str
    organization_id: int | None = None  # set for STAFF: the only organisation it may read

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    def check_organization(self, organization_id: int) -> int:
        """The organisation a read is limited to: STAFF always its own (0 = all for ADMIN)."""
        if self.is_admin:
            return organization_id
        if organization_id not in (0, self.organization_id):
            raise PermissionDenied("STAFF may only read its own organisation")
        return self.organization_id or 0


class _JwksKeys:
    """Keys by `kid` from a JWKS file, re-read when the file changes (key rotation)."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._keys: dict[str, tuple[object, str]] = {}

    def get(self, kid: str) -> tuple[object, str] | None:
        mtime = os.stat(self._path).st_mtime
        with self._lock:
            if mtime != self._mtime:
                self._keys = self._load()
                self._mtime = mtime
            return self._keys.get(kid)

    def _load(self) -> dict[str, tuple[object, str]]:
        with open(self._path) as handle:
            document = json.load(handle)
        keys = {}
        for jwk in document.get("keys", []):
            kty, kid = jwk.get("kty"), jwk.get("kid")
            if not kid:
                continue
            if kty == "RSA":
                keys[kid] = (RSAAlgorithm.from_jwk(json.dumps(jwk)), "RS256")
            elif kty == "EC":
                keys[kid] = (ECAlgorithm.from_jwk(json.dumps(jwk)), "ES256")
        return keys


class Authenticator:
    def __init__(self, settings: Settings):
        self._tokens = tuple((name, token.encode()) for name, token in
                             settings.admin_tokens.items())
        self._secret = settings.jwt_secret
        self._jwks = _JwksKeys(settings.jwt_jwks_file) if settings.jwt_jwks_file else None
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def authenticate(self, metadata: Mapping[str, str]) -> Principal:
        """The caller behind the metadata; raises Unauthenticated when there is none."""
        token = metadata.get("x-admin-token")
        if token:
            return self._check_admin_token(token)
        authorization = metadata.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return self._check_jwt(credential.strip())
        raise Unauthenticated("missing credentials: send x-admin-token or a Bearer JWT")

    def _check_admin_token(self, token: str) -> Principal:
        offered = token.encode()
        match = None
        # Compare against every token, without an early exit, so timing says nothing.
        for name, expected in self._tokens:
            if hmac.compare_digest(offered, expected) and match is None:
                match = name
        if match is None:
            raise Unauthenticated("admin token not accepted")
        return Principal(actor=match, role=ROLE_ADMIN)

    def _key_for(self, token: str) -> tuple[object, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed JWT") from None
        kid = header.get("kid")
        if self._jwks is not None and kid:
            found = self._jwks.get(kid)
            if found is None:
                raise Unauthenticated("JWT signed with an unknown key")
            return found
        if self._secret:
            return self._secret, "HS256"
        raise Unauthenticated("JWT not accepted: no verification key configured")

    def _check_jwt(self, token: str) -> Principal:
        key, algorithm = self._key_for(token)
        try:
            claims = jwt.decode(
                token, key, algorithms=[algorithm], audience=self._audience,
                issuer=self._issuer, options={"require": list(REQUIRED_CLAIMS)})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("JWT expired") from None
        except jwt.PyJWTError as error:
            # PyJWT's messages name claims, never the token itself.
            raise Unauthenticated(f"JWT not accepted: {error}") from None
        role = claims.get("role")
        if role not in (ROLE_ADMIN, ROLE_STAFF):
            raise Unauthenticated("JWT role must be ADMIN or STAFF")
        organization_id = claims.get("org")
        if role == ROLE_STAFF and not isinstance(organization_id, int):
            raise Unauthenticated("a STAFF JWT must carry its organisation in `org`")
        return Principal(actor=str(claims["sub"]), role=role,
                         organization_id=organization_id if isinstance(organization_id, int)
                         else None)


def authorize(principal: Principal, access: Access) -> None:
    if access is Access.ADMIN and not principal.is_admin:
        raise PermissionDenied("this method needs the ADMIN role")


def mint_jwt(settings: Settings, subject: str, role: str, ttl_seconds: int,
             organization_id: int | None = None) -> str:
    """A short-lived HS256 JWT for an admin (python -m admin_gateway token)."""
    import time

    if not settings.jwt_secret:
        raise ValueError("JWT_SECRET is not set")
    now = int(time.time())
    claims = {"sub": subject, "role": role, "iat": now, "exp": now + ttl_seconds,
              "aud": settings.jwt_audience, "iss": settings.jwt_issuer}
    if organization_id is not None:
        claims["org"] = organization_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
