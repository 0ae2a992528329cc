"""Who is calling, and what each identity may do (docs/security.md), shared by every process.

Every call on every port carries one verified identity; the network position of the caller
grants nothing. Two kinds:

- a **person**: `x-admin-token` (a token of ADMIN_TOKENS, compared in constant time; its name
  is the actor) or `authorization: Bearer <JWT>` (HS256 with JWT_SECRET, or RS256/ES256 keys from
  JWT_JWKS_FILE chosen by `kid`; the accepted algorithm always comes from configuration, never
  from the token, so `alg: none` and HS/RS confusion are refused);
- a **service**: the identity of its mTLS client certificate (URI SAN `spiffe://carpet/<name>`,
  or the CN when it has no URI SAN), or a token of SERVICE_TOKENS sent as `x-service-token`.

A call may carry both: the admin gateway forwards the person's credential next to its own
service identity. Then the person acts where the method's rule admits persons, and the service
where it admits only services (see `admit`).
"""
from __future__ import annotations

import dataclasses
import hmac
import json
import os
import threading
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from prometheus_client import Counter, Gauge

from carpet_common.errors import PermissionDenied, Unauthenticated
from carpet_common.settings import Settings

ROLE_ADMIN = "ADMIN"
ROLE_STAFF = "STAFF"
ROLE_SERVICE = "SERVICE"
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub", "role")
MAX_JWT_LIFETIME_S = 24 * 60 * 60
SPIFFE_PREFIX = "spiffe://carpet/"
SERVICE_TOKEN_HEADER = "x-service-token"
# Which credentials are still in use, e.g. during a token rotation: by kind and name (the names
# of ADMIN_TOKENS and SERVICE_TOKENS entries, certificate identities; JWTs by kind only, since
# their subjects are unbounded). Reads count as much as writes.
CREDENTIAL_USES = Counter("carpet_credential_uses_total",
                          "calls that proved an identity, by credential kind and name",
                          ["kind", "name"])
CREDENTIAL_LAST_USED = Gauge("carpet_credential_last_used_timestamp_seconds",
                             "when a credential last proved an identity (Unix time)",
                             ["kind", "name"])


def _used(kind: str, name: str) -> None:
    CREDENTIAL_USES.labels(kind, name).inc()
    CREDENTIAL_LAST_USED.labels(kind, name).set_to_current_time()


@dataclass(frozen=True)
class Principal:
    """The identity a call acts as."""

    actor: str  # the person's name or email, or the service's name
    role: str  # ADMIN, STAFF or SERVICE
    organization_id: int | None = None  # STAFF: the only organisation it may see
    via: str = ""  # a person's call relayed by a service: that service's name
    user_id: int | None = None  # a signed-in user (the access token's `uid`)
    session_id: str = ""  # that user's session (the access token's `sid`)

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def is_staff(self) -> bool:
        return self.role == ROLE_STAFF

    @property
    def is_service(self) -> bool:
        return self.role == ROLE_SERVICE

    def check_organization(self, organization_id: int) -> int:
        """The organisation a call is limited to: STAFF always its own (0 = all only for ADMIN
        and services); STAFF naming another organisation is refused."""
        if not self.is_staff:
            return organization_id
        if self.organization_id is None or organization_id not in (0, self.organization_id):
            raise PermissionDenied("STAFF may only see its own organisation")
        return self.organization_id

    def sees(self, organization_id: int) -> bool:
        """Whether a row of `organization_id` exists for this caller (STAFF: own only)."""
        return not self.is_staff or organization_id == self.organization_id


@dataclass(frozen=True)
class Identity:
    """What a call proved: a person, a service, or both."""

    person: Principal | None = None
    service: str | None = None

    @property
    def actor(self) -> str:
        if self.person is not None:
            return self.person.actor
        return self.service or "anonymous"

    @property
    def role(self) -> str:
        if self.person is not None:
            return self.person.role
        return ROLE_SERVICE if self.service else ""


ANY_SERVICE = "*"


@dataclass(frozen=True)
class Rule:
    """Who may call one method: ADMIN persons, STAFF persons (scoped to their organisation by
    the servicer), and the named services (ANY_SERVICE: any authenticated service)."""

    admin: bool = False
    staff: bool = False
    services: frozenset[str] = frozenset()
    # Anyone, without an identity: only the sign-in calls, whose request carries the
    # credential being proved (a password or a refresh token).
    public: bool = False

    def admits_person(self, person: Principal) -> bool:
        return (person.is_admin and self.admin) or (person.is_staff and self.staff)

    def admits_service(self, name: str) -> bool:
        return name in self.services or ANY_SERVICE in self.services

    def __or__(self, other: Rule) -> Rule:
        return Rule(self.admin or other.admin, self.staff or other.staff,
                    self.services | other.services, self.public or other.public)


ADMIN = Rule(admin=True)
PUBLIC = Rule(public=True)
ANONYMOUS = Principal(actor="anonymous", role="")
ADMIN_STAFF = Rule(admin=True, staff=True)


def services(*names: str | Iterable[str]) -> Rule:
    flat: set[str] = set()
    for name in names:
        flat.update((name,) if isinstance(name, str) else name)
    return Rule(services=frozenset(flat))


def admit(identity: Identity, rule: Rule | None) -> Principal:
    """The principal the call acts as, or PermissionDenied. A method without a rule is refused
    (deny by default). The person acts when the rule admits it; otherwise the service does,
    when the rule admits that."""
    if rule is not None:
        if identity.person is not None and rule.admits_person(identity.person):
            if identity.service:
                return dataclasses.replace(identity.person, via=identity.service)
            return identity.person
        if identity.service and rule.admits_service(identity.service):
            return Principal(actor=identity.service, role=ROLE_SERVICE)
    raise PermissionDenied(f"{identity.actor} ({identity.role or 'no role'}) may not call this")


_JWK_ALGORITHMS: dict[str, tuple[type[RSAAlgorithm] | type[ECAlgorithm], str]] = {
    "RSA": (RSAAlgorithm, "RS256"), "EC": (ECAlgorithm, "ES256")}


class _JwksKeys:
    """Keys by `kid` from a JWKS file, re-read when the file changes (key rotation)."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._keys: dict[str, tuple[Any, str]] = {}

    def get(self, kid: str) -> tuple[object, str] | None:
        mtime = os.stat(self._path).st_mtime
        with self._lock:
            if mtime != self._mtime:
                self._keys = self._load()
                self._mtime = mtime
            return self._keys.get(kid)

    def _load(self) -> dict[str, tuple[Any, str]]:
        with open(self._path) as handle:
            document = json.load(handle)
        keys = {}
        for jwk in document.get("keys", []):
            kty, kid = jwk.get("kty"), jwk.get("kid")
            if not kid:
                continue
            if kty in _JWK_ALGORITHMS:  # other kinds of key are not accepted: skipped
                kind, algorithm = _JWK_ALGORITHMS[kty]
                keys[kid] = (kind.from_jwk(json.dumps(jwk)), algorithm)
        return keys


class Authenticator:
    """`revoked_sessions`: the ids of ended sessions (carpet_common.sessions), whose access
    tokens are refused before they expire."""

    def __init__(self, settings: Settings, revoked_sessions: Container[str] = frozenset()):
        self._revoked = revoked_sessions
        self._tokens = tuple((name, token.encode()) for name, token in
                             settings.admin_tokens.items())
        self._service_tokens = tuple((name, token.encode()) for name, token in
                                     settings.service_tokens.items())
        self._secret = settings.jwt_secret
        self._jwks = _JwksKeys(settings.jwt_jwks_file) if settings.jwt_jwks_file else None
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def identify(self, metadata: Mapping[str, str],
                 auth_context: Mapping[str, Iterable[bytes]] | None = None) -> Identity:
        """Everything the call proves; Unauthenticated when it proves nothing, or when any
        credential it carries is bad (a bad credential is never ignored)."""
        person = None
        if metadata.get("x-admin-token") or metadata.get("authorization"):
            person = self.authenticate(metadata)
        service = certificate_identity(auth_context or {})
        if service is not None:
            _used("certificate", service)
        elif metadata.get(SERVICE_TOKEN_HEADER):
            service = self._check_token(metadata[SERVICE_TOKEN_HEADER], self._service_tokens,
                                        "service token not accepted")
            _used("service-token", service)
        if person is None and service is None:
            raise Unauthenticated("missing credentials: send x-admin-token, a Bearer JWT or a "
                                  "service identity (x-service-token or a client certificate)")
        return Identity(person, service)

    def authenticate(self, metadata: Mapping[str, str]) -> Principal:
        """The person behind the metadata; raises Unauthenticated when there is none."""
        token = metadata.get("x-admin-token")
        if token:
            name = self._check_token(token, self._tokens, "admin token not accepted")
            _used("admin-token", name)
            return Principal(actor=name, role=ROLE_ADMIN)
        authorization = metadata.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return self._check_jwt(credential.strip())
        raise Unauthenticated("missing credentials: send x-admin-token or a Bearer JWT")

    @staticmethod
    def _check_token(token: str, accepted: tuple[tuple[str, bytes], ...], refusal: str) -> str:
        offered = token.encode()
        match = None
        # Compare against every token, without an early exit, so timing says nothing.
        for name, expected in accepted:
            if hmac.compare_digest(offered, expected) and match is None:
                match = name
        if match is None:
            raise Unauthenticated(refusal)
        return match

    def _key_for(self, token: str) -> tuple[Any, str]:
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
        if not (isinstance(claims["iat"], int) and isinstance(claims["exp"], int)) or \
                claims["exp"] - claims["iat"] > MAX_JWT_LIFETIME_S:
            raise Unauthenticated("JWT lifetime (exp - iat) must be at most 24 h")
        role = claims.get("role")
        if role not in (ROLE_ADMIN, ROLE_STAFF):
            raise Unauthenticated("JWT role must be ADMIN or STAFF")
        organization_id = claims.get("org")
        if organization_id is not None and not _positive_int(organization_id):
            raise Unauthenticated("JWT `org` must be a positive organisation id")
        if role == ROLE_STAFF and organization_id is None:
            raise Unauthenticated("a STAFF JWT must carry its organisation in `org`")
        session_id = claims.get("sid")
        if session_id is not None and (not isinstance(session_id, str)
                                       or session_id in self._revoked):
            raise Unauthenticated("session ended: sign in again")
        user_id = claims.get("uid")
        _used("jwt", "")
        return Principal(actor=str(claims["sub"]), role=role,
                         organization_id=organization_id if role == ROLE_STAFF else None,
                         user_id=user_id if _positive_int(user_id) else None,
                         session_id=session_id or "")


MAX_ID = 2**63 - 1  # ids are int64 in every table and message


def _positive_int(value: object) -> bool:
    # bool is an int in Python: `"org": true` must not pass as organisation 1; an id beyond
    # int64 names nothing and would fail where it is put into a message.
    return type(value) is int and 0 < value <= MAX_ID


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The service named by a verified client certificate: its URI SAN spiffe://carpet/<name>,
    or its CN when it has no URI SAN; None without a client certificate."""
    if not auth_context.get("x509_pem_cert") and not auth_context.get("x509_common_name"):
        return None
    uris = [value.decode() for value in auth_context.get("x509_subject_alternative_name", ())
            if value.decode().startswith(("spiffe://", "https://", "http://"))]
    if uris:
        spiffe = [uri[len(SPIFFE_PREFIX):] for uri in uris if uri.startswith(SPIFFE_PREFIX)]
        if len(spiffe) != 1 or not spiffe[0] or "/" in spiffe[0]:
            raise Unauthenticated("client certificate names no spiffe://carpet/<service>")
        return spiffe[0]
    common_names = [value.decode() for value in auth_context.get("x509_common_name", ())]
    if len(common_names) != 1 or not common_names[0]:
        raise Unauthenticated("client certificate names no service")
    return common_names[0]


def mint_jwt(settings: Settings, subject: str, role: str, ttl_seconds: int,
             organization_id: int | None = None, *, user_id: int | None = None,
             session_id: str | None = None) -> str:
    """A short-lived HS256 JWT: for automation (python -m admin_gateway token), or a signed-in
    user's access token (with `uid` and `sid`, from the credit service's sign-in)."""
    import time

    if not settings.jwt_secret:
        raise ValueError("JWT_SECRET is not set")
    if organization_id is not None and not _positive_int(organization_id):
        raise ValueError("org must be a positive organisation id")
    if not 0 < ttl_seconds <= MAX_JWT_LIFETIME_S:
        raise ValueError("ttl must be between 1 s and 24 h")
    now = int(time.time())
    claims = {"sub": subject, "role": role, "iat": now, "exp": now + ttl_seconds,
              "aud": settings.jwt_audience, "iss": settings.jwt_issuer}
    if organization_id is not None:
        claims["org"] = organization_id
    if user_id is not None:
        claims["uid"] = user_id
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
