"""A share link's page (`GET /s/{token}`, `docs/shares-and-leads.md`): one render's picture, the
carpet's name and size and the shop's name and logo (its initial when it has none), with Open
Graph tags so a messenger shows a preview, and a quote form that works without JavaScript
(`POST /s/{token}/lead`).

The page is built here from what the render service answers for the token, and nothing else of
the shop or the shopper is reachable from it. Turkish or English from `?lang=` or the browser's
Accept-Language; a strict Content-Security-Policy (no script at all, styles from this server);
not indexed. An unknown token is 404, a revoked or expired link or a picture past its retention
410.
"""
from __future__ import annotations

import html
import os
import re
import urllib.parse

import grpc

from admin_gateway.exports import phrases
from admin_gateway.leads_form import HONEYPOT, is_bot, lead_request
from admin_gateway.responses import Response, logo_chunk, picture_response
from admin_gateway.router import Router
from carpet_common.calls import client_ip, is_trusted, trusted_networks
from carpet_common.errors import rpc_error_reason
from protos.carpet.render.v1 import render_pb2

STYLE_PATH = "/s/share.css"
# The share pages' routes: (method, template, handler method); each handler takes the WSGI
# environ and the path's parameters (tests/unit/test_router.py checks the table).
ROUTES = (
    ("GET", STYLE_PATH, "_style_sheet"),
    ("GET", "/s/{token}", "_shared_page"),
    ("GET", "/s/{token}/image", "_image"),
    ("GET", "/s/{token}/logo", "_logo"),
    ("POST", "/s/{token}/lead", "_lead_form"),
)
STYLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "share.css")
CALL_TIMEOUT_S = 15.0
MAX_FORM_BYTES = 16 * 1024
CONSENT_VERSION = "share-page-1"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "no-store",
}
GONE = "SHARE_GONE"


def share_url(environ, trusted_proxies, token: str) -> str:
    """The page's absolute address as the browser reached this gateway (through a trusted
    proxy: as the proxy says it was reached)."""
    scheme, host = environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", "")
    if is_trusted(environ.get("REMOTE_ADDR", ""), trusted_networks(tuple(trusted_proxies))):
        scheme = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
        host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
    if scheme not in ("http", "https") or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,300}", host):
        scheme, host = "http", environ.get("SERVER_NAME", "localhost")
    return f"{scheme}://{host}/s/{token}"


def language(environ) -> str:
    """`?lang=tr|en`, else the browser's first of the two, else Turkish."""
    asked = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("lang", [""])[-1]
    if asked in ("tr", "en"):
        return asked
    for part in environ.get("HTTP_ACCEPT_LANGUAGE", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in ("tr", "en"):
            return code
    return "tr"


class SharePage:
    def __init__(self, renders, trusted_proxies=()):
        self._renders = renders
        self._trusted = tuple(trusted_proxies)
        with open(STYLE_FILE, "rb") as style:
            self._style = style.read()
        self._routes = Router.of((method, template, getattr(self, handler))
                                 for method, template, handler in ROUTES)

    @staticmethod
    def serves(path: str) -> bool:
        return path.startswith("/s/")

    def handle(self, environ, method: str, path: str) -> tuple[str, Response]:
        found = self._routes.match(method, path)
        if found.target is None:
            return found.template, self._message(environ, found.status, "share.notFound")
        return found.template, found.target(environ, found.params)

    def _style_sheet(self, _environ, _params) -> Response:
        return Response(200, self._style, "text/css; charset=utf-8",
                        {"Cache-Control": "public, max-age=3600"})

    def _shared_page(self, environ, params) -> Response:
        return self._page(environ, params["token"])

    def _image(self, _environ, params) -> Response:
        request = render_pb2.GetSharedRenderRequest(token=params["token"])
        return _gone_as_410(picture_response(
            lambda: self._renders.GetSharedRenderOutput(request, timeout=CALL_TIMEOUT_S)))

    def _logo(self, _environ, params) -> Response:
        request = render_pb2.GetSharedRenderRequest(token=params["token"])
        return _gone_as_410(picture_response(
            lambda: [logo_chunk(self._renders.GetSharedShopLogo(
                request, timeout=CALL_TIMEOUT_S))], cache="public, max-age=300"))

    def _lead_form(self, environ, params) -> Response:
        return self._lead(environ, params["token"])

    def _shared(self, environ, token: str) -> render_pb2.SharedRender | Response:
        try:
            return self._renders.GetSharedRender(render_pb2.GetSharedRenderRequest(token=token),
                                                 timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            if rpc_error_reason(error) == GONE:
                return self._message(environ, 410, "share.gone")
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return self._message(environ, 404, "share.notFound")
            raise

    def _page(self, environ, token: str, status: int = 200, notice: str = "",
              form: dict | None = None) -> Response:
        shared = self._shared(environ, token)
        if isinstance(shared, Response):
            return shared
        lang = language(environ)
        words = phrases(lang)
        url = share_url(environ, self._trusted, token)
        carpet = html.escape(shared.carpet_name)
        size = f"{shared.carpet_width_cm:g} × {shared.carpet_length_cm:g} cm"
        shop = html.escape(shared.shop_name)
        title = f"{carpet} ({size}) — {shop}" if shop else f"{carpet} ({size})"
        form = form or {}
        logo = (f'<img class="logo" src="/s/{token}/logo" alt="">' if shared.has_logo else
                f'<span class="logo" aria-hidden="true">{html.escape(shared.shop_name[:1].upper())}'
                f'</span>')

        def field(name: str, kind: str, autocomplete: str, required: bool = False) -> str:
            value = html.escape(form.get(name, ""))
            return (f'<label>{html.escape(words[f"share.{name}"])}<input name="{name}" '
                    f'type="{kind}" value="{value}" autocomplete="{autocomplete}"'
                    f'{" required" if required else ""}></label>')

        body = f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta name="robots" content="noindex">
<meta property="og:type" content="website">
<meta property="og:title" content="{title}">
<meta property="og:description" content="{html.escape(words["share.description"])}">
<meta property="og:image" content="{html.escape(url)}/image">
<meta property="og:url" content="{html.escape(url)}">
<meta property="og:locale" content="{"tr_TR" if lang == "tr" else "en_GB"}">
<meta name="twitter:card" content="summary_large_image">
<link rel="stylesheet" href="{STYLE_PATH}">
</head><body>
<header>{logo}<span class="shop">{shop}</span></header>
<main>
<img class="render" src="/s/{token}/image" alt="{html.escape(words["share.imageAlt"])}: {carpet}">
<h1>{carpet}</h1><p class="size">{size}</p>
{f'<p class="notice" role="status">{html.escape(notice)}</p>' if notice else ""}
<form method="post" action="/s/{token}/lead?lang={lang}">
<h2>{html.escape(words["share.askTitle"])}</h2>
{field("name", "text", "name", required=True)}
{field("phone", "tel", "tel", required=True)}
{field("email", "email", "email")}
<label>{html.escape(words["share.message"])}<textarea name="message" maxlength="2000">
{html.escape(form.get("message", ""))}</textarea></label>
<label class="hp" aria-hidden="true">{HONEYPOT}
<input name="{HONEYPOT}" tabindex="-1" autocomplete="off"></label>
<label class="consent"><input type="checkbox" name="consent" value="yes" required>
{html.escape(words["share.consentText"])}</label>
<button type="submit">{html.escape(words["share.send"])}</button>
</form>
<p class="expires">{html.escape(words["share.expires"])}
{shared.expires_at.ToDatetime():%Y-%m-%d}</p>
</main></body></html>"""
        return Response(status, body.encode(), "text/html; charset=utf-8", dict(PAGE_HEADERS))

    def _lead(self, environ, token: str) -> Response:
        words = phrases(language(environ))
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_FORM_BYTES:
            return self._page(environ, token, 400, words["share.formInvalid"])
        text = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        form = {key: value for key, value in urllib.parse.parse_qsl(text)}
        if is_bot(form):
            return self._page(environ, token, 201, words["share.sent"])
        if form.get("consent") != "yes":
            return self._page(environ, token, 400, words["share.consentRequired"], form)
        # Accepted as the form arrives (the render service's time): the box had to be ticked.
        document = {**form, "consent": {"text": words["share.consentText"],
                                        "version": CONSENT_VERSION}}
        visitor = client_ip(environ.get("REMOTE_ADDR", ""),
                            environ.get("HTTP_X_FORWARDED_FOR", ""), self._trusted)
        caller = render_pb2.PublicRequest(visitor=visitor[:64])
        try:
            self._renders.SubmitPublicLead(lead_request(document, caller, share_token=token),
                                           timeout=CALL_TIMEOUT_S)
        except ValueError:
            return self._page(environ, token, 400, words["share.formInvalid"], form)
        except grpc.RpcError as error:
            reason = rpc_error_reason(error)
            if reason == GONE or error.code() == grpc.StatusCode.NOT_FOUND:
                return self._page(environ, token)  # it says why
            status, key = _LEAD_REFUSALS.get(
                reason or error.code().name,
                _LEAD_REFUSALS.get(error.code().name, (400, "share.formInvalid")))
            return self._page(environ, token, status, words[key], form)
        return self._page(environ, token, 201, words["share.sent"])

    def _message(self, environ, status: int, key: str) -> Response:
        lang = language(environ)
        text = html.escape(phrases(lang)[key])
        body = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{text}</title><link rel="stylesheet" href="{STYLE_PATH}"></head>'
                f'<body><main><h1>{text}</h1></main></body></html>')
        return Response(status, body.encode(), "text/html; charset=utf-8", dict(PAGE_HEADERS))


def _gone_as_410(answer: Response) -> Response:
    """A shared picture of a link that no longer works (FAILED_PRECONDITION, 412) is gone."""
    if answer.status == 412:
        answer.status = 410
    return answer


# A refused quote request, by reason or by code: (status, the page's words).
_LEAD_REFUSALS = {
    "PHONE_INVALID": (400, "share.phoneInvalid"),
    "EMAIL_INVALID": (400, "share.emailInvalid"),
    "NAME_INVALID": (400, "share.nameInvalid"),
    "CONSENT_REQUIRED": (400, "share.consentRequired"),
    "LEAD_ALREADY_OPEN": (409, "share.alreadyAsked"),
    "RESOURCE_EXHAUSTED": (429, "share.tooMany"),
    "RATE_LIMITED": (429, "share.tooMany"),
}
