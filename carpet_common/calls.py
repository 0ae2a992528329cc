"""What every RPC knows about its caller, set once per call by `CallContextInterceptor` and
`AuthInterceptor` and read by the layers below (audit, rate limits, role checks)."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import ipaddress
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc

from carpet_common import errors
from carpet_common.auth import ANONYMOUS, Authenticator, Principal, Rule, admit
from carpet_common.interceptors import Around, AroundInterceptor
from carpet_common.logs import request_id_var

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallInfo:
    method: str
    client_ip: str
    request_id: str
    metadata: Mapping[str, str]


call_var: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("call", default=None)
principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None)


def current_call() -> CallInfo:
    call = call_var.get()
    if call is None:
        raise RuntimeError("no RPC in progress")
    return call


def current_principal() -> Principal:
    """The verified caller of the RPC in progress (ANONYMOUS on a public method)."""
    principal = principal_var.get()
    if principal is None:
        raise RuntimeError("no RPC in progress")
    return principal


@dataclass(frozen=True)
class Who:
    """Who makes a change, as its audit entry names them. Domain code that records a change is
    given one (the servicer takes it from its call with `who_calls()`); it never reads the
    call's context itself."""

    actor: str
    role: str
    user_id: int | None = None
    organization_id: int | None = None  # a STAFF person's organisation
    via: str = ""  # the service that relayed a person's call (the gateway)
    client_ip: str = ""
    request_id: str = ""
    method: str = ""  # the full gRPC method of the call


def who_calls() -> Who:
    """The caller of the RPC in progress, for servicers to pass on."""
    principal, call = current_principal(), current_call()
    return Who(actor=principal.actor, role=principal.role, user_id=principal.user_id,
               organization_id=principal.organization_id, via=principal.via or "",
               client_ip=call.client_ip, request_id=call.request_id, method=call.method)


def peer_ip(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` -> the address alone."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


def client_ip(peer_address: str, forwarded_for: str, trusted_proxies: Sequence[str]) -> str:
    """The peer, or — when the peer is a trusted proxy — the first untrusted hop of
    x-forwarded-for, read from the right (hops further left are the client's own claims)."""
    if not forwarded_for:  # most calls: nothing to believe or not, no address to parse
        return peer_address
    trusted = trusted_networks(tuple(trusted_proxies))
    address = peer_address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while is_trusted(address, trusted) and hops:
        address = hops.pop()
    return address


@functools.lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """TRUSTED_PROXIES as networks (an entry that is not one is ignored); parsed once per
    setting, not on every call."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return tuple(networks)


def is_trusted(address: str, networks: Iterable[IpNetwork]) -> bool:
    if address.startswith("unix:"):
        # A Unix socket is reachable only from this machine's file system: the gateway's own
        # HTTP front end uses one and passes the browser's address on.
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


# Services whose x-forwarded-for is believed because of who they proved to be, not where they
# call from: the admin gateway passes each person's address on (its HTTP front end learns it
# over its private Unix socket). Loopback or a private network proves nothing.
RELAYING_SERVICES = frozenset({"admin-gateway"})


def _relayed_address(call: CallInfo) -> str | None:
    """The last hop of x-forwarded-for: the address the relaying service saw."""
    hops = [hop.strip() for hop in call.metadata.get("x-forwarded-for", "").split(",")]
    try:
        return str(ipaddress.ip_address(hops[-1]))
    except ValueError:
        return None


class CallContextInterceptor(AroundInterceptor):
    """Outermost: request id (from `x-request-id` or new), client IP, metadata."""

    def __init__(self, trusted_proxies: Sequence[str] = ()):
        self._trusted = tuple(trusted_proxies)

    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def in_call(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            metadata, forwarded = {}, []
            for key, value in context.invocation_metadata():
                if not isinstance(value, str):
                    continue
                if key == "x-forwarded-for":  # every line counts: hops may come in several
                    forwarded.append(value)
                else:
                    metadata[key] = value
            if forwarded:
                metadata["x-forwarded-for"] = ",".join(forwarded)
            request_id = metadata.get("x-request-id", "")[:100] or uuid.uuid4().hex
            ip = client_ip(peer_ip(context.peer()), metadata.get("x-forwarded-for", ""),
                           self._trusted)
            call_token = call_var.set(CallInfo(method, ip, request_id, metadata))
            request_token = request_id_var.set(request_id)
            try:
                yield
            finally:
                call_var.reset(call_token)
                request_id_var.reset(request_token)

        return in_call


@dataclass(frozen=True)
class Denial:
    """A refused call, for the audit log."""

    method: str
    actor: str
    role: str
    outcome: str  # "denied:UNAUTHENTICATED" / "denied:PERMISSION_DENIED"
    message: str
    client_ip: str
    request_id: str


class AuthInterceptor(AroundInterceptor):
    """Identifies the caller of every call and checks it against the service's policy table
    (method -> `Rule`); a method missing from the table is refused (deny by default). Refusals
    go to `on_denied` before the error is raised. grpc's own health and reflection servicers are
    the only calls without an identity (AroundInterceptor leaves them alone)."""

    def __init__(self, authenticator: Authenticator, policy: Mapping[str, Rule],
                 on_denied: Callable[[Denial], None] | None = None):
        self._authenticator = authenticator
        self._policy = dict(policy)
        self._on_denied = on_denied

    def _admit(self, method: str, context: grpc.ServicerContext) -> Principal:
        call = current_call()
        rule = self._policy.get(method)
        if rule is not None and rule.public:
            return ANONYMOUS  # a sign-in call: its request carries the credential it proves
        identity = None
        try:
            identity = self._authenticator.identify(call.metadata, context.auth_context())
            principal = admit(identity, rule)
            if identity.service in RELAYING_SERVICES and (hop := _relayed_address(call)):
                # Reset by CallContextInterceptor's own token when the call ends.
                call_var.set(dataclasses.replace(call, client_ip=hop))
            return principal
        except (errors.Unauthenticated, errors.PermissionDenied) as error:
            if self._on_denied is not None:
                self._on_denied(Denial(
                    method=method,
                    actor=identity.actor if identity else "anonymous",
                    role=identity.role if identity else "",
                    outcome=f"denied:{error.grpc_code.name}", message=error.message,
                    client_ip=call.client_ip, request_id=call.request_id))
            raise

    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def admitted(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            token = principal_var.set(self._admit(method, context))
            try:
                yield
            finally:
                principal_var.reset(token)

        return admitted
