"""A webhook receiver for tests: a real HTTP server on loopback that records every request
(headers and body) and answers from a script, the last entry repeating: "ok" (200),
"status:<code>", "hang" (reads the request, never answers until the test ends) or
"redirect:<url>". Verification is left to the tests, with the `standardwebhooks` library."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.fake_image_api import LoopbackServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered (0: it never answered)
    arrived: float = 0.0  # time.monotonic() when the request was read

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver(LoopbackServer):
    def __init__(self, script=("ok",), *, port: int = 0, fail_every: int = 0):
        """`fail_every`: every n-th request (of the whole run) answers 503 instead."""
        self.script = list(script)
        self.received: list[Received] = []
        self._released = threading.Event()
        self._fail_every = fail_every
        super().__init__(port)

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/carpet"

    def _next(self) -> str:
        with self._lock:
            if self._fail_every and (len(self.received) + 1) % self._fail_every == 0:
                return "status:503"
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def __exit__(self, *exc):
        self._released.set()  # hanging handlers give up
        super().__exit__(*exc)

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                answer = receiver._next()
                headers = {key.lower(): value for key, value in self.headers.items()}
                status = {"ok": 200, "hang": 0}.get(answer, 0)
                if answer.startswith("status:"):
                    status = int(answer.split(":")[1])
                if answer.startswith("redirect:"):
                    status = 307
                with receiver._lock:
                    receiver.received.append(Received(headers, body, status, time.monotonic()))
                if answer == "hang":
                    receiver._released.wait(120)
                    return
                self.send_response(status)
                if status == 307:
                    self.send_header("Location", answer.partition(":")[2])
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        return Handler

    def events(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate, timeout: float = 30.0) -> list[Received]:
        """Wait until `predicate(received so far)` holds; returns what was received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.events()
            if predicate(received):
                return received
            time.sleep(0.05)
        raise AssertionError(f"the receiver got {len(self.events())} requests: "
                             f"{[r.event.get('type') for r in self.events()]}")
