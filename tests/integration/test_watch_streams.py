"""WatchRender streams hold no thread while they wait (carpet_common.serving): a render server
with two worker threads keeps 500 of them open and still answers short calls, and each sees its
job end. Long streams count per caller (STREAMS_PER_PRINCIPAL): a caller over its limit is
refused with the limit's name, others are not affected, and a client that goes away frees its
slot at once. A graceful stop ends waiting streams with UNAVAILABLE, which clients retry."""
import dataclasses
import time

import grpc
import pytest

from protos.carpet.render.v1 import render_pb2
from tests.helpers import ADMIN, render_stubs
from tests.integration.test_status_hub import change_elsewhere, new_jobs

WATCHERS = 500


@pytest.fixture
def start_render_server(render_db, render_settings):
    from render_service.app import build_server

    started = []

    def start(**overrides):
        running, port = build_server(dataclasses.replace(render_settings, **overrides),
                                     "127.0.0.1:0")
        started.append(running)
        return running, render_stubs(port)

    yield start
    for running in started:
        running.stop(grace=1)


def watch(stubs, job_id, metadata=()):
    stream = stubs.renders.WatchRender(render_pb2.WatchRenderRequest(id=job_id), timeout=120,
                                       metadata=metadata)
    assert next(stream).status == render_pb2.RENDER_STATUS_QUEUED
    return stream


def test_five_hundred_waiting_streams_on_two_worker_threads(start_render_server, render_db_url):
    _, web = start_render_server(grpc_max_workers=2)
    ids = new_jobs(WATCHERS // 5)
    streams = [(job_id, watch(web, job_id)) for job_id in ids * 5]
    try:
        # Short calls still find a worker thread: nothing waits on one.
        for job_id in ids[:20]:
            assert web.renders.GetRender(render_pb2.GetRenderRequest(id=job_id),
                                         timeout=5).status == render_pb2.RENDER_STATUS_QUEUED
        for job_id in ids:
            change_elsewhere(render_db_url, job_id, "failed")
        for job_id, stream in streams:
            assert [update.status for update in stream] == [render_pb2.RENDER_STATUS_FAILED], \
                job_id
    finally:
        for _, stream in streams:
            stream.cancel()


def test_a_caller_over_its_stream_limit_is_refused_alone(start_render_server):
    _, web = start_render_server(streams_per_principal=3)
    (job_id,) = new_jobs(1)
    held = [watch(web, job_id) for _ in range(3)]
    try:
        with pytest.raises(grpc.RpcError) as refused:
            watch(web, job_id)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.value.details() == ("too many open streams of this kind from one caller "
                                           "(STREAMS_PER_PRINCIPAL 3); close one and retry")
        held.append(watch(web.anonymous, job_id, ADMIN))  # another caller is not affected
        # A client that goes away frees its slot as soon as the server hears of it.
        held.pop(0).cancel()
        deadline = time.monotonic() + 10
        while True:
            try:
                held.append(watch(web, job_id))
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "a cancelled stream kept its slot"
                time.sleep(0.01)
    finally:
        for stream in held:
            stream.cancel()


def test_a_graceful_stop_ends_waiting_streams_with_unavailable(start_render_server):
    running, web = start_render_server()
    (job_id,) = new_jobs(1)
    stream = watch(web, job_id)
    running.stop(grace=30)  # the stream is ended at the start, not after the grace period
    with pytest.raises(grpc.RpcError) as ended:
        next(stream)
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ended.value.details() == "the server is stopping; retry"
