"""Refused calls go to the audit log, summarised in bursts.

Every refusal must be audited, but each audit row takes the chain head's lock, which real
writes (adjustments) need too: a flood of refused calls must not slow them. So, per caller
(client address, an IPv6 one by its /64 like the rate limits, and claimed identity) and per
window, the first few refusals are written at once,
with everything about each, and the rest are counted; when the window ends one summary row says
how many more there were and for which methods. A flood thus costs at most
`WRITTEN_PER_WINDOW + 1` rows per caller per window.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from carpet_common.calls import Denial
from carpet_common.ratelimit import client_key

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 10.0
WRITTEN_PER_WINDOW = 5  # refusals per caller and window written one by one
MAX_CALLERS = 10_000  # callers tracked per window; beyond it refusals are only counted in bulk


class DenialLog:
    """`write(denial, count, methods)` appends one audit row: `count` 1 for a single refusal,
    more for a window's summary (the denial then describes the last one, `methods` all).

    No thread runs while nothing is pending: the first refusal that is only counted starts a
    one-shot timer that writes the summaries when its window ends."""

    def __init__(self, write: Callable[[Denial, int, Counter[str]], None],
                 window_s: float = DEFAULT_WINDOW_S):
        self._write = write
        self._window = window_s
        self._lock = threading.Lock()
        self._window_started = time.monotonic()
        # caller -> (refusals written this window, last counted refusal, counted methods)
        self._seen: dict[tuple[str, str], tuple[int, Denial | None, Counter[str]]] = {}
        self._overflow = 0
        self._timer: threading.Timer | None = None

    def record(self, denial: Denial) -> None:
        key = (client_key(denial.client_ip), denial.actor)
        with self._lock:
            if self._timer is None and time.monotonic() - self._window_started >= self._window:
                self._seen, self._window_started = {}, time.monotonic()  # nothing pending
            written, _, methods = self._seen.get(key, (0, None, Counter()))
            if key not in self._seen and len(self._seen) >= MAX_CALLERS:
                self._overflow += 1
                self._start_timer()
                return
            if written >= WRITTEN_PER_WINDOW:
                methods[denial.method] += 1
                self._seen[key] = (written, denial, methods)
                self._start_timer()
                return
            self._seen[key] = (written + 1, None, methods)
        self._safe_write(denial, 1, Counter({denial.method: 1}))

    def flush(self) -> None:
        """End the window: write its summaries now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            pending = [(denial, methods) for _, denial, methods in self._seen.values()
                       if methods and denial is not None]
            overflow, self._overflow = self._overflow, 0
            self._seen, self._window_started = {}, time.monotonic()
        for denial, methods in pending:
            self._safe_write(denial, sum(methods.values()), methods)
        if overflow:
            logger.warning("%d refused calls from more than %d callers in one window were "
                           "only counted", overflow, MAX_CALLERS)

    def _start_timer(self) -> None:
        """Under the lock: make sure the window's end writes what was counted."""
        if self._timer is None:
            remaining = max(0.0, self._window - (time.monotonic() - self._window_started))
            self._timer = threading.Timer(remaining, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def _safe_write(self, denial: Denial, count: int, methods: Counter[str]) -> None:
        try:
            self._write(denial, count, methods)
        except Exception:  # the caller is refused either way; the gap shows in the log
            logger.exception("could not audit %d refused call(s) from %s", count,
                             denial.client_ip)
