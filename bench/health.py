"""The ceiling workload of every server: its gRPC health check, same clients as the scenarios."""
from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 10


def health_check_of(address_key: str):
    """A workload factory checking the health of the server at `config[address_key]`."""

    def factory(config: dict, index: int):
        stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(config[address_key]))
        request = health_pb2.HealthCheckRequest()

        def operation() -> int:
            stub.Check(request, timeout=TIMEOUT_S)
            return 1

        return operation

    return factory
