"""A fake asynchronous image API (create → poll → output) on loopback, for the async renderer's
tests. Each create takes the next script (the last one is reused), e.g. ["processing",
"processing", "succeeded"] (the output then served from this server's /outputs/<id>.png),
["succeeded:inline"], ["failed:no floor found"], or ["processing"] for ever; a step
"status:503" answers that poll with the HTTP status instead, and as a script's only step it
answers the create so."""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from http.server import BaseHTTPRequestHandler

from tests.fake_image_api import LoopbackServer, tiny_png

OUTPUT = tiny_png((10, 120, 200), (64, 48))


class FakeAsyncImageApi(LoopbackServer):
    def __init__(self, *scripts: list[str]):
        self.scripts = [list(script) for script in scripts]
        self.created: list[dict] = []  # the create requests' JSON bodies
        self.polls: dict[str, int] = defaultdict(int)
        self.cancels: list[str] = []
        self.authorization_by_path: dict[str, set[str]] = defaultdict(set)
        self._steps: dict[str, list[str]] = {}
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def _state(self, prediction_id: str) -> tuple[int, dict | bytes]:
        steps = self._steps[prediction_id]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        kind, _, argument = step.partition(":")
        if kind == "status":
            return int(argument), b""
        answer: dict = {"id": prediction_id, "status": kind}
        if kind == "succeeded" and argument == "inline":
            answer.update(output_base64=base64.b64encode(OUTPUT).decode(),
                          content_type="image/png")
        elif kind == "succeeded":
            answer["output_url"] = f"{self.origin}/outputs/{prediction_id}.png"
        elif kind == "failed":
            answer["error"] = argument
        return 200, answer

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict | bytes, content_type="application/json"):
                data = json.dumps(body).encode() if isinstance(body, dict) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _note(self):
                with api._lock:
                    api.authorization_by_path[self.path.split("/")[2] if
                                              self.path.startswith("/v1/") else "outputs"].add(
                        self.headers.get("Authorization", ""))

            def do_POST(self):
                self._note()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/predictions":
                    with api._lock:
                        script = api.scripts.pop(0) if len(api.scripts) > 1 else \
                            list(api.scripts[0])
                        prediction_id = f"p{len(api.created) + 1}"
                        api.created.append(json.loads(body))
                        if len(script) == 1 and script[0].startswith("status:"):  # create fails
                            return self._answer(int(script[0].partition(":")[2]), b"")
                        api._steps[prediction_id] = script
                    return self._answer(201, {"id": prediction_id, "status": "starting"})
                if self.path.endswith("/cancel"):
                    with api._lock:
                        api.cancels.append(self.path.split("/")[3])
                    return self._answer(200, {"status": "canceled"})
                return self._answer(404, b"")

            def do_GET(self):
                self._note()
                if self.path.startswith("/outputs/"):
                    return self._answer(200, OUTPUT, "image/png")
                prediction_id = self.path.rsplit("/", 1)[-1]
                with api._lock:
                    api.polls[prediction_id] += 1
                    status, body = api._state(prediction_id)
                return self._answer(status, body)

        return Handler
