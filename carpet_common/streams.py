"""Limits on long-lived streams, counted per caller.

On the asyncio server (carpet_common.serving) a waiting stream holds no thread: a `WatchRender`
stream costs its memory only (`docs/security.md` has the measured bytes). The limits bound
that memory and keep one caller from taking every slot: `STREAMS_PER_PROCESS` long streams in
all, `STREAMS_PER_PRINCIPAL` per caller, and server reflection (`grpcurl` opens one stream per
call) `REFLECTION_PER_PRINCIPAL` per caller, each with a lifetime, and reflection with an idle
timeout. A stream over a limit is refused with RESOURCE_EXHAUSTED naming the limit; other
callers are not affected.

A caller is the call's verified identity (a service token's name, a certificate's identity, a
person): internal backends often share one NAT address. Calls without one (reflection, which
needs no credential) count by their address, an IPv6 one by its /64.

Counted here; lifetimes, idling and clients that stop reading are enforced where the stream is
driven (carpet_common.serving).
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc

from carpet_common import errors
from carpet_common.calls import call_var, peer_ip, principal_var
from carpet_common.interceptors import Around, AroundInterceptor
from carpet_common.ratelimit import client_key
from carpet_common.settings import Settings

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@dataclass(frozen=True)
class StreamLimits:
    total: int = 5000  # long streams of one process (STREAMS_PER_PROCESS)
    per_principal: int = 2000  # one caller's (STREAMS_PER_PRINCIPAL)
    reflection_per_principal: int = 64  # one caller's reflection streams
    lifetime_s: float = 300.0
    idle_s: float = 60.0  # a stream fed by its client (reflection) that sends nothing
    write_timeout_s: float = 10.0  # one message's send to a client that stopped reading

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamLimits:
        return cls(total=settings.streams_per_process,
                   per_principal=settings.streams_per_principal,
                   reflection_per_principal=settings.reflection_per_principal)


class StreamCounter:
    """Open streams per (caller, kind), and in all. Thread-safe: streams are admitted on the
    event loop (reflection) and on worker threads (our own streams)."""

    def __init__(self, limits: StreamLimits):
        self.limits = limits
        self._lock = threading.Lock()
        self._open: Counter[tuple[str, bool]] = Counter()  # (caller, reflection)
        self._total = 0

    @contextlib.contextmanager
    def admitted(self, caller: str, *, reflection: bool = False) -> Iterator[None]:
        key = (caller, reflection)
        limit = (self.limits.reflection_per_principal if reflection
                 else self.limits.per_principal)
        with self._lock:
            if self._total >= self.limits.total:
                refusal = (f"too many open streams on this server (STREAMS_PER_PROCESS "
                           f"{self.limits.total}); retry shortly")
            elif self._open[key] >= limit:
                name = "REFLECTION_PER_PRINCIPAL" if reflection else "STREAMS_PER_PRINCIPAL"
                refusal = (f"too many open streams of this kind from one caller ({name} "
                           f"{limit}); close one and retry")
            else:
                refusal = None
                self._open[key] += 1
                self._total += 1
        if refusal is not None:
            raise errors.ResourceExhausted(refusal, retry_after_s=5)
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

    def open_streams(self) -> int:
        with self._lock:
            return self._total


def caller_of_call(peer: str) -> str:
    """The current call's identity, else its client address (its /64 for IPv6)."""
    principal = principal_var.get()
    if principal is not None and principal.actor:
        return f"{principal.role}:{principal.organization_id or 0}:{principal.actor}"
    call = call_var.get()
    return client_key(call.client_ip if call is not None else peer_ip(peer))


class StreamAdmission(AroundInterceptor):
    """Counts the long streams among this service's methods, inside authentication so the
    caller's identity is known."""

    def __init__(self, counter: StreamCounter, methods: Iterable[str]):
        self._counter = counter
        self._methods = frozenset(methods)

    def around(self, method: str) -> Around | None:
        if method not in self._methods:
            return None

        def admitted(request: object, context: grpc.ServicerContext
                     ) -> contextlib.AbstractContextManager[None]:
            return self._counter.admitted(caller_of_call(context.peer()))

        return admitted

