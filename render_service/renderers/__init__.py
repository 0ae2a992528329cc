"""Renderers: one small interface; `local`, and `http` in its synchronous or asynchronous
protocol (RENDER_API_MODE)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from carpet_common.settings import Settings


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
    placement: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class RenderedImage:
    data: bytes
    content_type: str


class RenderError(Exception):
    """The render failed for good; the message is shown to users, so it holds no secrets."""


class TransientRenderError(RenderError):
    """Worth retrying (timeout, 429, 5xx)."""


class Renderer(Protocol):
    name: str  # recorded on each job it renders

    def render(self, request: RenderRequest) -> RenderedImage: ...


def renderer_from_settings(settings: Settings) -> Renderer:
    if settings.renderer == "http" and settings.render_api_mode == "async":
        from render_service.renderers.async_http import AsyncHttpRenderer

        return AsyncHttpRenderer(settings.render_api_url or "", settings.render_api_key or "",
                                 allow_http=settings.render_api_allow_http)
    if settings.renderer == "http":
        from render_service.renderers.http import HttpRenderer

        return HttpRenderer(settings.render_api_url or "", settings.render_api_key or "",
                            allow_http=settings.render_api_allow_http)
    from render_service.renderers.local import LocalRenderer

    return LocalRenderer()
