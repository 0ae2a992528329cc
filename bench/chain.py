"""The ceiling of the design's shape for a call that crosses services: `ceiling.chain` and
`ceiling.chain3` (docs/performance.md).

`python -m bench.chain serve` starts a server built with the project's own bootstrap
(`carpet_common.server.create_server`) and the interceptors every service runs that do not
need a database (metrics, call context, the error map, authentication by service token, text
fields). It answers calls shaped like `SubmitRender` and `ReserveCredits`: with CHAIN_NEXT set,
by making one nested unary call to the next such server (as the render service calls the credit
service), otherwise at once. No database anywhere, so a chain of two servers is the
floor of `render.submit` and a chain of three that of the admin gateway's listing.

Settings: CHAIN_ADDR (listen), CHAIN_NEXT (the next server's address, empty for the last),
SERVICE_TOKENS (accepted), SERVICE_TOKEN (presented to the next), the worker pool as the
services' (GRPC_MAX_WORKERS).
"""
from __future__ import annotations

import os
import sys

import grpc
from google.protobuf import timestamp_pb2

from carpet_common.auth import Authenticator, services
from carpet_common.calls import AuthInterceptor, CallContextInterceptor
from carpet_common.cli import start
from carpet_common.interceptors import ErrorMappingInterceptor, TextFieldInterceptor
from carpet_common.metrics import MetricsInterceptor
from carpet_common.server import create_server, run_until_signal, service_channel
from protos.carpet.credit.v1 import credit_pb2
from protos.carpet.render.v1 import render_pb2

SERVICE = "bench.Chain"
SUBMIT = f"/{SERVICE}/Submit"
RESERVE = f"/{SERVICE}/Reserve"
NEXT_TIMEOUT_S = 10


def _hold_answer(request: credit_pb2.ReserveCreditsRequest) -> credit_pb2.Hold:
    """What the last server answers: a hold as the credit service would fill it."""
    expires = timestamp_pb2.Timestamp()
    expires.GetCurrentTime()
    expires.seconds += request.ttl_seconds
    return credit_pb2.Hold(id=1, organization_id=request.organization_id,
                           amount=request.amount, reference=request.reference,
                           state=credit_pb2.HOLD_STATE_HELD, expires_at=expires,
                           user_id=request.user_id)


def _job_answer(request: render_pb2.SubmitRenderRequest, hold: credit_pb2.Hold,
                ) -> render_pb2.RenderJob:
    """What a middle server answers: a job as the render service would fill it."""
    created = timestamp_pb2.Timestamp()
    created.GetCurrentTime()
    return render_pb2.RenderJob(id=hold.id, organization_id=request.organization_id,
                                user_id=request.user_id, carpet_id=request.carpet_id,
                                mode=request.mode, status=render_pb2.RENDER_STATUS_QUEUED,
                                created_at=created, hold_id=hold.id)


def handler(next_address: str, service_token: str) -> grpc.GenericRpcHandler:
    """Two methods, with the two hops' messages: `Submit` (a SubmitRenderRequest in, a RenderJob
    out, as the render service) and `Reserve` (a ReserveCreditsRequest in, a Hold out, as the
    credit service). Each makes one nested `Reserve` call to the next server when there is
    one; the last answers at once."""
    call_next = None
    if next_address:
        channel = service_channel(next_address, service_token=service_token)
        call_next = channel.unary_unary(
            RESERVE, request_serializer=credit_pb2.ReserveCreditsRequest.SerializeToString,
            response_deserializer=credit_pb2.Hold.FromString)

    def reserve(request, context):
        if call_next is not None:
            return call_next(request, timeout=NEXT_TIMEOUT_S)
        return _hold_answer(request)

    def submit(request, context):
        hold = reserve(credit_pb2.ReserveCreditsRequest(
            organization_id=request.organization_id, amount=1,
            reference=f"render-job:{request.carpet_id}", ttl_seconds=600,
            user_id=request.user_id), context)
        return _job_answer(request, hold)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Submit": grpc.unary_unary_rpc_method_handler(
            submit, request_deserializer=render_pb2.SubmitRenderRequest.FromString,
            response_serializer=render_pb2.RenderJob.SerializeToString),
        "Reserve": grpc.unary_unary_rpc_method_handler(
            reserve, request_deserializer=credit_pb2.ReserveCreditsRequest.FromString,
            response_serializer=credit_pb2.Hold.SerializeToString),
    })


def main() -> int:
    _args, settings = start("bench.chain", ("serve",))
    next_address = os.environ.get("CHAIN_NEXT", "")
    callers = services("render", "web")
    interceptors = [
        MetricsInterceptor(),
        CallContextInterceptor(settings.trusted_proxies),
        ErrorMappingInterceptor(),
        AuthInterceptor(Authenticator(settings), dict.fromkeys((SUBMIT, RESERVE), callers)),
        TextFieldInterceptor(),
    ]
    chain_handler = handler(next_address, settings.service_token or "")
    running, _port = create_server(
        os.environ["CHAIN_ADDR"], lambda server: server.add_generic_rpc_handlers((chain_handler,)),
        (SERVICE,), interceptors=interceptors, max_workers=settings.grpc_max_workers,
        reflection=False)
    run_until_signal([running])
    return 0


if __name__ == "__main__":
    sys.exit(main())
