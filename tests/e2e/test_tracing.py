"""Traces across the three processes (`carpet_common/tracing.py`, docs/operations.md
"Tracing"): a shop's page submits a render through the gateway's HTTP API with its own
`traceparent`; the gateway, the render service and the credit service (real processes on
PostgreSQL) export their spans over OTLP to a collector on loopback, and they form one trace —
HTTP request, the gRPC calls on both sides, the SQL statements under them. The render's work is
a trace of its own linked to the submission; JSON log lines carry the trace's ids; no span
holds the publishable key."""
import base64
import json
import secrets
import time
import urllib.request

import pytest

from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import multipart_form
from tests.otlp_collector import OtlpCollector
from tests.processes import ServiceProcess, run_cli

ADMIN_TOKEN = "trace-test-admin-token-0123456789"
SHOP = "https://shop.example"
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind


def http(base, path, *, method="GET", body=None, headers=None):
    data, headers = None, dict(headers or {})
    if isinstance(body, dict):
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif isinstance(body, bytes):
        data = body
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_submission_is_one_trace_across_the_three_processes(tmp_path, credit_db_url,
                                                              render_db_url):
    with OtlpCollector() as collector:
        env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
               "CREDIT_ADDR": f"127.0.0.1:{free_port()}",
               "RENDER_ADDR": f"127.0.0.1:{free_port()}",
               "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}",
               "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}",
               "ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}", "RENDER_WORKERS": "1",
               "RENDER_STORAGE_DIR": str(tmp_path / "renders"), "LOG_FORMAT": "json",
               "RATE_LIMIT_ADMIN": "off",
               # Only the endpoint: tracing comes on by it alone; batches leave every 100 ms.
               "OTEL_EXPORTER_OTLP_ENDPOINT": collector.origin, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        for module in ("credit_service", "render_service"):
            migrated = run_cli(module, "migrate", env)
            assert migrated.returncode == 0, migrated.stderr
        processes = [ServiceProcess(module, env[address], env, str(tmp_path / f"{module}.log"))
                     for module, address in (("credit_service", "CREDIT_ADDR"),
                                             ("render_service", "RENDER_ADDR"),
                                             ("admin_gateway", "ADMIN_GRPC_ADDR"))]
        try:
            for process in processes:
                process.start()
            base, admin = f"http://{env['ADMIN_HTTP_ADDR']}", {"x-admin-token": ADMIN_TOKEN}
            _, shop = http(base, "/admin/organizations", method="POST", headers=admin,
                           body={"name": "İz Halı", "initialCredits": "50"})
            _, carpet = http(base, "/admin/carpets", method="POST", headers=admin, body={
                "organizationId": shop["id"], "sku": "IZ-1", "name": "Kilim",
                "image": base64.b64encode(tiny_png()).decode(),
                "sizes": [{"widthCm": 80, "lengthCm": 150}]})
            _, key = http(base, "/admin/publishable-keys", method="POST", headers=admin,
                          body={"organizationId": shop["id"], "allowedOrigins": [SHOP]})

            # The shop's page, itself traced: its span is the parent of the gateway's.
            trace_id, page_span = secrets.token_hex(16), secrets.token_hex(8)
            body, content_type = multipart_form({"roomImage": tiny_png(size=(64, 48)),
                                            "carpetId": carpet["id"], "mode": "preview"})
            status, render = http(base, "/public/v1/renders", method="POST", body=body, headers={
                "Content-Type": content_type, "X-Publishable-Key": key["key"], "Origin": SHOP,
                "traceparent": f"00-{trace_id}-{page_span}-01"})
            assert status == 201, render
            deadline = time.monotonic() + 60
            while render["status"] not in ("success", "failed"):
                assert time.monotonic() < deadline, render
                time.sleep(0.2)
                _, render = http(base, f"/public/v1/renders/{render['id']}",
                                 headers={"X-Publishable-Key": key["key"], "Origin": SHOP})
            assert render["status"] == "success", render

            collector.wait_for(lambda span: span.parent_id == page_span)
            work = collector.wait_for(lambda span: span.name == "render work")
            collector.wait_for(lambda span: span.trace_id == work.trace_id
                               and span.name.endswith("CreditService/CaptureHold")
                               and span.kind == SERVER)
        finally:
            for process in processes:
                process.stop()
        logs = {process.module: process.log() for process in processes}

    spans = collector.trace(trace_id)
    by_id = {span.span_id: span for span in spans}
    [request] = [span for span in spans if span.parent_id == page_span]
    assert (request.service, request.name, request.kind) == (
        "admin_gateway", "POST /public/v1/renders", SERVER)
    assert (request.attributes["http.route"], request.attributes["http.response.status_code"]
            ) == ("/public/v1/renders", 201)

    def ancestors(span):
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append((span.service, span.name, span.kind))
        return chain

    # The render service's handler, called by the gateway, under the HTTP request.
    [submission] = [span for span in spans if span.service == "render_service"
                    and span.name == "carpet.render.v1.RenderService/SubmitPublicRender"]
    assert submission.kind == SERVER and submission.attributes["rpc.grpc.status_code"] == 0
    assert ancestors(submission) == [
        ("admin_gateway", "carpet.render.v1.RenderService/SubmitPublicRender", CLIENT),
        ("admin_gateway", "POST /public/v1/renders", SERVER)]
    # The hold, reserved by the credit service under the render service's call.
    [reserve] = [span for span in spans if span.service == "credit_service"
                 and span.kind == SERVER]
    assert ancestors(reserve)[:2] == [("render_service", reserve.name, CLIENT),
                                      ("render_service", submission.name, SERVER)]
    # PostgreSQL statements in both services, each under its service's handler; the text has
    # placeholders, never the values.
    for service, handler in (("render_service", submission), ("credit_service", reserve)):
        statements = [span for span in spans if span.service == service
                      and span.attributes.get("db.system.name") == "postgresql"]
        assert statements and all(by_id[span.parent_id] is not None for span in statements)
        assert any(handler.name == name for span in statements
                   for _, name, _ in ancestors(span))
    assert {span.service for span in spans} == {"admin_gateway", "render_service",
                                                 "credit_service"}

    # The render's work: a trace of its own, linked to the submission's handler span, with
    # the capture (and its statements) under it.
    assert work.service == "render_service" and work.trace_id != trace_id
    assert work.links == ((trace_id, submission.span_id),)
    work_trace = collector.trace(work.trace_id)
    assert {(span.service, span.name) for span in work_trace} >= {
        ("render_service", "carpet.credit.v1.CreditService/CaptureHold"),
        ("credit_service", "carpet.credit.v1.CreditService/CaptureHold")}

    # The gateway's access line for the request carries the trace.
    lines = [json.loads(line) for line in logs["admin_gateway"].splitlines()
             if line.startswith("{")]
    [access] = [line for line in lines if "POST /public/v1/renders 201" in line["message"]]
    assert (access["trace_id"], access["span_id"]) == (trace_id, request.span_id)
    # No span carries the publishable key (nor anything shaped like it).
    exported = json.dumps([span.attributes for span in collector.spans], ensure_ascii=False)
    assert key["key"] not in exported and "pk_live_" not in exported
