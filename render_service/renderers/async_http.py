"""The external image API's asynchronous protocol (RENDERER=http, RENDER_API_MODE=async), as
most image-generation services work: create a prediction, poll it until it ends, take the
output from a URL or inline; described in docs/render-api.md.

The same rules as the synchronous renderer (render_service/renderers/http.py): the key only in
the Authorization header of calls to RENDER_API_URL (never to an output URL), HTTPS only unless
RENDER_API_ALLOW_HTTP=1, no redirects followed, errors that name HTTP statuses only (the HTTP
exchange itself is http.send). Polls back
off from POLL_FIRST_S to POLL_MAX_S; a prediction that has not ended after `deadline_s` is
cancelled at the API (so it stops costing there) and the job fails.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import urllib.request

from render_service.renderers import (
    RenderedImage,
    RenderError,
    RenderRequest,
    TransientRenderError,
)
from render_service.renderers.http import (
    ACCEPTED_TYPES,
    MAX_RESPONSE_BYTES,
    checked_url,
    request_body,
    send,
)

logger = logging.getLogger(__name__)

POLL_FIRST_S, POLL_MAX_S = 0.5, 5.0
CREATE_ATTEMPTS = 3
RUNNING = ("starting", "processing")
MAX_JSON_BYTES = 30 * 1024 * 1024  # an inline (base64) picture of up to 20 MB


class AsyncHttpRenderer:
    name = "http-async"

    def __init__(self, url: str, api_key: str, *, timeout_s: float = 30.0,
                 deadline_s: float = 600.0, allow_http: bool = False,
                 poll_first_s: float = POLL_FIRST_S, poll_max_s: float = POLL_MAX_S):
        if not url:
            raise ValueError("RENDERER=http needs RENDER_API_URL")
        self._base = checked_url(url, allow_http).rstrip("/")
        self._api_key = api_key
        self._timeout = timeout_s
        self._deadline = deadline_s
        self._allow_http = allow_http
        self._poll_first, self._poll_max = poll_first_s, poll_max_s

    def render(self, request: RenderRequest) -> RenderedImage:
        prediction = self._create(request)
        deadline = time.monotonic() + self._deadline
        wait = self._poll_first
        while True:
            state = prediction.get("status")
            if state == "succeeded":
                return self._output(prediction)
            if state == "failed":
                reason = str(prediction.get("error") or "no reason given")[:200]
                raise RenderError(f"image API failed the render: {reason}")
            if state == "canceled":
                raise RenderError("image API canceled the render")
            if state not in RUNNING:
                raise RenderError(f"image API answered an unknown status {str(state)[:40]!r}")
            if time.monotonic() + wait > deadline:
                self._cancel(prediction["id"])
                raise RenderError(f"image API did not finish within {self._deadline:.0f} s "
                                  f"(canceled there)")
            time.sleep(wait)
            wait = min(self._poll_max, wait * 2)
            try:
                prediction = self._call("GET", f"/predictions/{prediction['id']}")
            except TransientRenderError as error:  # a missed poll: the next one may answer
                logger.info("polling prediction for job %d failed (%s)", request.job_id, error)

    def _create(self, request: RenderRequest) -> dict:
        body = request_body(request)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                prediction = self._call("POST", "/predictions", body)
                break
            except TransientRenderError as error:
                if attempt == CREATE_ATTEMPTS:
                    raise TransientRenderError(
                        f"{error} (gave up after {attempt} attempts)") from None
                time.sleep(self._poll_first * 2 ** (attempt - 1))
        if not isinstance(prediction.get("id"), str) or not prediction["id"] \
                or "/" in prediction["id"]:
            raise RenderError("image API answered without a usable prediction id")
        return prediction

    def _cancel(self, prediction_id: str) -> None:
        try:
            self._call("POST", f"/predictions/{prediction_id}/cancel", b"{}")
        except RenderError as error:  # best effort: the job fails either way
            logger.warning("cancelling a prediction failed (%s)", error)

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict:
        outgoing = urllib.request.Request(self._base + path, data=body, method=method, headers={
            "Content-Type": "application/json", "Accept": "application/json",
            "Authorization": f"Bearer {self._api_key}"})
        data = send(outgoing, self._timeout, MAX_JSON_BYTES)[1]
        try:
            answer = json.loads(data)
        except ValueError:
            raise RenderError("image API answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise RenderError("image API answered with something that is not a JSON object")
        return answer

    def _output(self, prediction: dict) -> RenderedImage:
        inline = prediction.get("output_base64")
        if isinstance(inline, str) and inline:
            content_type = str(prediction.get("content_type") or "image/png")
            try:
                data = base64.b64decode(inline, validate=True)
            except ValueError:
                raise RenderError("image API's inline output is not base64") from None
            return _image(data, content_type)
        url = prediction.get("output_url")
        if not isinstance(url, str) or not url:
            raise RenderError("image API finished without an output")
        try:
            checked_url(url, self._allow_http, "the output URL")
        except ValueError as error:
            raise RenderError(f"image API's output URL refused: {error}") from None
        # No Authorization header: the output URL may be another host (a storage bucket).
        content_type, data = send(urllib.request.Request(url, headers={
            "Accept": ", ".join(ACCEPTED_TYPES)}), self._timeout, MAX_RESPONSE_BYTES)
        return _image(data, content_type)


def _image(data: bytes, content_type: str) -> RenderedImage:
    if content_type not in ACCEPTED_TYPES:
        raise RenderError(f"image API's output is {content_type[:60]!r}, not an image")
    if not data or len(data) > MAX_RESPONSE_BYTES:
        raise RenderError("image API's output is empty or oversized")
    return RenderedImage(data, content_type)
