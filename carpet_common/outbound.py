"""Calls this system makes to addresses its users give (webhook receivers, pictures named in an
imported catalogue), guarded against server-side request forgery.

The guard: https only, and every address the host resolves to must be public (not loopback,
private, link-local, shared, multicast or reserved), checked after DNS resolution on every
attempt; the connection then goes to the checked address (the Host header and the TLS name stay
the URL's host), so a DNS answer that changes between the check and the connection cannot point
it inwards. `allow_private` (WEBHOOK_ALLOW_PRIVATE=1: local development, tests) allows plain
http and private addresses. Redirects are never followed.

Which addresses are public: an IPv6 address that carries an IPv4 one (IPv4-mapped,
IPv4-compatible, IPv4-translated, NAT64's 64:ff9b::/96, 6to4's 2002::/16) is judged by the IPv4
it carries, and every block of IANA's special-purpose registries (IPv4 and IPv6) is refused,
whatever Python's `is_global` says of it.

An attempt has one deadline from connecting to the last byte read: a watchdog shuts the socket
down when it passes, so a server that answers a byte at a time cannot hold a caller longer.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

MAX_URL_LENGTH = 2000


class TargetRefused(ValueError):
    """The URL or the address it resolves to is not allowed; the message says why."""


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
        if (literal is not None and not is_public(literal)) or parts.hostname == "localhost":
            raise TargetRefused("url must not point at a loopback, private or link-local "
                                "address")
    return parts


_SPECIAL_IPV4 = tuple(ipaddress.ip_network(block) for block in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32"))
_SPECIAL_IPV6 = tuple(ipaddress.ip_network(block) for block in (
    "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
    "2001:db8::/32", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
    "fec0::/10", "ff00::/8"))
# IPv6 blocks whose last 32 bits are an IPv4 address (mapped ::ffff:0:0/96 is ipv4_mapped).
_CARRIES_IPV4_LOW = tuple(ipaddress.ip_network(block) for block in (
    "::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))


def carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it stands for one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in block for block in _CARRIES_IPV4_LOW) and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if address.version == 6:
        address = carried_ipv4(address) or address
    special = _SPECIAL_IPV4 if address.version == 4 else _SPECIAL_IPV6
    return address.is_global and not any(address in block for block in special)


def resolve(parts: urllib.parse.SplitResult, allow_private: bool) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(f"cannot resolve {parts.hostname}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {parts.hostname}")
    if not allow_private and not all(is_public(address) for address in addresses):
        raise TargetRefused(f"{parts.hostname} resolves to a loopback, private or link-local "
                            f"address")
    return str(addresses[0])



def connection(parts: urllib.parse.SplitResult, address: str, timeout_s: float,
               watchdog: Watchdog) -> http.client.HTTPConnection:
    """A connection to `parts`' host that connects to the checked `address`, whatever DNS
    answers next, its socket guarded by `watchdog`."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""  # check_url refused a URL without one
    if parts.scheme == "https":
        made: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl.create_default_context())
    else:
        made = http.client.HTTPConnection(host, port, timeout=timeout_s)

    def connect(_address: object, *args: Any, **kwargs: Any) -> socket.socket:
        return watchdog.guard(socket.create_connection((address, port), *args, **kwargs))

    made._create_connection = connect  # type: ignore[attr-defined]  # noqa: SLF001 - its hook
    return made


def path_of(parts: urllib.parse.SplitResult) -> str:
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# What an attempt may end with, short of an answer.
ATTEMPT_FAILURES = (TimeoutError, OSError, http.client.HTTPException, ssl.SSLError)


def failure_text(failure: Exception, watchdog: Watchdog, timeout_s: float) -> str:
    """An attempt's failure in words that hold nothing of the exchange."""
    if watchdog.fired or isinstance(failure, TimeoutError):
        return f"no complete answer within {timeout_s:g} s"
    if isinstance(failure, ssl.SSLError):
        return f"TLS failed: {failure.reason or 'handshake'}"
    return f"connection failed: {type(failure).__name__}"


class FetchFailed(ValueError):
    """A GET that gave no usable body; the message says why (no secret in it)."""


def fetch(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool) -> bytes:
    """The body of a GET of `url` (200 only, no redirects), at most `max_bytes`, all within
    `timeout_s`; FetchFailed (or TargetRefused) says why not."""
    parts = check_url(url, allow_private)
    address = resolve(parts, allow_private)
    watchdog = Watchdog(time.perf_counter() + timeout_s)
    made = connection(parts, address, timeout_s, watchdog)
    try:
        made.request("GET", path_of(parts), headers={"Accept": "image/png, image/jpeg"})
        response = made.getresponse()
        if response.status != 200:
            raise FetchFailed(f"the address answered HTTP {response.status}")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchFailed(f"the picture is larger than {max_bytes // 2**20} MB")
        body = response.read(max_bytes + 1)
        if watchdog.fired:
            raise TimeoutError
        if len(body) > max_bytes:
            raise FetchFailed(f"the picture is larger than {max_bytes // 2**20} MB")
        return body
    except ATTEMPT_FAILURES as failure:
        raise FetchFailed(failure_text(failure, watchdog, timeout_s)) from None
    finally:
        watchdog.cancel()
        made.close()


class Watchdog:
    """Shuts a socket down at a deadline (per-read timeouts alone let a receiver that sends a
    byte now and then keep an attempt alive without end)."""

    def __init__(self, deadline: float):
        self._deadline = deadline
        self._timer: threading.Timer | None = None
        self.fired = False

    def guard(self, sock: socket.socket) -> socket.socket:
        def fire() -> None:
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

        self._timer = threading.Timer(max(0.0, self._deadline - time.perf_counter()), fire)
        self._timer.daemon = True
        self._timer.start()
        return sock

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
