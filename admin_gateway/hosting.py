"""Hosting the admin HTTP application (admin_gateway.http) with waitress, on its own thread.

waitress has no settings for three protections this server needs, so three of its internals
are extended here, and only here: the channel class (`server.channel_class`: a per-address cap
on connections, and the time a request started arriving), the periodic `maintenance(now)`
(closing a request that trickles in for too long) and the loop's socket map (`_map`, closed on
stop). Each is checked against the installed waitress at start (`check_waitress`) and tested
against the pinned version (tests/unit/test_hosting.py, tests/security/test_slow_connections.py):
a waitress that changed them stops the gateway rather than leaving it unprotected.
"""
from __future__ import annotations

import importlib.metadata
import threading
import time

import waitress
import waitress.channel
import waitress.wasyncore

from admin_gateway import imports
from admin_gateway.http import MAX_BODY_BYTES, AdminHttpApp
from admin_gateway.public_api import PublicApi
from carpet_common.auth import Authenticator
from carpet_common.calls import is_trusted, trusted_networks
from carpet_common.ratelimit import client_key
from carpet_common.server import PLAINTEXT, ChannelSecurity

# The waitress whose internals this module extends (pyproject.toml pins the same range).
WAITRESS_VERSIONS = ("3.",)

# waitress's limits for this server: bounded threads and connections, small requests (the API
# takes JSON bodies of at most MAX_BODY_BYTES), idle connections closed.
HTTP_LIMITS = {
    "threads": 8,  # each waits on the gateway's own gRPC calls
    "connection_limit": 1000,  # open connections at once; more wait to be accepted
    "channel_timeout": 30,  # seconds an idle (keep-alive) connection is kept
    "cleanup_interval": 2,  # how often both timeouts are checked
    "max_request_header_size": 16 * 1024,
    # Above a route's limit (MAX_BODY_BYTES, or MAX_PICTURE_BODY_BYTES for a picture upload)
    # the API answers its own JSON 413 without reading the body; far above it waitress refuses
    # before reading the body at all.
    "max_request_body_size": imports.MAX_UPLOAD_BYTES + MAX_BODY_BYTES,
    # X-Forwarded-For is judged by this module (TRUSTED_PROXIES), not dropped by waitress.
    "clear_untrusted_proxy_headers": False,
}
SHUTDOWN_GRACE_S = 5.0
# A request must arrive whole (headers and body) within this many seconds of its first byte:
# waitress's own timeout only closes idle connections, and a client trickling a byte a second
# is never idle. It holds no thread meanwhile, but it holds one of the connections.
REQUEST_READ_TIMEOUT_S = 20.0
CONNECTIONS_PER_ADDRESS = 100  # a tenth of HTTP_LIMITS' connection_limit


class _TimedChannel(waitress.channel.HTTPChannel):
    """Remembers when the request it is reading began."""

    reading_since: float | None = None

    def received(self, data):
        if data and self.request is None and self.reading_since is None:
            self.reading_since = time.monotonic()
        result = super().received(data)
        if self.request is None:  # nothing half-read: the request (if any) is complete
            self.reading_since = None
        return result


def _limited_channels(server, trusted_proxies) -> None:
    """At most CONNECTIONS_PER_ADDRESS open connections per client address (an IPv6 one by its
    /64), well below the global limit, so one address trickling bytes on a thousand
    connections cannot keep everyone else waiting to be accepted. A trusted proxy carries many
    clients and is not capped. A connection over the cap is closed at once."""
    trusted = trusted_networks(tuple(trusted_proxies))

    def channel(server, conn, addr, adj, map=None):
        address = addr[0] if isinstance(addr, tuple) else str(addr)
        if isinstance(addr, tuple) and not is_trusted(address, trusted):
            key = client_key(address)
            open_here = sum(1 for other in list(server.active_channels.values())
                            if isinstance(other.addr, tuple)
                            and client_key(other.addr[0]) == key)
            if open_here >= CONNECTIONS_PER_ADDRESS:
                conn.close()
                return None
        return _TimedChannel(server, conn, addr, adj, map=map)

    server.channel_class = channel


def _with_read_timeout(server) -> None:
    """Also close connections whose request has been arriving for too long."""
    close_idle = server.maintenance

    def maintenance(now):
        close_idle(now)
        cutoff = time.monotonic() - REQUEST_READ_TIMEOUT_S
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "reading_since", None)
            if started is not None and started < cutoff:
                channel.will_close = True

    server.maintenance = maintenance


def check_waitress(server) -> None:
    """The internals extended here are still what this module expects."""
    version = importlib.metadata.version("waitress")
    if not version.startswith(WAITRESS_VERSIONS):
        raise RuntimeError(f"waitress {version}: admin_gateway.hosting is written for "
                           f"{' or '.join(v + 'x' for v in WAITRESS_VERSIONS)}")
    missing = [name for name in ("channel_class", "maintenance", "active_channels", "_map",
                                 "task_dispatcher", "accepting")
               if not hasattr(server, name)]
    if missing or not callable(getattr(waitress.channel.HTTPChannel, "received", None)):
        raise RuntimeError(f"waitress {version} lacks what admin_gateway.hosting extends: "
                           f"{missing or ['HTTPChannel.received']}")


class AdminHttpServer:
    """AdminHttpApp served by waitress on its own thread."""

    def __init__(self, address: str, grpc_target: str, metrics_reader: Authenticator,
                 trusted_proxies=(), backends: dict[str, str] | None = None,
                 security: ChannelSecurity = PLAINTEXT, public: PublicApi | None = None):
        host, _, port = address.rpartition(":")
        self._app = AdminHttpApp(grpc_target, metrics_reader, trusted_proxies, backends,
                                 security, public)
        try:
            self._server = waitress.create_server(self._app, host=host.strip("[]"),
                                                  port=int(port), ident="carpet-admin",
                                                  **HTTP_LIMITS)
        except OSError as error:
            self._app.close()
            raise OSError(error.errno, f"could not bind HTTP address {address}: "
                                       f"{error.strerror}") from None
        check_waitress(self._server)
        _limited_channels(self._server, trusted_proxies)
        _with_read_timeout(self._server)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="admin-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.effective_port

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError:
            # stop() closes the sockets under the event loop's select: expected then only.
            if not self._stopping:
                raise

    def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let requests in flight finish (up to `grace`), then close."""
        self._stopping = True
        self._server.accepting = False
        self._server.task_dispatcher.shutdown(cancel_pending=False, timeout=grace)
        self._server.close()
        waitress.wasyncore.close_all(self._server._map)  # ends the server's loop
        self._thread.join(grace)
        self._app.close()
