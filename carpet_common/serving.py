"""Our synchronous handlers, served by grpc's asyncio server.

A synchronous gRPC server gives every call a thread for its whole life: a `WatchRender` stream
waiting minutes for its render held a thread all that time, so a process could let only a
handful of clients wait. Here:

- one event loop per process (a thread of its own, `serving_loop`) runs every gRPC server of
  the process, and a stream that waits costs its memory only;
- the domain code stays synchronous (Peewee owns the tables): a call's handler, with the
  interceptors around it (carpet_common.interceptors), runs on a bounded pool of worker threads
  (`GRPC_MAX_WORKERS`, sized with the database connection pool, so a burst queues instead of
  opening connections) — one step for a unary call, one step per message for a stream;
- a stream handler that has to wait yields a `Pause` instead of a message: the stream waits on
  the event loop, holding no thread, and the handler goes on where it stopped (WatchRender
  waits so for its job's next change);
- a stream's lifetime, an idle client (reflection) and a client that stops reading are bounded
  here; how many streams a caller may open is counted in carpet_common.streams.

Each call runs in a context of its own (`contextvars`): what the interceptors set for a call
(its caller, its request id) stays with it from step to step, whichever thread runs the step.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Mapping,
    Sequence,
)
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeVar

import grpc

from carpet_common import errors
from carpet_common.calls import peer_ip
from carpet_common.interceptors import GRPC_OWN_PREFIXES, AroundPipeline, error_status
from carpet_common.ratelimit import client_key
from carpet_common.streams import REFLECTION, StreamCounter, StreamLimits

logger = logging.getLogger(__name__)

_END = object()
T = TypeVar("T")
# A handler as our servicers write it (on a worker thread), and as grpc.aio serves it.
SyncBehaviour = Callable[[Any, "SyncContext"], Any]
AsyncBehaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def serving_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for gRPC servers, started on first use in a daemon thread
    (after `serve_in_processes` forks: gRPC must not exist before the fork)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True).start()
            _loop = loop
        return _loop


def on_serving_loop(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coroutine` on the serving loop from any other thread and return its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, serving_loop()).result(timeout)


class Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class Aborted(Exception):
    """A handler aborted its call (`SyncContext.abort`); the status is sent from the loop."""


class SyncContext:
    """What a handler on a worker thread sees of its call: the part of
    `grpc.ServicerContext` this code uses."""

    __slots__ = ("_context", "status")

    def __init__(self, context: grpc.aio.ServicerContext):
        self._context = context
        self.status: Status | None = None

    def abort(self, code: grpc.StatusCode, details: str = "",
              trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        self.status = Status(code, details, tuple(trailing_metadata))
        raise Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> None:
        self.abort(status.code, status.details, status.trailing_metadata)

    def code(self) -> grpc.StatusCode | None:
        """The code the call was aborted with, None while it has not been."""
        return self.status.code if self.status is not None else None

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self._context.invocation_metadata()  # type: ignore[no-any-return]

    def peer(self) -> str:
        return str(self._context.peer())

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return self._context.auth_context()  # type: ignore[no-any-return]



class Pause:
    """Yielded by a synchronous stream handler instead of a message: the stream waits for
    `wait()` on the event loop without a thread, then the handler goes on."""

    async def wait(self) -> None:
        raise NotImplementedError


class _Steps:
    """A stream handler's generator, advanced one message at a time on worker threads, always in
    the call's own context. The lock keeps a close (the client went away) from running while a
    step still runs on another thread."""

    def __init__(self, behaviour: SyncBehaviour, request: object, context: SyncContext):
        self._start = lambda: behaviour(request, context)
        self._responses: Generator[object, None, None] | None = None
        self._context = contextvars.Context()
        self._lock = threading.Lock()

    def next(self) -> object:
        with self._lock:
            if self._responses is None:
                self._responses = self._context.run(self._start)
            return self._context.run(next, self._responses, _END)

    def close(self) -> None:
        with self._lock:
            if self._responses is not None:
                self._context.run(self._responses.close)


@dataclass(frozen=True)
class ServingRules:
    max_queued: int  # unary calls waiting for or holding a worker thread, beyond: refused
    long_streams: frozenset[str]  # methods whose streams last as long as their client wants
    counter: StreamCounter


class Bridge(grpc.aio.ServerInterceptor):
    """Serves our synchronous handlers (wrapped by the interceptors' pipeline) from the event
    loop, and bounds grpc's own reflection streams. Each method's served handler is built once
    and kept for as long as the handler beneath it is the same object."""

    def __init__(self, pipeline: AroundPipeline, pool: Executor, rules: ServingRules):
        self._pipeline = pipeline
        self._pool = pool
        self._rules = rules
        self._served: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._queued = 0  # touched on the loop only
        self.stopping = asyncio.Event()

    async def intercept_service(
            self, continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
            handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or (method.startswith(GRPC_OWN_PREFIXES) and method != REFLECTION):
            return handler
        kept = self._served.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        if method == REFLECTION:
            served = grpc.stream_stream_rpc_method_handler(
                self._bounded_reflection(handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        else:
            served = self._serve(method, self._pipeline.wrap(method, handler))
        self._served[method] = (handler, served)
        return served

    def _serve(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_streaming:
            raise TypeError(f"{method}: client streams are not served")
        if handler.response_streaming:
            behaviour = self._stream(handler.unary_stream, method in self._rules.long_streams)
            factory = grpc.unary_stream_rpc_method_handler
        else:
            behaviour = self._unary(handler.unary_unary)
            factory = grpc.unary_unary_rpc_method_handler
        return factory(behaviour, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _unary(self, behaviour: SyncBehaviour) -> AsyncBehaviour:
        async def unary(request: object, context: grpc.aio.ServicerContext) -> object:
            if self._queued >= self._rules.max_queued:
                await context.abort(*error_status(errors.ResourceExhausted(
                    "the server is busy (too many calls waiting); retry shortly",
                    retry_after_s=1)))
            self._queued += 1
            call = SyncContext(context)
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._pool, contextvars.Context().run, behaviour, request, call)
            except Aborted:
                await _abort(context, call.status)
            finally:
                self._queued -= 1

        return unary

    def _stream(self, behaviour: SyncBehaviour, long: bool) -> AsyncBehaviour:
        limits = self._rules.counter.limits

        async def stream(request: object, context: grpc.aio.ServicerContext) -> None:
            loop = asyncio.get_running_loop()
            call = SyncContext(context)
            steps = _Steps(behaviour, request, call)
            lifetime = asyncio.timeout(limits.lifetime_s if long else None)
            try:
                async with lifetime:
                    while (item := await loop.run_in_executor(self._pool, steps.next)) is not _END:
                        if isinstance(item, Pause):
                            await self._paused(item)
                        else:
                            await _write(context, item, limits.write_timeout_s)
            except Aborted:
                pass
            except _Ended as ended:
                call.status = ended.status
            except TimeoutError:
                if not lifetime.expired():
                    raise
                call.status = _lived_too_long(limits)
            finally:
                # The handler's own clean-up (its `finally`, the interceptors' exits, which see
                # `call.status`) runs at once, after any step still running: the client may
                # have gone away in the middle of one.
                loop.run_in_executor(self._pool, steps.close).add_done_callback(_log_failure)
            if call.status is not None:
                await _end(context, call.status)

        return stream

    async def _paused(self, pause: Pause) -> None:
        """Wait for `pause`, or end the stream with UNAVAILABLE (retried by clients) when the
        server stops."""
        if not self.stopping.is_set():
            waiting = asyncio.ensure_future(pause.wait())
            stopping = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
                stopping.cancel()
        if self.stopping.is_set():
            raise _Ended(grpc.StatusCode.UNAVAILABLE, "the server is stopping; retry")

    def _bounded_reflection(self, behaviour: Callable[..., AsyncIterator[object]]
                            ) -> AsyncBehaviour:
        limits = self._rules.counter.limits
        counter = self._rules.counter

        async def bounded(requests: AsyncIterator[object], context: grpc.aio.ServicerContext
                          ) -> None:
            lifetime = asyncio.timeout(limits.lifetime_s)
            try:
                with counter.admitted(client_key(peer_ip(context.peer())), reflection=True):
                    async with lifetime:
                        async for response in behaviour(_idling(requests, limits.idle_s),
                                                        context):
                            await _write(context, response, limits.write_timeout_s)
                return
            except errors.DomainError as error:
                status = Status(*error_status(error))
            except _Ended as ended:
                status = ended.status
            except TimeoutError:
                if not lifetime.expired():
                    raise
                status = _lived_too_long(limits)
            await _end(context, status)

        return bounded


class _Ended(Exception):
    """The server ends a stream with this status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.status = Status(code, details, ())


def _lived_too_long(limits: StreamLimits) -> Status:
    return Status(grpc.StatusCode.CANCELLED,
                  f"the stream reached its lifetime ({limits.lifetime_s:g} s); open a new one",
                  ())


async def _end(context: grpc.aio.ServicerContext, status: Status) -> None:
    """Send the final status. To a client that reads nothing it waits until the client reads or
    goes (the stream's slot and clean-up are already done), and fails if it went."""
    try:
        await context.abort(*status)
    except grpc.aio.AbortError:
        raise
    except Exception:  # noqa: BLE001 - the client is gone: nobody to tell
        raise asyncio.CancelledError from None


async def _abort(context: grpc.aio.ServicerContext, status: Status | None) -> NoReturn:
    """End the call with the status its handler aborted with (grpc's abort raises)."""
    await context.abort(*(status or Status(grpc.StatusCode.UNKNOWN, "aborted", ())))
    raise AssertionError("grpc.aio's abort returned")


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("closing a stream failed", exc_info=future.exception())


async def _write(context: grpc.aio.ServicerContext, message: object, timeout_s: float) -> None:
    """Send one message; a client that reads nothing for `timeout_s` loses its stream."""
    try:
        await asyncio.wait_for(context.write(message), timeout_s)
    except TimeoutError:
        raise _Ended(grpc.StatusCode.CANCELLED,
                     f"the client read nothing for {timeout_s:g} s") from None


async def _idling(requests: AsyncIterator[object], idle_s: float) -> AsyncIterator[object]:
    """The client's messages; the stream ends when it sends none for `idle_s`."""
    iterator = requests.__aiter__()
    while True:
        try:
            request = await asyncio.wait_for(iterator.__anext__(), idle_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _Ended(grpc.StatusCode.CANCELLED,
                         f"the stream sent nothing for {idle_s:g} s") from None
        yield request

