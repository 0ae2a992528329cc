"""The delivery worker: every credit-service process (every replica) runs one.

A loop claims due deliveries (webhooks.outbox.claim_due: a lease, so replicas never send the
same delivery at once) up to the free slots of a bounded pool (WEBHOOK_CONCURRENCY), at most
WEBHOOK_ENDPOINT_CONCURRENCY of them in flight per endpoint across replicas (one slow receiver
cannot hold every slot), and the pool sends them, WEBHOOK_TIMEOUT for each whole attempt,
signed per Standard Webhooks. Each attempt is recorded; a failure is retried on
WEBHOOK_RETRY_SCHEDULE with the same webhook-id. The render and credit paths only write rows;
they never wait on a receiver.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from carpet_common.settings import Settings
from credit_service.models import database
from credit_service.webhooks import outbox, signing, targets

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.25


class WebhookDispatcher:
    def __init__(self, settings: Settings, clock: Callable[[], datetime.datetime]):
        self._clock = clock
        self._schedule = settings.webhook_retry_schedule_s
        self._timeout_s = settings.webhook_timeout_s
        self._allow_private = settings.webhook_allow_private
        self._concurrency = settings.webhook_concurrency
        self._per_endpoint = settings.webhook_endpoint_concurrency
        # Longer than an attempt can take (its whole deadline, and recording it), so a live
        # sender never loses its lease; a killed sender's deliveries wait this long.
        self._lease = datetime.timedelta(seconds=3 * settings.webhook_timeout_s + 5)
        self._free = threading.Semaphore(self._concurrency)
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="webhook")
        self._stop = threading.Event()
        # Set when an attempt ends: a slot is free, or an endpoint below its cap again.
        self._slot_freed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; attempts in flight finish (their receivers' timeouts bound them)."""
        self._stop.set()
        self._slot_freed.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self._claim()
            except Exception:  # the database may be down: try again shortly
                logger.exception("claiming webhook deliveries failed")
                claimed = 0
            if not claimed:
                self._slot_freed.wait(IDLE_POLL_S)
                self._slot_freed.clear()

    def _claim(self) -> int:
        slots = 0
        while slots < self._concurrency and self._free.acquire(blocking=False):
            slots += 1
        if not slots:
            return 0
        try:
            with database.connection_context():
                due = outbox.claim_due(slots, self._clock(), self._lease, self._per_endpoint)
        except Exception:
            for _ in range(slots):
                self._free.release()
            raise
        for _ in range(slots - len(due)):
            self._free.release()
        for claimed in due:
            self._pool.submit(self._send, claimed)
        return len(due)

    def _send(self, claimed: outbox.Claimed) -> None:
        try:
            # The signature's timestamp is the real time of this attempt (receivers compare it
            # with their own clock); the schedule follows the service's clock.
            timestamp = int(time.time())
            secret = signing.endpoint_secret(claimed.secret_salt)
            headers = {
                "content-type": "application/json",
                "user-agent": "carpet-webhooks/1",
                "webhook-id": claimed.event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signing.sign(secret, claimed.event_id, timestamp,
                                                  claimed.body),
            }
            outcome = targets.post(claimed.url, claimed.body.encode(), headers,
                                   timeout_s=self._timeout_s, allow_private=self._allow_private)
            with database.connection_context():
                state = outbox.record_attempt(claimed, outcome, self._schedule, self._clock())
            logger.info("webhook delivery %d attempt %d: %s (%s)", claimed.delivery_id,
                        claimed.attempt, outcome.status_code or outcome.error, state)
        except Exception:  # the lease lapses and the delivery is tried again
            logger.exception("webhook delivery %d failed unexpectedly", claimed.delivery_id)
        finally:
            self._free.release()
            self._slot_freed.set()
