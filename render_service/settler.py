"""The hold settler: gives back the credit holds of jobs that ended without a charge.

A job that failed or was canceled is marked `release_pending` in the same UPDATE that ended it;
the settler (one thread per render-service process, every replica may run one) releases its
hold and then clears the flag. Releases are idempotent, so two settlers racing over one job, or
a settler retrying after a lost answer, release it once.

A job whose submission lost the reservation's answer has no hold id; its hold, if one was made,
is released by the job's reference. A reservation still in flight could land after that look-up,
so a missing hold is only believed once the job ended longer ago than any reservation call may
take (`HOLD_LOOKUP_GRACE`); until then the job waits for the next round.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from carpet_common import errors
from carpet_common.periodic import Periodic
from render_service import jobs
from render_service.credit_client import CreditClient
from render_service.models import RenderJob, database

logger = logging.getLogger(__name__)

SETTLE_INTERVAL_S = 2.0
# Longer than a reservation's deadline with its retries (credit_client.CALL_TIMEOUT_S).
HOLD_LOOKUP_GRACE = datetime.timedelta(seconds=30)


class HoldSettler:
    def __init__(self, credit: CreditClient, clock: Callable[[], datetime.datetime]):
        self._credit = credit
        self._clock = clock
        self._rounds = Periodic("hold-settler", SETTLE_INTERVAL_S, self._settle)

    def start(self) -> None:
        self._rounds.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._rounds.stop(timeout)

    def _settle(self) -> None:
        with database.connection_context():
            for job in jobs.jobs_to_release():
                self.release(job)

    def release(self, job: RenderJob) -> None:
        """Give an ended job's hold back, then clear its release_pending flag (left set when
        the credit service is unavailable: the next round tries again)."""
        reason = (f"render {job.status}: {job.error_text}" if job.status == "failed"
                  else "render success: uncharged local fallback")[:200]
        try:
            if job.hold_id is not None:
                self._credit.release(job.hold_id, reason)
            else:
                self._credit.release_by_reference(job.organization_id, job.id, reason)
        except errors.Unavailable:
            return
        except errors.NotFound:
            ended = job.finished_at or job.updated_at
            if ended is not None and self._clock() - ended < HOLD_LOOKUP_GRACE:
                return  # a reservation may still land; look again next round
            logger.info("job %d ended without a hold; nothing to release", job.id)
        except errors.FailedPrecondition:
            logger.error("hold of failed job %d was captured", job.id)
        jobs.release_done(job.id, self._clock())
