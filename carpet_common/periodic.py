"""Background work done every few seconds by each process (sweepers, settlers): one daemon
thread, a round every `interval_s`, a failed round logged and retried at the next one, a stop
that waits for the round in hand."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_s: float, work: Callable[[], None]):
        self._name = name
        self._interval = interval_s
        self._work = work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._work()
            except Exception:  # keep going: the next round retries
                logger.exception("%s: a round failed", self._name)
