"""Where a webhook may be sent, and the POST itself.

The SSRF guard: https only, and every address the host resolves to must be public (not
loopback, private, link-local, shared, multicast or reserved), checked after DNS resolution on
every attempt; the connection then goes to the checked address (the Host header and the TLS
name stay the URL's host), so a DNS answer that changes between the check and the connection
cannot point it inwards. WEBHOOK_ALLOW_PRIVATE=1 (local development, tests) allows plain http
and private addresses. Redirects are never followed: a 3xx is a failed attempt.

Which addresses are public: an IPv6 address that carries an IPv4 one (IPv4-mapped,
IPv4-compatible, IPv4-translated, NAT64's 64:ff9b::/96, 6to4's 2002::/16) is judged by the IPv4
it carries, and every block of IANA's special-purpose registries (IPv4 and IPv6) is refused,
whatever Python's `is_global` says of it.

An attempt has one deadline from connecting to the last byte read (WEBHOOK_TIMEOUT): a
watchdog shuts the socket down when it passes, so a receiver that answers a byte at a time
cannot hold a delivery slot longer than that.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
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


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
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
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {parts.hostname}")
    if not allow_private and not all(_public(address) for address in addresses):
        raise TargetRefused(f"{parts.hostname} resolves to a loopback, private or link-local "
                            f"address")
    return str(addresses[0])


def post(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float,
         allow_private: bool) -> Outcome:
    """One attempt within `timeout_s` in all: check, resolve, connect to the checked address,
    POST, read a little."""
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
    watchdog = _Watchdog(started + timeout_s)

    def connect(_address, *args, **kwargs):
        # Connect to the address that was checked, whatever DNS answers next; the watchdog
        # ends the attempt at its deadline however the receiver trickles its answer.
        return watchdog.guard(socket.create_connection((address, port), *args, **kwargs))

    connection._create_connection = connect  # noqa: SLF001 - http.client's hook point
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        excerpt = response.read(2 * EXCERPT_CHARS).decode("utf-8", "replace")[:EXCERPT_CHARS]
        if watchdog.fired:
            raise TimeoutError
        error = ("redirect not followed" if 300 <= response.status < 400 else "")
        return Outcome(response.status, elapsed(), excerpt, error)
    except (TimeoutError, OSError, http.client.HTTPException, ssl.SSLError) as failure:
        if watchdog.fired or isinstance(failure, TimeoutError):
            return Outcome(0, elapsed(), error=f"no complete answer within {timeout_s:g} s")
        if isinstance(failure, ssl.SSLError):
            return Outcome(0, elapsed(), error=f"TLS failed: {failure.reason or 'handshake'}")
        return Outcome(0, elapsed(), error=f"connection failed: {type(failure).__name__}")
    finally:
        watchdog.cancel()
        connection.close()


class _Watchdog:
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
