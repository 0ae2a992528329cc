"""Job status changes fanned out to every WatchRender stream of this process.

Each watching stream used to ask the database for its job every 0.2 s: a thousand streams, five
thousand queries a second that nearly always found nothing new. Now one hub per render process
learns of changes and wakes only the streams whose job changed; a stream reads its job again
only when woken.

- PostgreSQL: a trigger notifies the channel `render_job_status` with `<id>:<status>` when a
  status change commits (migration 0011), so a change made by any replica's worker reaches every
  replica's hub at once. The hub LISTENs on one connection of its own. A slow safety poll of
  the watched jobs covers whatever a lost connection missed; after reconnecting it polls at once.
- SQLite: one query for all watched jobs every SQLITE_POLL_S, however many streams watch.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
from collections import defaultdict
from collections.abc import Iterator

import psycopg2
from psycopg2.extensions import ISOLATION_LEVEL_AUTOCOMMIT

from carpet_common.db import is_postgres, tuples
from carpet_common.serving import Pause
from render_service.models import RenderJob

logger = logging.getLogger(__name__)

CHANNEL = "render_job_status"
SQLITE_POLL_S = 0.05
SAFETY_POLL_S = 2.0  # PostgreSQL: notifications carry the changes; this only covers gaps
RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # waits between attempts while the database is down
POLL_CHUNK = 500  # ids per query


class Watch:
    """One stream's interest in one job. The stream waits on the event loop
    (`yield watch.next_change(timeout)`, carpet_common.serving), holding no thread; the hub's
    thread wakes it."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self._lock = threading.Lock()
        self._changed = False
        self._waiter: asyncio.Future | None = None

    def next_change(self, timeout: float) -> _NextChange:
        """A Pause that ends at the job's next change, or after `timeout`. A change between two
        waits is never lost: it leaves the flag set, and the next wait ends at once."""
        return _NextChange(self, timeout)

    async def changed(self, timeout: float) -> bool:
        """Whether the job may have changed (False: `timeout` passed first)."""
        with self._lock:
            if self._changed:
                self._changed = False
                return True
            self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiter = None
                self._changed = False  # the stream reads its job next: it sees this change

    def wake(self) -> None:
        """From any thread."""
        with self._lock:
            self._changed = True
            waiter = self._waiter
        if waiter is not None:
            waiter.get_loop().call_soon_threadsafe(_settle, waiter)


def _settle(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _NextChange(Pause):
    def __init__(self, watch: Watch, timeout: float):
        self._watch = watch
        self._timeout = timeout

    async def wait(self) -> None:
        await self._watch.changed(self._timeout)


class StatusHub:
    """`database`: the render service's models' database (a peewee DatabaseProxy)."""

    def __init__(self, database, *, safety_poll_s: float = SAFETY_POLL_S):
        self._database = database
        self._safety_poll_s = safety_poll_s
        self._lock = threading.Lock()
        self._watches: dict[int, set[Watch]] = defaultdict(set)
        self._known: dict[int, str] = {}  # the status last seen of each watched job
        self._stopped = threading.Event()
        self._interrupt_read, self._interrupt_write = os.pipe()  # ends the listener's select
        self._thread: threading.Thread | None = None
        self.reconnects = 0  # how often the PostgreSQL listener had to connect again

    @contextlib.contextmanager
    def watching(self, job_id: int) -> Iterator[Watch]:
        """Register before the stream first reads its job, so no change slips between."""
        watch = Watch(job_id)
        with self._lock:
            self._watches[job_id].add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="status-hub",
                                                daemon=True)
                self._thread.start()
        try:
            yield watch
        finally:
            with self._lock:
                self._watches[job_id].discard(watch)
                if not self._watches[job_id]:
                    del self._watches[job_id]
                    self._known.pop(job_id, None)

    def watched(self) -> int:
        """How many jobs have a stream watching them."""
        with self._lock:
            return len(self._watches)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        os.write(self._interrupt_write, b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
        os.close(self._interrupt_read)
        os.close(self._interrupt_write)

    def _wake(self, job_id: int, status: str) -> None:
        with self._lock:
            if job_id not in self._watches or self._known.get(job_id) == status:
                return  # nobody here watches it (every replica hears every job), or no news
            self._known[job_id] = status
            watches = list(self._watches[job_id])
        for watch in watches:
            watch.wake()

    def _poll(self) -> None:
        """Read every watched job's status; wake the streams of those that changed (and of
        those seen for the first time: a spurious wake only makes a stream read once more)."""
        with self._lock:
            watched = list(self._watches)
        self._database.connect(reuse_if_open=True)
        for start in range(0, len(watched), POLL_CHUNK):
            chunk = watched[start:start + POLL_CHUNK]
            for job_id, status in tuples(RenderJob.select(RenderJob.id, RenderJob.status)
                                         .where(RenderJob.id.in_(chunk))):
                self._wake(job_id, status)

    def _run(self) -> None:
        listen = self._listen if is_postgres(self._database.obj) else self._poll_often
        failures = 0
        while not self._stopped.is_set():
            try:
                listen()
            except Exception as error:  # noqa: BLE001 - the hub outlives a database restart
                logger.warning("job status hub lost the database, reconnecting: %s", error)
                with contextlib.suppress(Exception):
                    self._database.close()
                self._stopped.wait(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
                failures += 1
                self.reconnects += 1
            else:
                failures = 0
        with contextlib.suppress(Exception):
            self._database.close()

    def _poll_often(self) -> None:
        while not self._stopped.wait(SQLITE_POLL_S):
            self._poll()

    def _listen(self) -> None:
        engine = self._database.obj
        connection = psycopg2.connect(dbname=engine.database, **engine.connect_params)
        try:
            connection.set_isolation_level(ISOLATION_LEVEL_AUTOCOMMIT)
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            self._poll()  # what changed before this LISTEN (or while disconnected)
            while not self._stopped.is_set():
                ready, _, _ = select.select([connection, self._interrupt_read], [], [],
                                            self._safety_poll_s)
                if self._stopped.is_set():
                    return
                if not ready:
                    self._poll()
                    continue
                connection.poll()
                while connection.notifies:
                    job_id, _, status = connection.notifies.pop(0).payload.partition(":")
                    self._wake(int(job_id), status)
        finally:
            with contextlib.suppress(Exception):
                connection.close()
