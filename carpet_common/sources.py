"""The clock and the random source domain code reads, in one place so they can be replaced.

Production reads the wall clock (UTC, naive, as every stored time) and draws randomness from the
operating system, as `secrets` does. The deterministic simulation (tests/sim,
docs/reliability.md) installs a simulated clock and a seeded source with `simulated(...)`, so a
run replays exactly from its seed. Domain modules take `now` from their caller where they can,
and otherwise read this module; they never import `time`, `random`, `uuid` or `secrets`
themselves, nor call `datetime.now()`: `scripts/check_determinism.py` (in `make lint` and the
unit tests) keeps it so.
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


# SystemRandom draws from os.urandom, as secrets does: fit for tokens and secrets.
_SYSTEM = random.SystemRandom()
_clock: Callable[[], datetime.datetime] = wall_clock
_random: random.Random = _SYSTEM


def now() -> datetime.datetime:
    """The current time (UTC, naive)."""
    return _clock()


def token_bytes(count: int) -> bytes:
    return _random.randbytes(count)


def token_hex(count: int) -> str:
    """`count` random bytes as hex (secrets.token_hex)."""
    return token_bytes(count).hex()


def token_urlsafe(count: int) -> str:
    """`count` random bytes, URL-safe base64 without padding (secrets.token_urlsafe)."""
    return base64.urlsafe_b64encode(token_bytes(count)).rstrip(b"=").decode("ascii")


def choice(options: Sequence[T]) -> T:
    return _random.choice(options)


def unique_hex() -> str:
    """128 random bits as 32 hex characters: an id no one else will pick (as uuid4().hex)."""
    return token_hex(16)


@contextlib.contextmanager
def simulated(clock: Callable[[], datetime.datetime], source: random.Random) -> Iterator[None]:
    """Within the block, `now()` is `clock()` and randomness comes from `source` (a seeded
    random.Random): for the simulator only, which runs on one thread."""
    global _clock, _random
    before = _clock, _random
    _clock, _random = clock, source
    try:
        yield
    finally:
        _clock, _random = before
