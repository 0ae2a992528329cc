"""Client-side workloads of the admin scenarios: calls to the gateway's AdminService with the
bench's admin token (see bench/credit_workloads.py for the shape)."""
from __future__ import annotations

import datetime

import grpc

from bench.health import health_check_of
from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.render.v1 import render_pb2

TIMEOUT_S = 30


def _admin(config: dict):
    return admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(config["admin_address"]))


health_check = health_check_of("admin_address")


def overview(config: dict, index: int):
    stub, metadata = _admin(config), (("x-admin-token", config["admin_token"]),)

    def operation() -> int:
        stub.GetOverview(admin_pb2.GetOverviewRequest(), metadata=metadata, timeout=TIMEOUT_S)
        return 1

    return operation


def overview_http(config: dict, index: int):
    """`GET /admin/overview` over one kept-alive HTTP connection, as the admin page asks."""
    import http.client
    import json

    host, port = config["admin_http_address"].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    headers = {"x-admin-token": config["admin_token"]}

    def operation() -> int:
        connection.request("GET", "/admin/overview", headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200 or "organizations" not in json.loads(body):
            raise RuntimeError(f"HTTP {answer.status}: {body[:200]!r}")
        return 1

    return operation


def _list_renders(config: dict, page_token: str):
    stub, metadata = _admin(config), (("x-admin-token", config["admin_token"]),)
    request = render_pb2.ListRendersRequest(page_size=50, page_token=page_token)

    def operation() -> int:
        page = stub.ListRenders(request, metadata=metadata, timeout=TIMEOUT_S)
        if len(page.renders) != 50:
            raise RuntimeError(f"a short page: {len(page.renders)} renders")
        return 1

    return operation


def list_renders(config: dict, index: int):
    """The newest page, as the admin page opens it."""
    return _list_renders(config, "")


def list_renders_deep(config: dict, index: int):
    """A page from the middle of the history (its token made from the row there)."""
    return _list_renders(config, config["deep_page_token"])


def usage_30d(config: dict, index: int):
    """The console's chart: 30 days of renders and credits, from the daily roll-ups."""
    stub, metadata = _admin(config), (("x-admin-token", config["admin_token"]),)
    start = datetime.date.fromisoformat(config["history_first_day"])
    request = admin_pb2.GetUsageRequest(from_date=start.isoformat(),
                                        to_date=(start + datetime.timedelta(days=29)).isoformat())

    def operation() -> int:
        usage = stub.GetUsage(request, metadata=metadata, timeout=TIMEOUT_S)
        if len(usage.days) != 30:
            raise RuntimeError(f"{len(usage.days)} days")
        return 1

    return operation


def export_renders(config: dict, index: int):
    """An export of a fixed window of 1,000 jobs (the whole history at 1k, a slice from its
    middle at 1M): what one export costs must not grow with the history."""
    stub, metadata = _admin(config), (("x-admin-token", config["admin_token"]),)
    request = render_pb2.ListRendersRequest()
    request.created_after.FromJsonString(config["export_window"][0])
    request.created_before.FromJsonString(config["export_window"][1])

    def operation() -> int:
        rows = sum(len(page.renders) for page in
                   stub.ExportRenders(request, metadata=metadata, timeout=TIMEOUT_S))
        if rows != 1000:
            raise RuntimeError(f"{rows} rows exported")
        return 1

    return operation
