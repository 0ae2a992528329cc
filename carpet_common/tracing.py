"""OpenTelemetry traces: one request followed from the gateway's HTTP side through the render
and credit services into their databases (docs/operations.md, "Tracing").

Off unless the standard OTEL_* settings ask for it (`wanted`): then each process exports its
spans over OTLP (HTTP/protobuf) in batches, sampled as OTEL_TRACES_SAMPLER says. When off,
nothing here is on any call's path: no interceptor is installed, statements are not wrapped,
and a log line finds no span.

What is traced:

- an HTTP request to the gateway (`http_request`), parented on the caller's `traceparent`;
- every gRPC call served (`ServerInterceptor`, on the worker thread that runs the handler, so
  what the handler does is its child) and every call made to another service
  (`ClientInterceptor`, which carries the W3C trace context on in the call's metadata);
- every SQL statement run inside a traced call (`statement`): its text with placeholders,
  never the values;
- a render's work in a trace of its own, linked to the submission that queued it
  (`linked_span`, from the `traceparent` the job was written with).

Spans carry route templates and method names, never a path's own values (a share link's token
is a credential) or a request's fields.

grpc's OpenTelemetry plugin records metrics, not spans, and opentelemetry-instrumentation-grpc
plugs into grpc's own interceptor chain, which this project's serving model replaces (the
handlers and their interceptors run on worker threads: carpet_common.serving); its spans would
start on the event loop and nothing the handler did would nest under them. So the two
interceptors here are written against the OpenTelemetry API, as that package's are.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from carpet_common.interceptors import Around, AroundInterceptor
from carpet_common.settings import SettingsError

TRACE_HEADERS = ("traceparent", "tracestate")
# gRPC codes that mean the server failed (OpenTelemetry's semantic conventions for RPC spans):
# a refusal of the caller's request (NOT_FOUND, PERMISSION_DENIED, …) is not a failed span.
_SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
EXPORTERS = ("otlp", "console")

_tracer: trace.Tracer | None = None


def enabled() -> bool:
    return _tracer is not None


def wanted(environ: Mapping[str, str]) -> bool:
    """Tracing is on when OTEL_TRACES_EXPORTER names an exporter, or — without it — when an
    OTLP endpoint is set; OTEL_SDK_DISABLED=true turns it off whatever else says."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start exporting this process's spans when the OTEL_* settings ask for it; whether they
    did. OTEL_SERVICE_NAME overrides `service_name`. A setting this cannot honour stops the
    process with the setting's name (SettingsError), not with traces silently lost."""
    global _tracer
    if not wanted(environ):
        return False
    exporters = [name.strip() for name in
                 (environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")
                 if name.strip()]
    unknown = sorted(set(exporters) - set(EXPORTERS))
    if unknown:
        raise SettingsError(f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not supported "
                            f"(use {', '.join(EXPORTERS)} or none)")
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if "otlp" in exporters and protocol != "http/protobuf":
        raise SettingsError("OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported")
    # The SDK only when tracing is on: a process without it never imports it.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; a name given here
    # would win over them, so the process's own is given only when no other is set.
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    # The sampler is the SDK's reading of OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, the
    # batching its reading of OTEL_BSP_*.
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("carpet")
    return True


def shutdown() -> None:
    """Export what is still buffered (a stopping process); the SDK does this at exit too."""
    provider = trace.get_tracer_provider()
    if _tracer is not None and hasattr(provider, "shutdown"):
        provider.shutdown()


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span in progress, None outside one or with tracing
    off (for logs: off, a log line costs one check of a module variable)."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def current_traceparent() -> str:
    """The W3C `traceparent` of the sampled span in progress ('' when there is none): what a
    job keeps so its render work can link back to its submission."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def _parent_from(headers: Mapping[str, str]) -> Context:
    return propagate.extract({key: headers[key] for key in TRACE_HEADERS if key in headers})


class ServerInterceptor(AroundInterceptor):
    """Outermost on every server: a SERVER span for the call, a child of the caller's span when
    the call's metadata carries one; the status code as `rpc.grpc.status_code`."""

    def around(self, method: str) -> Around | None:
        tracer = _tracer
        if tracer is None:
            return None
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

        @contextlib.contextmanager
        def traced(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            metadata = {key: value for key, value in context.invocation_metadata()
                        if key in TRACE_HEADERS}
            with tracer.start_as_current_span(
                    method.lstrip("/"), context=_parent_from(metadata), kind=SpanKind.SERVER,
                    attributes=attributes, record_exception=False,
                    set_status_on_exception=False) as span:
                try:
                    yield
                finally:
                    _end_rpc(span, context.code() or grpc.StatusCode.OK)

        return traced


def _end_rpc(span: trace.Span, code: grpc.StatusCode) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """A CLIENT span for each call made inside a traced one, its context carried to the server
    in `traceparent`. A call made outside any trace (background work) goes as it is: it would
    otherwise start a trace of its own on every poll."""

    def _start(self, details: Any) -> tuple[trace.Span | None, Any]:
        if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
            return None, details
        service, _, name = details.method.lstrip("/").rpartition("/")
        span = _tracer.start_span(details.method.lstrip("/"), kind=SpanKind.CLIENT, attributes={
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return span, details._replace(metadata=[*(details.metadata or ()), *carrier.items()])

    def _call(self, continuation: Callable[[Any, object], Any], details: Any,
              request: object) -> Any:
        span, details = self._start(details)
        if span is None:
            return continuation(details, request)
        try:
            call = continuation(details, request)
        except BaseException:
            span.end()
            raise

        def ended(done: grpc.Future) -> None:
            _end_rpc(span, done.code() or grpc.StatusCode.OK)
            span.end()

        call.add_done_callback(ended)
        return call

    def intercept_unary_unary(self, continuation: Callable[[Any, object], Any], details: Any,
                              request: object) -> Any:
        return self._call(continuation, details, request)

    def intercept_unary_stream(self, continuation: Callable[[Any, object], Any], details: Any,
                               request: object) -> Any:
        return self._call(continuation, details, request)


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` carrying trace context on its calls when tracing is on; itself when off."""
    if _tracer is None:
        return channel
    return grpc.intercept_channel(channel, ClientInterceptor())


@contextlib.contextmanager
def http_request(environ: Mapping[str, Any]) -> Iterator[trace.Span | None]:
    """A SERVER span around one HTTP request to the gateway, parented on its `traceparent`
    header; None when tracing is off. The caller names it by its route (`name_http`)."""
    if _tracer is None:
        yield None
        return
    headers = {key: environ[f"HTTP_{key.upper()}"] for key in TRACE_HEADERS
               if f"HTTP_{key.upper()}" in environ}
    method = environ.get("REQUEST_METHOD", "")
    with _tracer.start_as_current_span(
            f"HTTP {method}", context=_parent_from(headers), kind=SpanKind.SERVER,
            attributes={"http.request.method": method}, record_exception=False) as span:
        yield span


def name_http(span: trace.Span | None, method: str, route: str, status: int) -> None:
    """Name a request's span by its route template (never the path itself: a share link's
    path holds its token) and record the answer's status."""
    if span is None:
        return
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def statement(sql: str, system: str) -> contextlib.AbstractContextManager[object]:
    """A CLIENT span for one SQL statement inside a traced call (a null context outside one:
    background polls would otherwise each start a trace)."""
    if _tracer is None or not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    operation = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "SQL"
    return _tracer.start_as_current_span(
        operation, kind=SpanKind.CLIENT,
        attributes={"db.system.name": system, "db.query.text": sql[:2000]})


@contextlib.contextmanager
def linked_span(name: str, traceparent: str, attributes: Mapping[str, str | int]
                ) -> Iterator[None]:
    """A trace of its own for work done later on behalf of a traced call (a render's work),
    linked to that call's span through the `traceparent` it left."""
    if _tracer is None:
        yield
        return
    links = []
    if traceparent:
        origin = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
        if origin.get_span_context().is_valid:
            links.append(Link(origin.get_span_context()))
    # A root of its own (an empty context), not a child of whatever the thread ran before.
    with _tracer.start_as_current_span(name, context=trace.set_span_in_context(
            trace.INVALID_SPAN), kind=SpanKind.INTERNAL, links=links,
            attributes=dict(attributes)):
        yield
