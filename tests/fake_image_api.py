"""A fake of the external image API for tests: a real HTTP server on loopback. Each request
takes the next scripted answer (the last one repeats): "ok", "slow:<seconds>", "status:<code>",
"redirect:<url>", "retry-after:<code>:<seconds>", "html" (a page, said to be text/html) or
"disguised" (the same page, said to be image/png). It counts calls per job and records the
keys it was sent."""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def tiny_png(color=(20, 120, 200), size=(32, 24)) -> bytes:
    output = io.BytesIO()
    Image.new("RGB", size, color).save(output, format="PNG")
    return output.getvalue()


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, serving `self._handler()`'s class while
    the `with` block lasts; `origin` is its http://127.0.0.1:<port>."""

    def __init__(self, port: int = 0):
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


class FakeImageApi(LoopbackServer):
    def __init__(self, script=("ok",)):
        self.script = list(script)
        self.calls = Counter()
        self.authorizations: list[str] = []
        self.placements: list = []  # the `placement` of each request
        self.scenes: list = []  # (extra_carpets, occluders) of each request
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1/render"

    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def _next_answer(self) -> str:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api._lock:
                    api.calls[body["job_id"]] += 1
                    api.authorizations.append(self.headers.get("Authorization", ""))
                    api.placements.append(body.get("placement"))
                    api.scenes.append((body.get("extra_carpets"), body.get("occluders")))
                base64.b64decode(body["carpet"]["image_base64"])  # must be valid
                answer = api._next_answer()
                kind, _, argument = answer.partition(":")
                if kind == "slow":
                    time.sleep(float(argument))
                    kind = "ok"
                if kind == "status":
                    self.send_response(int(argument))
                    self.end_headers()
                    return
                if kind == "redirect":  # to another server: it must never get the key
                    self.send_response(307)
                    self.send_header("Location", argument)
                    self.end_headers()
                    return
                if kind == "retry-after":
                    code, seconds = argument.split(":")
                    self.send_response(int(code))
                    self.send_header("Retry-After", seconds)
                    self.end_headers()
                    return
                image, content_type = tiny_png(), "image/png"
                if kind in ("html", "disguised"):
                    image = b"<html><script>alert(document.cookie)</script></html>"
                    content_type = "text/html" if kind == "html" else "image/png"
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(image)))
                    self.end_headers()
                    self.wfile.write(image)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        return Handler
