"""Server interceptors in one shape: each says what happens *around* a call, as a context
manager, and one wrapper applies it to unary and streaming behaviours alike. They wrap the
handler's behaviour, so they run on the worker thread with the request in hand
(carpet_common.serving), never on the event loop.

Health and reflection are grpc's own asynchronous servicers and are never wrapped.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from peewee import InterfaceError, OperationalError

from carpet_common import errors

if TYPE_CHECKING:  # the database module imports this one (through tracing)
    from carpet_common.db import AnyDatabase

logger = logging.getLogger(__name__)

# Methods served by grpc's own servicers: probes and `grpcurl list` need no credential.
GRPC_OWN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behaviour = Callable[[object, grpc.ServicerContext], object]
# around(request, context) -> a context manager entered for the length of the call
Around = Callable[[object, grpc.ServicerContext], contextlib.AbstractContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler | None, around: Around | None
                 ) -> grpc.RpcMethodHandler | None:
    """`handler` with its behaviour run inside `around(request, context)`."""
    if handler is None or around is None:
        return handler
    if handler.unary_unary:
        behaviour, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        behaviour, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

    wrapped: Callable[[object, grpc.ServicerContext], object]
    if handler.response_streaming:
        def wrapped_stream(request: object, context: grpc.ServicerContext) -> Iterator[object]:
            with around(request, context):
                yield from behaviour(request, context)

        wrapped = wrapped_stream
    else:
        def wrapped(request: object, context: grpc.ServicerContext) -> object:
            with around(request, context):
                return behaviour(request, context)

    return factory(wrapped, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)


class AroundInterceptor:
    """Base: subclasses implement `around(method)`, returning an `Around` for that method (or
    None to leave it alone). grpc's own health and reflection servicers are never wrapped."""

    def around(self, method: str) -> Around | None:
        raise NotImplementedError


class AroundPipeline:
    """Several AroundInterceptors applied as one, the first outermost. The server asks for each
    method's wrapped handler once and keeps it (carpet_common.serving): with seven interceptors,
    rebuilding wrappers on every call was a measurable part of a call's CPU."""

    def __init__(self, interceptors: Sequence[AroundInterceptor]):
        self._interceptors = tuple(interceptors)

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        for interceptor in reversed(self._interceptors):
            handler = wrap_handler(handler, interceptor.around(method))
        return handler


MAX_MESSAGE_CHARS = 1000


def rich_status(code: grpc.StatusCode, message: str, reason: str,
                metadata: dict[str, str] | None = None,
                trailers: tuple[tuple[str, str], ...] = ()) -> grpc.Status:
    """A status carrying google.rpc.ErrorInfo(reason), plus any extra trailing metadata (such
    as retry-after). A message longer than MAX_MESSAGE_CHARS (one quoting a caller's long
    input) is cut: it travels twice in the trailers, which a client refuses above 16 KiB."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 1] + "…"
    info = error_details_pb2.ErrorInfo(reason=reason, domain=errors.ERROR_DOMAIN,
                                       metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[detail]))
    if trailers:
        status = status._replace(trailing_metadata=(*status.trailing_metadata, *trailers))
    return status


def error_status(error: errors.DomainError) -> grpc.Status:
    """The status, reason and message the error's class carries."""
    extra: dict[str, str] = {}
    trailers: tuple[tuple[str, str], ...] = ()
    if isinstance(error, errors.ResourceExhausted):
        extra["retry_after_s"] = str(error.retry_after_s)
        trailers = (("retry-after", str(error.retry_after_s)),)
    return rich_status(error.grpc_code, error.message, error.reason, extra, trailers)


class ErrorMappingInterceptor(AroundInterceptor):
    """Domain exceptions -> the status their class carries; anything unexpected -> INTERNAL
    with a generic message, and the traceback only in the log."""

    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def mapping(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            try:
                yield
            except Exception as error:  # noqa: BLE001 - this is the one place that maps them
                if context.code() is not None:
                    raise  # the call was already aborted (grpc's own record of its status)
                if isinstance(error, errors.DomainError):
                    context.abort_with_status(error_status(error))
                logger.exception("unhandled error in %s", method)
                context.abort_with_status(
                    rich_status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL"))

        return mapping


def nul_text_field(message: Message) -> str | None:
    """The name of the first string field (nested ones included) holding a NUL character."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else (value,)
        if field.type == field.TYPE_STRING and any("\x00" in text for text in values):
            return str(field.name)
        if field.type == field.TYPE_MESSAGE:
            for nested in values:
                if (name := nul_text_field(nested)) is not None:
                    return name
    return None


class TextFieldInterceptor(AroundInterceptor):
    """Refuses any request whose text holds a NUL character, for every method in one place:
    PostgreSQL cannot store or even compare such text (the driver raises), SQLite would keep
    it silently, and no name, reason, filter or key of this system needs one."""

    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def checked(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            if isinstance(request, Message) and (name := nul_text_field(request)) is not None:
                raise errors.InvalidArgument(f"{name} must not contain NUL characters")
            yield

        return checked


class DatabaseConnectionInterceptor(AroundInterceptor):
    """Gives each call a database connection: every server thread keeps its own open (taken
    from the pool on PostgreSQL). Checking a connection in and out of the pool on every call
    costs more than most queries and contends on the pool's lock; the server's thread pool
    bounds how many connections exist. A connection that broke (database restarted, backend
    terminated) is dropped, so the thread's next call opens a fresh one, and the caller gets
    UNAVAILABLE: safe to retry."""

    def __init__(self, database: AnyDatabase):
        self._database = database

    def around(self, method: str) -> Around | None:
        @contextlib.contextmanager
        def connected(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            try:
                # Opening one fails too (the server refuses: restarting, out of connections).
                self._database.connect(reuse_if_open=True)
                yield
            except (OperationalError, InterfaceError) as error:
                raise self._unavailable(error) from error

        return connected

    def _unavailable(self, error: Exception) -> errors.Unavailable:
        logger.warning("database error, dropping this thread's connection: %s", error)
        try:
            self._database.close()
        except Exception:  # noqa: BLE001 - a broken connection may refuse to close cleanly
            logger.debug("closing a broken connection failed", exc_info=True)
        return errors.Unavailable("database unavailable, retry")
