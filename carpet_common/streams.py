"""Long-lived streams cannot starve short calls.

A sync gRPC server gives every call one thread of its pool for as long as the call lasts. A
server-reflection stream or a `WatchRender` stream lasts as long as its client wants, so a
handful of them from one client would hold every thread and starve all unary calls. This
interceptor bounds them: per client IP and in total (well under the pool's size), with a
maximum lifetime and, for streams that wait on their client (reflection), an idle timeout; a
stream over a limit is refused with RESOURCE_EXHAUSTED, one that lived too long or idled is
cancelled by a watchdog, which frees its thread.

grpc's own health `Watch` does not hold a thread (its servicer is non-blocking and never
wrapped); connection age (`grpc.max_connection_age_ms`, carpet_common.server) bounds it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import grpc

from carpet_common import errors
from carpet_common.calls import call_var, peer_ip
from carpet_common.interceptors import abort_for

logger = logging.getLogger(__name__)

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@dataclass(frozen=True)
class StreamLimits:
    total: int = 8  # all long streams together: keep well under the server's thread pool
    per_client: int = 8  # one client IP's WatchRender streams (a backend waits on many renders)
    reflection_per_client: int = 2  # nobody needs more than a couple of these
    lifetime_s: float = 300.0
    idle_s: float = 60.0  # a stream fed by its client (reflection) that sends nothing


def limits_for(max_workers: int) -> StreamLimits:
    """Half the pool for long streams at most (the other half always serves short calls); one
    client may take them all for WatchRender, two for reflection."""
    total = max(1, max_workers // 2)
    return StreamLimits(total=total, per_client=total,
                        reflection_per_client=min(2, total))


@dataclass
class _Open:
    client: tuple[str, bool]
    context: grpc.ServicerContext
    started: float
    last_activity: float
    waits_on_client: bool


class StreamLimitInterceptor(grpc.ServerInterceptor):
    """Applies `limits` to `methods` (full method names), counting them together."""

    def __init__(self, methods, limits: StreamLimits, clock=time.monotonic):
        self._methods = frozenset(methods)
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}
        self._per_client: Counter = Counter()  # (client, reflection?) -> open streams
        self._watchdog: threading.Thread | None = None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self._methods:
            return handler
        if handler.request_streaming:  # reflection: fed by its client, watched for idling
            behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

            def bounded(requests, context):
                key = self._admit(context, waits_on_client=True)
                try:
                    yield from behaviour(self._watched(requests, key), context)
                finally:
                    self._leave(key)
        else:  # a server stream such as WatchRender
            behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler

            def bounded(request, context):
                key = self._admit(context, waits_on_client=False)
                try:
                    yield from behaviour(request, context)
                finally:
                    self._leave(key)

        return factory(bounded, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _client(self, context) -> str:
        call = call_var.get()
        return call.client_ip if call is not None else peer_ip(context.peer())

    def _admit(self, context, waits_on_client: bool) -> int:
        client = (self._client(context), waits_on_client)
        per_client = (self._limits.reflection_per_client if waits_on_client
                      else self._limits.per_client)
        now = self._clock()
        with self._lock:
            if len(self._open) >= self._limits.total or self._per_client[client] >= per_client:
                refusal = errors.ResourceExhausted(
                    f"too many open streams (at most {per_client} of this kind per client and "
                    f"{self._limits.total} in all); close one and retry", retry_after_s=5)
            else:
                refusal = None
                key = id(context)
                self._open[key] = _Open(client, context, now, now, waits_on_client)
                self._per_client[client] += 1
                self._start_watchdog()
        if refusal is not None:
            abort_for(context, refusal)  # raises
        return key

    def _leave(self, key: int) -> None:
        with self._lock:
            stream = self._open.pop(key, None)
            if stream is not None:
                self._per_client[stream.client] -= 1
                if self._per_client[stream.client] <= 0:
                    del self._per_client[stream.client]

    def _watched(self, requests, key: int):
        for request in requests:
            with self._lock:
                if key in self._open:
                    self._open[key].last_activity = self._clock()
            yield request

    def _start_watchdog(self) -> None:
        """Under the lock: one watchdog thread while any stream is open."""
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="stream-watchdog",
                                              daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            now = self._clock()
            with self._lock:
                if not self._open:
                    self._watchdog = None
                    return
                overdue = [stream for stream in self._open.values()
                           if now - stream.started > self._limits.lifetime_s
                           or (stream.waits_on_client
                               and now - stream.last_activity > self._limits.idle_s)]
            for stream in overdue:
                logger.info("closing a stream of %s that lived or idled too long",
                            stream.client[0])
                stream.context.cancel()
