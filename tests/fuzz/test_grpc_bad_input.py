"""Bad input for every RPC of every service, generated with hypothesis from the proto
descriptors (tests/fuzz/proto_strategies.py), against real servers on SQLite and PostgreSQL:
only the documented status codes come back (docs/reference.md; never INTERNAL or UNKNOWN), and
a refused call changes nothing in either database. The one deliberate exception: a render
refused for want of credit is kept as a `failed` job. Refused admin calls do add an audit row
(attempts are audited), so the audit tables are left out of the comparison and checked apart.

FUZZ_EXAMPLES sets the examples per RPC (default 25)."""
from __future__ import annotations

import dataclasses
import os

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, example, given, settings

from credit_service import models as credit_models
from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import account_pb2, audit_pb2, auth_pb2, credit_pb2
from protos.carpet.render.v1 import render_pb2
from render_service import models as render_models
from tests.builders import create_carpet, create_org, create_user, jpeg, submit
from tests.fake_image_api import tiny_png
from tests.fuzz.proto_strategies import message_strategy
from tests.helpers import ADMIN, GATEWAY_TOKEN, as_service, error_reason

pytestmark = pytest.mark.usefixtures("engine")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
DOCUMENTED_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
VALID_IMAGES = [tiny_png(), jpeg()]

SERVICES = {  # where each service is reached: "credit", "render" or "gateway"
    account_pb2.DESCRIPTOR.services_by_name["AccountService"]: "credit",
    credit_pb2.DESCRIPTOR.services_by_name["CreditService"]: "credit",
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"]: "credit",
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"]: "credit",
    render_pb2.DESCRIPTOR.services_by_name["RenderService"]: "render",
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"]: "gateway",
}
METHODS = [(target, method) for service, target in SERVICES.items()
           for method in service.methods]


def snapshot(database, models) -> dict[str, set]:
    """Every row of every table, as comparable tuples."""
    with database.connection_context():
        return {model._meta.table_name: {
            tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
            for row in model.select().tuples()} for model in models}


def shown(request) -> str:
    return text_format.MessageToString(request, as_one_line=True)[:400]


def changed_tables(before: dict, after: dict) -> dict[str, tuple[set, set]]:
    return {table: (before[table] - after[table], after[table] - before[table])
            for table in before if before[table] != after[table]}


@pytest.fixture
def fuzz_stack(credit_server, render_server, render_settings, credit_db, render_db):
    """The three servers, with rows the generated small ids can reach: organisations with and
    without credit, users, carpets, a queued render. Rate limits are off so that every example
    reaches the handlers."""
    from admin_gateway.app import build_server

    gateway_settings = dataclasses.replace(render_settings, rate_limit_admin="off",
                                           render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN)
    gateway, gateway_port = build_server(gateway_settings, "127.0.0.1:0")
    acme, empty = create_org(credit_server, "Acme", 40), create_org(credit_server, "Empty", 0)
    create_user(credit_server, acme.id, "ada@example.com", role=account_pb2.ROLE_ADMIN)
    create_user(credit_server, empty.id, "bo@example.com")
    carpet = create_carpet(render_server)
    create_carpet(render_server, sku="K-2", image=jpeg())
    submit(render_server, acme.id, carpet.id)
    # Bare channels: each call presents the identity its method admits (see `identity`).
    channels = {"credit": grpc.insecure_channel(f"127.0.0.1:{credit_server.port}"),
                "render": grpc.insecure_channel(f"127.0.0.1:{render_server.port}"),
                "gateway": grpc.insecure_channel(f"127.0.0.1:{gateway_port}")}
    yield channels
    for channel in channels.values():
        channel.close()
    gateway.stop(grace=1)


# Methods only services may call, and the service each is called as here.
SERVICE_ONLY = {"ReserveCredits": "render", "CaptureHold": "render", "ReleaseHold": "render",
                "BatchGetUsers": "admin-gateway", "GetAccountTotals": "admin-gateway",
                "RecordDenial": "admin-gateway", "RecordAction": "render",
                "Login": "admin-gateway",
                "Refresh": "admin-gateway", "Logout": "admin-gateway",
                "ListRevokedSessions": "admin-gateway"}
# Sign-in calls whose refusal is itself recorded: a failed attempt counts towards the lockout
# (login_failure) and is audited as denied; after five, the lockout answers RESOURCE_EXHAUSTED.
SIGN_IN = {"Login", "Refresh", "Logout"}


def identity(method: MethodDescriptor):
    """The admin token, or for a service-only method that service's token: every generated
    request reaches the handler, so what is tested is the handling of its content."""
    if method.name in SERVICE_ONLY and method.containing_service.name != "AdminService":
        return as_service(SERVICE_ONLY[method.name])
    return ADMIN


def invoke(channel: grpc.Channel, method: MethodDescriptor, request):
    """Call `method` as `identity(method)`; returns (code, reason) of the outcome. A server
    stream is read to its end (or to a short deadline: a watched job may still be queued)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = identity(method)
    response_type = GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            call = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                        response_deserializer=response_type.FromString)
            for _ in call(request, metadata=metadata, timeout=1.5):
                pass
        else:
            call = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                       response_deserializer=response_type.FromString)
            call(request, metadata=metadata, timeout=20)
    except grpc.RpcError as error:
        return error.code(), error_reason(error), error.details()
    return grpc.StatusCode.OK, "", ""


@pytest.mark.parametrize("target,method", METHODS,
                         ids=[f"{m.containing_service.name}.{m.name}" for _, m in METHODS])
def test_generated_requests_get_documented_codes_and_errors_change_nothing(
        fuzz_stack, credit_db, render_db, target, method):
    channel = fuzz_stack[target]
    databases = ((credit_db, credit_models.ALL_MODELS), (render_db, render_models.ALL_MODELS))

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(message_strategy(method.input_type, VALID_IMAGES))
    def check(request):
        before = [snapshot(database, models) for database, models in databases]
        code, reason, details = invoke(channel, method, request)
        allowed = DOCUMENTED_ERRORS | {grpc.StatusCode.OK}
        if method.name in SIGN_IN:
            allowed.add(grpc.StatusCode.RESOURCE_EXHAUSTED)
        if method.server_streaming:
            allowed.add(grpc.StatusCode.DEADLINE_EXCEEDED)  # a watched job still queued
        assert code in allowed, f"{method.full_name} -> {code.name}: {details} for {shown(request)}"
        if code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
            return
        after = [snapshot(database, models) for database, models in databases]
        credit_changes = changed_tables(before[0], after[0])
        credit_changes.pop("audit_chain_head", None)  # moves with every audit row
        audited = (f"error:{code.name}", f"denied:{code.name}")
        if "audit_log" in credit_changes:  # the refused attempt, audited; nothing else
            removed, added = credit_changes.pop("audit_log")
            assert not removed and all(set(audited) & set(row) for row in added), added
        if method.name in SIGN_IN and "login_failure" in credit_changes:
            removed, added = credit_changes.pop("login_failure")
            assert not removed and added
        render_changes = changed_tables(before[1], after[1])
        if "render_audit" in render_changes:  # a refused change of the render service, audited
            removed, added = render_changes.pop("render_audit")
            assert not removed and all(set(audited) & set(row) for row in added), added
        # A submission the credit service refused is kept as a failed job (render_service.
        # renders._reserve: not enough credit, or an organisation it does not know, which is
        # all a generated request can meet; a spend limit or a suspension needs setting up).
        refused_by_credit = method.name == "SubmitRender" and (
            reason == "INSUFFICIENT_CREDITS"
            or (code == grpc.StatusCode.NOT_FOUND
                and details == f"organisation {request.organization_id} not found"))
        if refused_by_credit:  # kept as failed
            removed, added = render_changes.pop("render_job")
            assert not removed and len(added) == 1 and "failed" in next(iter(added))
            job_id = next(iter(added))[0]
            # Its triggers count it and write its webhook event, in the same statement.
            removed, added = render_changes.pop("render_event", (set(), set()))
            assert not removed and [row[:3] for row in added] == [
                (job_id, request.organization_id, "render.failed")]
            for table in ("render_count", "render_daily"):
                removed, added = render_changes.pop(table)
                assert all("failed" in row for row in added), (table, added)
            # ... and counts it under its carpet (render_carpet_daily: organisation, day,
            # carpet, size, jobs).
            removed, added = render_changes.pop("render_carpet_daily")
            assert {row[2] for row in added} == {request.carpet_id}, added
        assert credit_changes == {}, f"{code.name} changed {credit_changes} for {shown(request)}"
        assert render_changes == {}, f"{code.name} changed {render_changes} for {shown(request)}"

    if method.name == "SubmitRender":  # found by CI: an organisation the credit service lacks
        check = example(GetMessageClass(method.input_type)(
            organization_id=2**63 - 1, carpet_id=2, mode="preview", idempotency_key="k"))(check)
    check()


@pytest.mark.parametrize("target", ["credit", "render", "gateway"])
def test_messages_above_the_size_limit_are_refused(fuzz_stack, credit_db, render_db, target):
    """gRPC itself refuses a request over MAX_MESSAGE_BYTES (24 MB) before any handler runs."""
    from carpet_common.server import MAX_MESSAGE_BYTES

    method = {"credit": account_pb2.DESCRIPTOR.services_by_name["AccountService"]
              .methods_by_name["CreateOrganization"],
              "render": render_pb2.DESCRIPTOR.services_by_name["RenderService"]
              .methods_by_name["CreateCarpet"],
              "gateway": admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
              .methods_by_name["CreateUser"]}[target]
    request = GetMessageClass(method.input_type)(name="x" * (MAX_MESSAGE_BYTES + 1))
    databases = ((credit_db, credit_models.ALL_MODELS), (render_db, render_models.ALL_MODELS))
    before = [snapshot(database, models) for database, models in databases]
    code, _, details = invoke(fuzz_stack[target], method, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert [snapshot(database, models) for database, models in databases] == before
