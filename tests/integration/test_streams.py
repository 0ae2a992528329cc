"""Server reflection streams are bounded per caller, and cancelled after their lifetime or when
their client sends nothing; short calls keep being served meanwhile (the asyncio server,
carpet_common.serving)."""
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from carpet_common.server import create_server
from carpet_common.streams import StreamLimits


def open_reflection(channel, release: threading.Event):
    def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait()  # then send nothing more: an idle stream

    stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(requests())
    next(stream)
    return stream


def test_reflection_streams_are_bounded_and_idle_ones_are_closed():
    limits = StreamLimits(total=3, per_principal=3, reflection_per_principal=2, lifetime_s=60,
                          idle_s=1)
    running, port = create_server("127.0.0.1:0", lambda server: None, [], max_workers=4,
                                  stream_limits=limits)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    release = threading.Event()
    try:
        held = [open_reflection(channel, release) for _ in range(2)]
        with pytest.raises(grpc.RpcError) as refused:
            open_reflection(channel, release)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == ("too many open streams of this kind from one caller "
                                           "(REFLECTION_PER_PRINCIPAL 2); close one and retry")
        # Short calls are still served.
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(20):
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        # The idle streams are cancelled by the server, which frees their slots.
        for stream in held:
            with pytest.raises(grpc.RpcError) as closed:
                next(stream)
            assert closed.value.code() == grpc.StatusCode.CANCELLED
            assert closed.value.details() == "the stream sent nothing for 1 s"
        open_reflection(channel, release)  # a slot is free again
    finally:
        release.set()
        channel.close()
        running.stop(grace=1)


def test_a_stream_past_its_lifetime_is_cancelled_though_never_idle():
    limits = StreamLimits(total=3, per_principal=3, reflection_per_principal=2, lifetime_s=1,
                          idle_s=60)
    running, port = create_server("127.0.0.1:0", lambda server: None, [], max_workers=4,
                                  stream_limits=limits)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stop = threading.Event()

    def busy_requests():  # a request every 0.2 s: never idle
        while not stop.wait(0.2):
            yield reflection_pb2.ServerReflectionRequest(list_services="")

    try:
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            busy_requests(), timeout=30)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:  # answers keep coming until the server ends the stream
                pass
        assert ended.value.code() == grpc.StatusCode.CANCELLED
        assert ended.value.details() == "the stream reached its lifetime (1 s); open a new one"
    finally:
        stop.set()
        channel.close()
        running.stop(grace=1)


def test_unary_calls_beyond_the_queue_are_refused_while_the_queue_drains():
    """One worker thread: 64 calls (64 × GRPC_MAX_WORKERS) may wait for it or hold it; of 80
    sent at once, the 16 beyond are RESOURCE_EXHAUSTED at once, and once the worker is released
    every admitted call is answered. Nothing is answered before the release, so exactly 64 are
    admitted whatever order they arrive in."""
    release = threading.Event()

    def hold(request, context):
        release.wait(120)
        return b"done"

    def register(server):
        handler = grpc.unary_unary_rpc_method_handler(hold, request_deserializer=bytes,
                                                      response_serializer=bytes)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Queue", {"Hold": handler}),))

    running, port = create_server("127.0.0.1:0", register, [], max_workers=1)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/test.Queue/Hold", request_serializer=bytes,
                               response_deserializer=bytes)
    try:
        sent = [call.future(b"", timeout=180) for _ in range(80)]
        refused = []
        for answer in sent:  # the refusals come back while the admitted calls still wait
            answer.add_done_callback(refused.append)
        deadline = time.monotonic() + 120
        while len(refused) < 16:
            assert time.monotonic() < deadline, f"only {len(refused)} calls refused"
            time.sleep(0.05)
        assert len(refused) == 16
        for answer in refused:
            assert answer.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert answer.details() == "the server is busy (too many calls waiting); retry shortly"
        release.set()
        admitted = [answer for answer in sent if answer not in refused]
        assert [answer.result() for answer in admitted] == [b"done"] * 64
    finally:
        release.set()
        channel.close()
        running.stop(grace=1)
