"""Client-side workloads of the render scenarios (see bench/credit_workloads.py for the shape)."""
from __future__ import annotations

from bench.environment import channel_as
from bench.health import health_check_of
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc

TIMEOUT_S = 30
FINAL = (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)


health_check = health_check_of("render_address")


def _submit_request(config: dict) -> render_pb2.SubmitRenderRequest:
    return render_pb2.SubmitRenderRequest(organization_id=config["render_organization"],
                                          carpet_id=config["carpet"], mode="preview")


def submit(config: dict, index: int):
    stub = render_pb2_grpc.RenderServiceStub(
        channel_as(config, config["render_address"], "web"))
    request = _submit_request(config)

    def operation() -> int:
        stub.SubmitRender(request, timeout=TIMEOUT_S)
        return 1

    return operation


def end_to_end(config: dict, index: int):
    """Submit, then watch until the job ends: one operation is one finished render."""
    stub = render_pb2_grpc.RenderServiceStub(
        channel_as(config, config["render_address"], "web"))
    request = _submit_request(config)

    def operation() -> int:
        job = stub.SubmitRender(request, timeout=TIMEOUT_S)
        for update in stub.WatchRender(render_pb2.WatchRenderRequest(id=job.id),
                                       timeout=120):
            if update.status in FINAL:
                if update.status != render_pb2.RENDER_STATUS_SUCCESS:
                    raise RuntimeError(f"render failed: {update.error_text}")
                return 1
        raise RuntimeError("watch ended early")

    return operation
