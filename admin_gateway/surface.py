"""The admin surface, read once from the AdminService descriptor: each method's roles and
pass-through service (`carpet.admin.v1.access`, protos/carpet/admin/v1/access.proto) and its HTTP
route (`google.api.http`). The gateway's access policy, HTTP routes, OpenAPI document and relayed
methods all come from here, so adding an admin operation is its proto declaration, the service's
method and its test (docs/architecture.md, "Admin gateway")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from carpet_common.auth import ADMIN, PUBLIC, Rule
from protos.carpet.admin.v1 import access_pb2, admin_pb2

SERVICE = "carpet.admin.v1.AdminService"
_ROLES = {access_pb2.ROLE_ADMIN: ADMIN, access_pb2.ROLE_STAFF: Rule(staff=True),
          access_pb2.ROLE_ANYONE: PUBLIC}
_VERBS = ("get", "put", "post", "delete", "patch")
# Methods whose HTTP request is a multipart upload the gateway reads (admin_gateway.imports),
# not the request message as JSON.
UPLOADS = frozenset({"ImportCarpets"})


class SurfaceError(ValueError):
    """An AdminService method declared inconsistently (found when the gateway starts)."""


@dataclass(frozen=True)
class HttpRoute:
    verb: str  # GET, POST…
    template: str  # /admin/carpets/{id}
    body: bool  # the request is the JSON body (`body: "*"`); otherwise the query string


@dataclass(frozen=True)
class Operation:
    service: str  # carpet.admin.v1.AdminService
    name: str  # GetOverview
    rule: Rule
    request_type: Any  # the message classes
    response_type: Any
    streaming: bool  # server-streaming: a picture's chunks or an export's pages
    relay: str  # the service whose method of the same name serves it, or ""
    picture: bool  # the answer is a picture
    http: HttpRoute | None

    @property
    def path(self) -> str:
        """The gRPC method path, as interceptors and the policy name it."""
        return f"/{self.service}/{self.name}"

    @property
    def route(self) -> HttpRoute:
        """Its HTTP route, for a method the HTTP API serves."""
        if self.http is None:
            raise LookupError(f"{self.name} is not served over HTTP")
        return self.http

    @property
    def upload(self) -> bool:
        return self.name in UPLOADS

    @property
    def export(self) -> bool:
        """Pages of a list, streamed: served over HTTP as CSV."""
        return self.streaming and not self.picture


def _rule(method: MethodDescriptor, access: access_pb2.Access) -> Rule:
    if not access.roles:
        raise SurfaceError(f"{method.full_name} names no roles (option access)")
    if access_pb2.ROLE_ANYONE in access.roles and len(access.roles) > 1:
        raise SurfaceError(f"{method.full_name}: ROLE_ANYONE is alone or not at all")
    rule = Rule()
    for role in access.roles:
        if role not in _ROLES:
            raise SurfaceError(f"{method.full_name} names role {role}")
        rule |= _ROLES[role]
    return rule


def _http(method: MethodDescriptor) -> HttpRoute | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule = options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        raise SurfaceError(f"{method.full_name}: HTTP pattern {verb} is not served")
    if rule.body not in ("", "*"):
        raise SurfaceError(f"{method.full_name}: the body is the whole request or nothing")
    return HttpRoute(verb.upper(), getattr(rule, verb), rule.body == "*")


def _check_relay(method: MethodDescriptor, service: str) -> None:
    """A relay names a real method taking and answering the same messages."""
    try:
        target = descriptor_pool.Default().FindMethodByName(f"{service}.{method.name}")
    except KeyError:
        raise SurfaceError(f"{method.full_name} relays to {service}, which has no "
                           f"{method.name}") from None
    if (target.input_type.full_name != method.input_type.full_name
            or target.output_type.full_name != method.output_type.full_name
            or target.server_streaming or method.server_streaming):
        raise SurfaceError(f"{method.full_name} and {target.full_name} differ in their messages")


def read(service=admin_pb2.DESCRIPTOR.services_by_name["AdminService"]) -> tuple[Operation, ...]:
    operations = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(access_pb2.access):
            raise SurfaceError(f"{method.full_name} declares no access (option access)")
        access = options.Extensions[access_pb2.access]
        if access.relay:
            _check_relay(method, access.relay)
        operations.append(Operation(
            service=service.full_name, name=method.name, rule=_rule(method, access),
            request_type=GetMessageClass(method.input_type),
            response_type=GetMessageClass(method.output_type),
            streaming=method.server_streaming, relay=access.relay, picture=access.picture,
            http=_http(method)))
    return tuple(operations)


OPERATIONS = read()
# Who may call what. A method missing here is refused (there is none: each declares access).
POLICY = {operation.path: operation.rule for operation in OPERATIONS}
