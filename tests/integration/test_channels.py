"""A service that comes back on the address of one that went away is reached by a new channel at
once. gRPC shares connections between channels of one process with the same target and options
(its global subchannel pool): without `grpc.use_local_subchannel_pool` a new channel inherits the
old one's reconnect backoff and fails fast with UNAVAILABLE for up to three seconds. Test servers
on port 0 meet this whenever the kernel hands out a port again (CI failed that way once)."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from carpet_common.server import create_server, service_channel


def _start(address: str):
    return create_server(address, lambda server: None, ())


def _check(channel) -> health_pb2.HealthCheckResponse:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_a_new_channel_does_not_inherit_a_dead_servers_backoff():
    first, port = _start("127.0.0.1:0")
    address = f"127.0.0.1:{port}"
    old = service_channel(address)
    assert _check(old).status == health_pb2.HealthCheckResponse.SERVING
    first.stop(grace=0)
    with pytest.raises(grpc.RpcError) as refused:  # connection refused: the old link backs off
        _check(old)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    second, _ = _start(address)
    try:
        new = service_channel(address)
        assert _check(new).status == health_pb2.HealthCheckResponse.SERVING
        new.close()
    finally:
        old.close()
        second.stop(grace=0)
