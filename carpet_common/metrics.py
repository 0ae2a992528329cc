"""Prometheus metrics of a process: RPC counts and latency by method and status code.
Recorded by `MetricsInterceptor` (outermost, so it sees the final code of every call)."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import grpc
from prometheus_client import Counter, Gauge, Histogram

from carpet_common import errors
from carpet_common.db import AnyDatabase
from carpet_common.interceptors import Around, AroundInterceptor

RPC_REQUESTS = Counter("carpet_rpc_requests_total", "gRPC calls handled", ["method", "code"])
RPC_SECONDS = Histogram("carpet_rpc_duration_seconds", "gRPC call latency", ["method", "code"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5, 5, 10))
# Set to the process's server's count (carpet_common.streams) when it starts.
LONG_STREAMS = Gauge("carpet_grpc_long_streams_open",
                     "long-lived streams open: WatchRender, exports, reflection")


def _code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, errors.DomainError):
        return str(error.grpc_code.name)
    code = context.code()
    if code is not None:
        return str(code.name)
    if isinstance(error, GeneratorExit):  # a stream ended by its client or by the server
        return "CANCELLED"
    return "OK" if error is None else "UNKNOWN"


class MetricsInterceptor(AroundInterceptor):
    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def measured(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            started, error = time.perf_counter(), None
            try:
                yield
            except BaseException as raised:
                error = raised
                raise
            finally:
                code = _code(context, error)
                RPC_REQUESTS.labels(method, code).inc()
                RPC_SECONDS.labels(method, code).observe(time.perf_counter() - started)

        return measured


def serve_metrics(address: str | None, process_index: int = 0) -> None:
    """Serve /metrics on METRICS_ADDR (host:port) from a background thread, when it is set.
    With SERVER_PROCESSES > 1 each process has its own counters: process i serves them on
    the port METRICS_ADDR names plus i."""
    if not address:
        return
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    start_http_server(int(port) + process_index, addr=host or "127.0.0.1")


def gauge_from_query(gauge: Gauge, database: AnyDatabase, query: Callable[[], float]) -> None:
    """Make `gauge` read `query()` (a number) from the database at each scrape."""

    def read() -> float:
        with database.connection_context():
            return float(query())

    gauge.set_function(read)
