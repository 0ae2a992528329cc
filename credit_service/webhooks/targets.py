"""Where a webhook may be sent, and the POST itself.

The SSRF guard: https only, and every address the host resolves to must be public (not
loopback, private, link-local, shared, multicast or reserved), checked after DNS resolution on
every attempt; the connection then goes to the checked address (the Host header and the TLS
name stay the URL's host), so a DNS answer that changes between the check and the connection
cannot point it inwards. WEBHOOK_ALLOW_PRIVATE=1 (local development, tests) allows plain http
and private addresses. Redirects are never followed: a 3xx is a failed attempt.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

MAX_URL_LENGTH = 2000
EXCERPT_CHARS = 500


class TargetRefused(ValueError):
    """The URL or the address it resolves to is not allowed; the message says why."""


@dataclass(frozen=True)
class Outcome:
    status_code: int  # 0: no HTTP answer
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status_code < 300


def check_url(url: str, allow_private: bool) -> urllib.parse.SplitResult:
    """The URL's form (not its addresses: those are checked at each attempt)."""
    if not url or len(url) > MAX_URL_LENGTH or any(ord(char) < 33 for char in url):
        raise TargetRefused(f"url must be 1..{MAX_URL_LENGTH} characters without spaces")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise TargetRefused("url is not a valid URL") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise TargetRefused("url must be https://" + (" or http://" if allow_private else ""))
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise TargetRefused("url needs a host, and no user, password or #fragment")
    if not allow_private:
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if (literal is not None and not _public(literal)) or parts.hostname == "localhost":
            raise TargetRefused("url must not point at a loopback, private or link-local "
                                "address")
    return parts


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return address.is_global and not address.is_multicast


def resolve(parts: urllib.parse.SplitResult, allow_private: bool) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(f"cannot resolve {parts.hostname}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {parts.hostname}")
    if not allow_private and not all(_public(address) for address in addresses):
        raise TargetRefused(f"{parts.hostname} resolves to a loopback, private or link-local "
                            f"address")
    return str(addresses[0])


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float,
         allow_private: bool) -> Outcome:
    """One attempt: check, resolve, connect to the checked address, POST, read a little."""
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        parts = check_url(url, allow_private)
        address = resolve(parts, allow_private)
    except TargetRefused as refused:
        return Outcome(0, elapsed(), error=str(refused))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout_s,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
    # Connect to the address that was checked, whatever DNS answers next.
    connection._create_connection = (  # noqa: SLF001 - http.client's documented hook point
        lambda _address, *args, **kwargs: socket.create_connection((address, port), *args,
                                                                   **kwargs))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(2 * EXCERPT_CHARS).decode("utf-8", "replace")[:EXCERPT_CHARS]
        error = ("redirect not followed" if 300 <= response.status < 400 else "")
        return Outcome(response.status, elapsed(), excerpt, error)
    except TimeoutError:
        return Outcome(0, elapsed(), error=f"no answer within {timeout_s:g} s")
    except ssl.SSLError as failure:
        return Outcome(0, elapsed(), error=f"TLS failed: {failure.reason or 'handshake'}")
    except (OSError, http.client.HTTPException) as failure:
        return Outcome(0, elapsed(), error=f"connection failed: {type(failure).__name__}")
    finally:
        connection.close()
