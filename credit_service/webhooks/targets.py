"""Where a webhook may be sent, and the POST itself: the SSRF guard is
carpet_common.outbound's (https only, every resolved address public, the connection to the
checked address, no redirects, one deadline per attempt: WEBHOOK_TIMEOUT)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from carpet_common.outbound import (  # noqa: F401 - TargetRefused, check_url: the webhooks' too
    ATTEMPT_FAILURES,
    TargetRefused,
    Watchdog,
    check_url,
    connection,
    failure_text,
    path_of,
    resolve,
)

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    status_code: int  # 0: no HTTP answer
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.status_code < 300


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
    # The watchdog ends the attempt at its deadline however the receiver trickles its answer.
    watchdog = Watchdog(started + timeout_s)
    made = connection(parts, address, timeout_s, watchdog)
    try:
        made.request("POST", path_of(parts), body=body, headers=headers)
        response = made.getresponse()
        excerpt = response.read(2 * EXCERPT_CHARS).decode("utf-8", "replace")[:EXCERPT_CHARS]
        if watchdog.fired:
            raise TimeoutError
        error = ("redirect not followed" if 300 <= response.status < 400 else "")
        return Outcome(response.status, elapsed(), excerpt, error)
    except ATTEMPT_FAILURES as failure:
        return Outcome(0, elapsed(), error=failure_text(failure, watchdog, timeout_s))
    finally:
        watchdog.cancel()
        made.close()


