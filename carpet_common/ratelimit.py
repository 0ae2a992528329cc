"""Per-client-IP rate limits (RATE_LIMIT_* settings), on the `limits` library so the counters
can live in memory (one process) or in Redis (shared by every replica)."""
from __future__ import annotations

import contextlib
import ipaddress
import math
import time
from collections.abc import Iterable, Iterator

import grpc
from limits import parse, storage, strategies

from carpet_common import errors
from carpet_common.calls import current_call
from carpet_common.interceptors import Around, AroundInterceptor


def client_key(client_ip: str) -> str:
    """Whom a limit counts: an IPv4 address, or an IPv6 address's /64 (one subscriber gets a
    whole /64, so counting single IPv6 addresses would give each client billions of budgets)."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is that IPv4 client
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


class RateLimiter:
    """`limit` like `60/minute`, or `off`. `storage_uri` like `memory://` or `redis://host`."""

    def __init__(self, limit: str, storage_uri: str = "memory://", namespace: str = "carpet"):
        self.enabled = limit.strip().lower() != "off"
        self._namespace = namespace
        if self.enabled:
            try:
                self._item = parse(limit)
            except ValueError:
                raise ValueError(f"rate limit {limit!r} is not like '60/minute' or 'off'") from None
            self._limiter = strategies.MovingWindowRateLimiter(
                storage.storage_from_string(storage_uri))

    def check(self, client_ip: str, scope: str = "") -> None:
        """Count one request of `client_ip` (within `scope`, e.g. one publishable key's
        visitors); ResourceExhausted (with Retry-After) when over."""
        if not self.enabled:
            return
        key = f"{scope}:{client_key(client_ip)}" if scope else client_key(client_ip)
        if self._limiter.hit(self._item, self._namespace, key):
            return
        stats = self._limiter.get_window_stats(self._item, self._namespace, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise errors.ResourceExhausted(
            f"rate limit exceeded, retry in {retry_after} s", retry_after_s=retry_after)


class RateLimitInterceptor(AroundInterceptor):
    """Applies `limiter` to the named methods (all methods when `methods` is None)."""

    def __init__(self, limiter: RateLimiter, methods: Iterable[str] | None = None):
        self._limiter = limiter
        self._methods = None if methods is None else frozenset(methods)

    def around(self, method: str) -> Around | None:
        if not self._limiter.enabled or (
                self._methods is not None and method not in self._methods):
            return None

        @contextlib.contextmanager
        def limited(request: object, context: grpc.ServicerContext) -> Iterator[None]:
            self._limiter.check(current_call().client_ip)
            yield

        return limited
