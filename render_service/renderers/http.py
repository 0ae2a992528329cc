"""The external image API renderer (RENDERER=http). The request and response it expects are
described in docs/render-api.md.

The API key travels only in the Authorization header of the outgoing request, over HTTPS only
(`RENDER_API_ALLOW_HTTP=1` allows plain HTTP, for a local fake), and redirects are never
followed: a redirect would carry the key to wherever it points. It is never put in a log line,
an error text, the database or a response: errors name the HTTP status only.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

from render_service.renderers import (
    RenderedImage,
    RenderError,
    RenderRequest,
    TransientRenderError,
)

logger = logging.getLogger(__name__)

ACCEPTED_TYPES = ("image/png", "image/jpeg")
MAX_RESPONSE_BYTES = 20 * 1024 * 1024


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 3xx answer itself comes back as an HTTPError


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class HttpRenderer:
    name = "http"

    def __init__(self, url: str, api_key: str, *, timeout_s: float = 30.0, attempts: int = 3,
                 backoff_s: float = 0.5, max_retry_after_s: float = 10.0,
                 allow_http: bool = False):
        if not url:
            raise ValueError("RENDERER=http needs RENDER_API_URL")
        self._url = checked_url(url, allow_http)
        self._api_key = api_key
        self._timeout = timeout_s
        self._attempts = attempts
        self._backoff = backoff_s
        self._max_retry_after = max_retry_after_s

    def render(self, request: RenderRequest) -> RenderedImage:
        body = request_body(request)
        for attempt in range(1, self._attempts + 1):
            try:
                return self._post(body)
            except TransientRenderError as error:
                if attempt == self._attempts:
                    raise TransientRenderError(
                        f"{error} (gave up after {attempt} attempts)") from None
                backoff = self._backoff * 2 ** (attempt - 1)
                delay = min(self._max_retry_after, error.retry_after or backoff)
                logger.info("image API attempt %d for job %d failed (%s); retrying in %.1f s",
                            attempt, request.job_id, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, body: bytes) -> RenderedImage:
        outgoing = urllib.request.Request(self._url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._api_key}",
            "Accept": ", ".join(ACCEPTED_TYPES),
        })
        content_type, data = send(outgoing, self._timeout, MAX_RESPONSE_BYTES)
        if content_type not in ACCEPTED_TYPES:
            raise RenderError(f"image API answered with {content_type!r}, not an image")
        if not data:
            raise RenderError("image API answered with an empty or oversized image")
        return RenderedImage(data, content_type)


def send(outgoing: urllib.request.Request, timeout: float, limit: int) -> tuple[str, bytes]:
    """(content type, body) of a 2xx answer, at most `limit` bytes. A redirect or another 4xx is
    a RenderError; 429, 5xx, a timeout or a refused connection a TransientRenderError (with the
    answer's Retry-After, if any, as `retry_after`)."""
    try:
        with _OPENER.open(outgoing, timeout=timeout) as response:
            content_type = response.headers.get_content_type()
            data = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
        if 300 <= status < 400:
            raise RenderError(f"image API redirected (HTTP {status}); redirects are not "
                              f"followed") from None
        if status == 429 or status >= 500:
            raise TransientRenderError(f"image API answered HTTP {status}",
                                       _retry_after(error.headers.get("Retry-After"))) from None
        raise RenderError(f"image API refused the request (HTTP {status})") from None
    except TimeoutError:
        raise TransientRenderError("image API timed out") from None
    except (urllib.error.URLError, ConnectionError, OSError):
        raise TransientRenderError("image API unreachable") from None
    if len(data) > limit:
        raise RenderError("image API answered with an empty or oversized image")
    return content_type, data


def request_body(request: RenderRequest) -> bytes:
    """The JSON both protocols send (docs/render-api.md)."""
    return json.dumps({
        "job_id": request.job_id,
        "mode": request.mode,
        "carpet": {"image_base64": base64.b64encode(request.carpet_image).decode(),
                   "width_cm": request.carpet_width_cm,
                   "length_cm": request.carpet_length_cm},
        "room_image_base64": (base64.b64encode(request.room_image).decode()
                              if request.room_image else None),
        # Where the carpet goes: four [x, y] fractions of the room picture, or null.
        "placement": ([list(corner) for corner in request.placement]
                      if request.placement else None),
        # On a measured floor: the other carpets with their computed corners, and outlines of
        # what stands on the carpets (fractions of the room picture).
        "extra_carpets": [{"image_base64": base64.b64encode(layer.carpet_image).decode(),
                           "width_cm": layer.carpet_width_cm,
                           "length_cm": layer.carpet_length_cm,
                           "placement": [list(corner) for corner in layer.placement]}
                          for layer in request.extra_carpets],
        "occluders": [[list(point) for point in polygon] for polygon in request.occluders],
    }).encode()


def checked_url(url: str, allow_http: bool, setting: str = "RENDER_API_URL") -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise ValueError(f"{setting} must be https:// (RENDER_API_ALLOW_HTTP=1 allows http:// "
                         f"for a local fake)")
    return url


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
