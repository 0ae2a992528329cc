"""Renderers: one small interface; `local`, and `http` in its synchronous or asynchronous
protocol (RENDER_API_MODE)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from carpet_common.settings import Settings

logger = logging.getLogger(__name__)


Corners = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CarpetLayer:
    """Another carpet of a render on a measured floor (render_service.floor)."""

    carpet_image: bytes
    carpet_width_cm: int
    carpet_length_cm: int
    placement: Corners


@dataclass(frozen=True)
class RenderRequest:
    job_id: int
    mode: str
    carpet_image: bytes
    carpet_width_cm: int
    carpet_length_cm: int
    room_image: bytes | None
    # Where the carpet's corners go (far-left, far-right, near-right, near-left), as fractions
    # of the room picture's width and height; None: the renderer's default placement.
    placement: Corners | None = None
    # On a measured floor: the other carpets (up to two), and outlines of what stands on the
    # carpets, drawn back over them (fractions of the room picture).
    extra_carpets: tuple[CarpetLayer, ...] = ()
    occluders: tuple[Corners, ...] = ()


@dataclass(frozen=True)
class RenderedImage:
    data: bytes
    content_type: str
    renderer: str = ""  # who made it, when not the configured renderer (a fallback)


class RenderError(Exception):
    """The render failed for good; the message is shown to users, so it holds no secrets."""


class TransientRenderError(RenderError):
    """Worth retrying (timeout, 429, 5xx); `retry_after`: the seconds the API asked to wait."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Renderer(Protocol):
    name: str  # recorded on each job it renders

    def render(self, request: RenderRequest) -> RenderedImage: ...


FALLBACK_RENDERER = "local-fallback"  # recorded on a job the local renderer made instead


class FallbackRenderer:
    """RENDER_FALLBACK=local: the image API first; when it stays down after its own retries
    (a TransientRenderError), the local renderer, and the picture says so. A refusal (a plain
    RenderError: bad input, a redirect) is not a reason to fall back and fails the job."""

    def __init__(self, primary: Renderer, fallback: Renderer):
        self.name = primary.name
        self._primary, self._fallback = primary, fallback

    def render(self, request: RenderRequest) -> RenderedImage:
        try:
            return self._primary.render(request)
        except TransientRenderError as error:
            logger.warning("image API down for job %d (%s); rendering it locally",
                           request.job_id, error)
            image = self._fallback.render(request)
            return RenderedImage(image.data, image.content_type, renderer=FALLBACK_RENDERER)


def renderer_from_settings(settings: Settings) -> Renderer:
    from render_service.renderers.local import LocalRenderer

    if settings.renderer == "local":
        return LocalRenderer()
    if settings.render_api_mode == "async":
        from render_service.renderers.async_http import AsyncHttpRenderer

        api: Renderer = AsyncHttpRenderer(settings.render_api_url or "",
                                          settings.render_api_key or "",
                                          allow_http=settings.render_api_allow_http)
    else:
        from render_service.renderers.http import HttpRenderer

        api = HttpRenderer(settings.render_api_url or "", settings.render_api_key or "",
                           allow_http=settings.render_api_allow_http)
    return FallbackRenderer(api, LocalRenderer()) if settings.render_fallback else api
