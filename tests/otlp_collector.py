"""An OpenTelemetry collector for tests: a real HTTP server on loopback taking OTLP/HTTP
protobuf exports (`POST /v1/traces`) as the processes' exporters send them, and keeping every
span with the name of the service that sent it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.fake_image_api import LoopbackServer


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    trace_id: str  # hex
    span_id: str
    parent_id: str  # '' for a root
    attributes: dict
    links: tuple[tuple[str, str], ...]  # (trace id, span id) in hex


def _value(any_value):
    return getattr(any_value, any_value.WhichOneof("value")) if any_value.WhichOneof(
        "value") else None


class OtlpCollector(LoopbackServer):
    def __init__(self, keep: bool = True):
        """`keep=False`: count the exports and their bytes only (the bench's collector, which
        must not spend the machine's CPU decoding them)."""
        self.spans: list[ReceivedSpan] = []
        self.exports = self.received_bytes = 0
        self._decode = keep
        super().__init__()

    def _keep(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {item.key: _value(item.value)
                        for item in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(ReceivedSpan(
                        service=resource.get("service.name", ""), name=span.name,
                        kind=span.kind, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={item.key: _value(item.value) for item in span.attributes},
                        links=tuple((link.trace_id.hex(), link.span_id.hex())
                                    for link in span.links)))

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(self, predicate, timeout: float = 30.0):
        """The first span for which `predicate` holds, waiting for the exporters' batches."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [span for span in self.spans if predicate(span)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError("no such span was exported")
            time.sleep(0.05)

    def _handler(self):
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with collector._lock:
                    collector.exports += 1
                    collector.received_bytes += len(body)
                    if collector._decode:
                        request = trace_service_pb2.ExportTraceServiceRequest()
                        request.ParseFromString(body)
                        collector._keep(request)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        return Handler
