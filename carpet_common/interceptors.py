"""Server interceptors in one shape: they wrap the handler's behaviour, so they run on the
worker thread with the request in hand (never on the server's polling thread)."""
from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from peewee import InterfaceError, OperationalError

from carpet_common import errors

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "carpet.example.com"

# The one table from domain exception to status code; the most specific class wins.
STATUS_BY_ERROR: tuple[tuple[type[errors.DomainError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)

Behaviour = Callable[[object, grpc.ServicerContext], object]
# wrapper(behaviour, call_details, response_streaming) -> behaviour
Wrapper = Callable[[Behaviour, grpc.HandlerCallDetails, bool], Behaviour]


def status_code_for(error: errors.DomainError) -> grpc.StatusCode:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def wrap_handler(handler: grpc.RpcMethodHandler | None, wrapper: Wrapper,
                 call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
    """Return `handler` with its behaviour replaced by the wrapper's."""
    if handler is None:
        return None
    if handler.unary_unary:
        kind, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        kind, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        kind, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        kind, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    return factory(
        wrapper(kind, call_details, handler.response_streaming),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BehaviourInterceptor(grpc.ServerInterceptor):
    """Base: subclasses implement `wrap(behaviour, call_details, streaming) -> behaviour`."""

    def wrap(self, behaviour: Behaviour, call_details: grpc.HandlerCallDetails,
             streaming: bool) -> Behaviour:
        raise NotImplementedError

    def intercept_service(self, continuation, handler_call_details):
        return wrap_handler(continuation(handler_call_details), self.wrap, handler_call_details)


def abort_with(context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
               reason: str, metadata: dict[str, str] | None = None,
               trailers: tuple[tuple[str, str], ...] = ()) -> None:
    """Abort the call with a rich status carrying google.rpc.ErrorInfo(reason), plus any
    extra trailing metadata (such as retry-after)."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    status = rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=message, details=[detail]))
    if trailers:
        status = status._replace(trailing_metadata=(*status.trailing_metadata, *trailers))
    context.abort_with_status(status)


class ErrorMappingInterceptor(BehaviourInterceptor):
    """Domain exceptions -> their status code; anything unexpected -> INTERNAL with a generic
    message, and the traceback only in the log."""

    def wrap(self, behaviour, call_details, streaming):
        method = call_details.method

        def handle(error: Exception, context: grpc.ServicerContext):
            if isinstance(error, errors.DomainError):
                extra, trailers = {}, ()
                if isinstance(error, errors.ResourceExhausted):
                    extra["retry_after_s"] = str(error.retry_after_s)
                    trailers = (("retry-after", str(error.retry_after_s)),)
                abort_with(context, status_code_for(error), error.message, error.reason, extra,
                           trailers)
            logger.exception("unhandled error in %s", method)
            abort_with(context, grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")

        def unary(request, context):
            try:
                return behaviour(request, context)
            except Exception as error:  # noqa: BLE001 - this is the one place that maps them
                if _already_aborted(error):
                    raise
                handle(error, context)

        def stream(request, context):
            try:
                yield from behaviour(request, context)
            except Exception as error:  # noqa: BLE001
                if _already_aborted(error):
                    raise
                handle(error, context)

        return stream if streaming else unary


def _already_aborted(error: Exception) -> bool:
    # grpc's context.abort() marks the call aborted and raises a bare `Exception()`; it must
    # pass through untouched or the status it set would be replaced by INTERNAL.
    return type(error) is Exception and not error.args



def nul_text_field(message) -> str | None:
    """The name of the first string field (nested ones included) holding a NUL character."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else (value,)
        if field.type == field.TYPE_STRING and any("\x00" in text for text in values):
            return field.name
        if field.type == field.TYPE_MESSAGE:
            for nested in values:
                if (name := nul_text_field(nested)) is not None:
                    return name
    return None


class TextFieldInterceptor(BehaviourInterceptor):
    """Refuses any request whose text holds a NUL character, for every method in one place:
    PostgreSQL cannot store or even compare such text (the driver raises), SQLite would keep
    it silently, and no name, reason, filter or key of this system needs one."""

    def wrap(self, behaviour, call_details, streaming):
        def check(request):
            if not isinstance(request, Message):  # a client stream (reflection): not ours
                return
            if (name := nul_text_field(request)) is not None:
                raise errors.InvalidArgument(f"{name} must not contain NUL characters")

        def unary(request, context):
            check(request)
            return behaviour(request, context)

        def stream(request, context):
            check(request)
            yield from behaviour(request, context)

        return stream if streaming else unary


class DatabaseConnectionInterceptor(BehaviourInterceptor):
    """Gives each call a database connection: every server thread keeps its own open (taken
    from the pool on PostgreSQL). Checking a connection in and out of the pool on every call
    costs more than most queries and contends on the pool's lock; the server's thread pool
    bounds how many connections exist. A connection that broke (database restarted, backend
    terminated) is dropped, so the thread's next call opens a fresh one, and the caller gets
    UNAVAILABLE: safe to retry."""

    def __init__(self, database):
        self._database = database

    def wrap(self, behaviour, call_details, streaming):
        if call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return behaviour

        def unary(request, context):
            self._database.connect(reuse_if_open=True)
            try:
                return behaviour(request, context)
            except (OperationalError, InterfaceError) as error:
                raise self._unavailable(error) from error

        def stream(request, context):
            self._database.connect(reuse_if_open=True)
            try:
                yield from behaviour(request, context)
            except (OperationalError, InterfaceError) as error:
                raise self._unavailable(error) from error

        return stream if streaming else unary

    def _unavailable(self, error: Exception) -> errors.Unavailable:
        logger.warning("database error, dropping this thread's connection: %s", error)
        try:
            self._database.close()
        except Exception:  # noqa: BLE001 - a broken connection may refuse to close cleanly
            logger.debug("closing a broken connection failed", exc_info=True)
        return errors.Unavailable("database unavailable, retry")


def error_reason(error: grpc.RpcError) -> str:
    """The google.rpc.ErrorInfo reason a failed call carries ('' when none): the inverse of
    `abort_with`, for clients of these services."""
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""
