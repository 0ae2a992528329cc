"""Long-lived streams cannot starve short calls.

A sync gRPC server gives every call one thread of its pool for as long as the call lasts. A
server-reflection stream or a `WatchRender` stream lasts as long as its client wants, so a
handful of them from one client would hold every thread and starve all unary calls. This
interceptor bounds them: per caller and in total (well under the pool's size), with a
maximum lifetime and, for streams that wait on their client (reflection), an idle timeout; a
stream over a limit is refused with RESOURCE_EXHAUSTED, one that lived too long or idled is
cancelled by a watchdog, which frees its thread.

A caller is its identity (a person, or a service) where the call has one, else its address
(an IPv6 one by its /64): a person may hold half the slots, a service all of them (a backend
waits on many renders). Every server stream counts: exports and pictures too, not only
watches. A stream whose client stops reading blocks its thread in the send of the next
message; once a send has waited `write_timeout_s`, the watchdog cancels the stream.

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
from carpet_common.calls import call_var, peer_ip, principal_var
from carpet_common.interceptors import abort_for
from carpet_common.ratelimit import client_key

logger = logging.getLogger(__name__)

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@dataclass(frozen=True)
class StreamLimits:
    total: int = 8  # all long streams together: keep well under the server's thread pool
    per_client: int = 8  # one service's streams (a backend waits on many renders)
    per_person: int = 4  # one person's (or one address's, for calls without an identity)
    reflection_per_client: int = 2  # nobody needs more than a couple of these
    lifetime_s: float = 300.0
    idle_s: float = 60.0  # a stream fed by its client (reflection) that sends nothing
    write_timeout_s: float = 10.0  # one message's send to a client that stopped reading


def limits_for(max_workers: int) -> StreamLimits:
    """Half the pool for long streams at most (the other half always serves short calls); one
    client may take them all for WatchRender, two for reflection."""
    total = max(1, max_workers // 2)
    return StreamLimits(total=total, per_client=total, per_person=max(1, total // 2),
                        reflection_per_client=min(2, total))


@dataclass
class _Open:
    client: tuple[str, bool] | None  # None: not counted against the limits
    context: grpc.ServicerContext
    started: float
    last_activity: float
    waits_on_client: bool
    sending_since: float | None = None  # a message handed to gRPC, not yet sent


class StreamLimitInterceptor(grpc.ServerInterceptor):
    """Applies `limits` to `methods` (full method names), counting them together;
    `uncounted` server streams (a picture in a few chunks) only get the write timeout."""

    def __init__(self, methods, limits: StreamLimits, clock=time.monotonic, uncounted=()):
        self._methods = frozenset(methods)
        self._watched_methods = self._methods | frozenset(uncounted)
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}
        self._per_client: Counter = Counter()  # (client, reflection?) -> open streams
        self._watchdog: threading.Thread | None = None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self._watched_methods:
            return handler
        counted = method in self._methods
        if handler.request_streaming:  # reflection: fed by its client, watched for idling
            behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

            def bounded(requests, context):
                key = self._admit(context, waits_on_client=True)
                try:
                    yield from self._sent(behaviour(self._watched(requests, key), context), key)
                finally:
                    self._leave(key)
        else:  # a server stream such as WatchRender or an export
            behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler

            def bounded(request, context):
                key = self._admit(context, waits_on_client=False, counted=counted)
                try:
                    yield from self._sent(behaviour(request, context), key)
                finally:
                    self._leave(key)

        return factory(bounded, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _caller(self, context) -> tuple[str, bool]:
        """(who, is a service): the call's identity, else its client address."""
        principal = principal_var.get()
        if principal is not None and principal.actor:
            return (f"{principal.role}:{principal.organization_id or 0}:{principal.actor}",
                    principal.is_service)
        call = call_var.get()
        return client_key(call.client_ip if call is not None else peer_ip(context.peer())), False

    def _admit(self, context, waits_on_client: bool, counted: bool = True) -> int:
        who, is_service = self._caller(context)
        client = (who, waits_on_client) if counted else None
        per_client = (self._limits.reflection_per_client if waits_on_client
                      else self._limits.per_client if is_service else self._limits.per_person)
        now = self._clock()
        with self._lock:
            if counted and (self._counted() >= self._limits.total
                            or self._per_client[client] >= per_client):
                refusal = errors.ResourceExhausted(
                    f"too many open streams (at most {per_client} of this kind per client and "
                    f"{self._limits.total} in all); close one and retry", retry_after_s=5)
            else:
                refusal = None
                key = id(context)
                self._open[key] = _Open(client, context, now, now, waits_on_client)
                if counted:
                    self._per_client[client] += 1
                self._start_watchdog()
        if refusal is not None:
            abort_for(context, refusal)  # raises
        return key

    def _sent(self, responses, key: int):
        """The responses, noting while each is with gRPC: the generator stays suspended at
        its `yield` until gRPC has sent the message, which waits while the client reads
        nothing."""
        for response in responses:
            self._mark_sending(key, self._clock())
            yield response
            self._mark_sending(key, None)

    def _mark_sending(self, key: int, since: float | None) -> None:
        with self._lock:
            if key in self._open:
                self._open[key].sending_since = since

    def _counted(self) -> int:
        return sum(1 for stream in self._open.values() if stream.client is not None)

    def _leave(self, key: int) -> None:
        with self._lock:
            stream = self._open.pop(key, None)
            if stream is not None and stream.client is not None:
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
                               and now - stream.last_activity > self._limits.idle_s)
                           or (stream.sending_since is not None
                               and now - stream.sending_since > self._limits.write_timeout_s)]
            for stream in overdue:
                logger.info("closing a stream that lived, idled or waited on its reader too "
                            "long")
                stream.context.cancel()
