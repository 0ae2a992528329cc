"""The admin surface as the protos declare it (admin_gateway.surface): read from the real
AdminService, and every inconsistent declaration refused with the method's name."""
import itertools

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from admin_gateway.servicer import AdminServicer, method_handlers
from admin_gateway.surface import OPERATIONS, POLICY, SurfaceError, read
from protos.carpet.admin.v1 import access_pb2, admin_pb2

_files = itertools.count()


def service_with(method_name="ListCarpets", roles=(access_pb2.ROLE_ADMIN,), relay="",
                 http=None, body="", output=".carpet.render.v1.ListCarpetsResponse",
                 access=True):
    """A one-method service declared with these options, added to the default pool."""
    case = descriptor_pb2.FileDescriptorProto(
        name=f"tests/surface_case_{next(_files)}.proto", package=f"carpet.case{next(_files)}",
        syntax="proto3", dependency=["protos/carpet/admin/v1/access.proto",
                                     "google/api/annotations.proto",
                                     "protos/carpet/render/v1/render.proto"])
    method = case.service.add(name="Case").method.add(
        name=method_name, input_type=".carpet.render.v1.ListCarpetsRequest", output_type=output)
    if access:
        declared = method.options.Extensions[access_pb2.access]
        declared.roles.extend(roles)
        declared.relay = relay
    if http is not None:
        rule = method.options.Extensions[annotations_pb2.http]
        setattr(rule, http[0], http[1]) if http[0] != "custom" else rule.custom.SetInParent()
        rule.body = body
    descriptor_pool.Default().Add(case)
    return descriptor_pool.Default().FindServiceByName(f"{case.package}.Case")


def test_the_admin_service_is_read_whole():
    service = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    assert [operation.name for operation in OPERATIONS] == [m.name for m in service.methods]
    assert set(POLICY) == {f"/carpet.admin.v1.AdminService/{m.name}" for m in service.methods}
    by_name = {operation.name: operation for operation in OPERATIONS}
    adjust = by_name["AdjustCredits"]
    assert (adjust.http.verb, adjust.http.template, adjust.http.body) == (
        "POST", "/admin/credits/adjust", True)
    assert (adjust.rule.admin, adjust.rule.staff, adjust.relay) == (
        True, False, "carpet.credit.v1.CreditService")
    assert by_name["Login"].rule.public and not by_name["Login"].rule.admin
    assert by_name["GetRenderImage"].picture and by_name["GetShopLogo"].picture
    assert by_name["ExportRenders"].export and not by_name["GetRenderImage"].export
    assert by_name["GetOverview"].relay == ""  # an aggregate: the servicer's own


def test_a_well_declared_relay_is_read():
    (operation,) = read(service_with(relay="carpet.render.v1.RenderService",
                                     http=("get", "/x/{id}")))
    assert (operation.relay, operation.http.verb, operation.http.template) == (
        "carpet.render.v1.RenderService", "GET", "/x/{id}")


@pytest.mark.parametrize(("options", "refusal"), [
    ({"access": False}, "declares no access"),
    ({"roles": ()}, "names no roles"),
    ({"roles": (access_pb2.ROLE_ANYONE, access_pb2.ROLE_ADMIN)}, "ROLE_ANYONE is alone"),
    ({"roles": (access_pb2.ROLE_UNSPECIFIED,)}, "names role 0"),
    ({"relay": "carpet.render.v1.NoSuchService"}, "relays to carpet.render.v1.NoSuchService"),
    ({"method_name": "ListNothing", "relay": "carpet.render.v1.RenderService"},
     "which has no ListNothing"),
    ({"relay": "carpet.render.v1.RenderService", "output": ".carpet.render.v1.Carpet"},
     "differ in their messages"),
    ({"http": ("custom", "")}, "HTTP pattern custom is not served"),
    ({"http": ("post", "/x"), "body": "name"}, "the body is the whole request or nothing"),
])
def test_an_inconsistent_declaration_is_refused_by_name(options, refusal):
    service = service_with(**options)
    with pytest.raises(SurfaceError, match=refusal) as refused:
        read(service)
    assert f"{service.full_name}." in str(refused.value)


class _Clients:
    """Channels the relays are built on; nothing is called through them here."""

    channel = grpc.insecure_channel("127.0.0.1:1")

    def relay_channel(self, service):
        return self.channel


def test_every_method_gets_a_handler_of_its_kind():
    handlers = method_handlers(AdminServicer(_Clients(), clock=None), _Clients())
    assert set(handlers) == {operation.name for operation in OPERATIONS}
    for operation in OPERATIONS:
        handler = handlers[operation.name]
        assert (handler.response_streaming, handler.request_streaming) == (
            operation.streaming, False), operation.name
        assert (handler.unary_stream if operation.streaming else handler.unary_unary)


def test_a_method_both_implemented_and_relayed_or_neither_stops_the_gateway():
    class Twice(AdminServicer):
        def ListCarpets(self, request, context):
            return None

    with pytest.raises(SurfaceError, match="ListCarpets: implemented and relayed"):
        method_handlers(Twice(_Clients(), clock=None), _Clients())

    class Missing(AdminServicer):
        GetOverview = None

    with pytest.raises(SurfaceError, match="GetOverview: not implemented"):
        method_handlers(Missing(_Clients(), clock=None), _Clients())
