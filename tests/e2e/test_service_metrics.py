"""METRICS_ADDR: each service serves Prometheus text with RPC counts and latency by method and
code, the render queue depth, job durations and hold counts."""
import urllib.request

import grpc
import pytest

from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import identified_channel
from tests.processes import ServiceProcess

TOKEN = "metrics-admin-token-0123456789ab"


def scrape(address):
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.usefixtures("engine")
def test_services_serve_their_metrics(tmp_path, credit_db_url, render_db_url):
    env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
           "ADMIN_TOKENS": f"ops:{TOKEN}", "RENDER_STORAGE_DIR": str(tmp_path / "r"),
           "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "RENDER_ADDR": f"127.0.0.1:{free_port()}",
           "RENDER_WORKERS": "0"}
    credit_metrics, render_metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    credit = ServiceProcess("credit_service", env["CREDIT_ADDR"],
                            {**env, "METRICS_ADDR": credit_metrics}, str(tmp_path / "c.log"))
    render = ServiceProcess("render_service", env["RENDER_ADDR"],
                            {**env, "METRICS_ADDR": render_metrics}, str(tmp_path / "r.log"))
    try:
        credit.start()
        render.start()
        with grpc.insecure_channel(env["CREDIT_ADDR"]) as channel:
            org = account_pb2_grpc.AccountServiceStub(channel).CreateOrganization(
                account_pb2.CreateOrganizationRequest(name="Acme", initial_credits=5),
                metadata=(("x-admin-token", TOKEN),), timeout=10)
        with identified_channel(env["RENDER_ADDR"], "web") as channel:
            renders = render_pb2_grpc.RenderServiceStub(channel)
            carpet = renders.CreateCarpet(render_pb2.CreateCarpetRequest(
                sku="K", name="K", width_cm=1, length_cm=1, image=tiny_png()), timeout=10)
            renders.SubmitRender(render_pb2.SubmitRenderRequest(
                organization_id=org.id, carpet_id=carpet.id, mode="preview"), timeout=10)
            with pytest.raises(grpc.RpcError):
                renders.GetRender(render_pb2.GetRenderRequest(id=999), timeout=10)
        credit_text, render_text = scrape(credit_metrics), scrape(render_metrics)
        assert ('carpet_rpc_requests_total{code="OK",method="/carpet.credit.v1.CreditService/'
                'ReserveCredits"} 1.0') in credit_text
        assert "carpet_credit_holds_held 1.0" in credit_text
        assert ('carpet_rpc_requests_total{code="NOT_FOUND",method="/carpet.render.v1.'
                'RenderService/GetRender"} 1.0') in render_text
        assert ('carpet_rpc_duration_seconds_count{code="OK",method="/carpet.render.v1.'
                'RenderService/SubmitRender"} 1.0') in render_text
        assert "carpet_render_jobs_queued 1.0" in render_text
        assert TOKEN not in credit_text
    finally:
        render.stop()
        credit.stop()
