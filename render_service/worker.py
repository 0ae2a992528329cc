"""The render workers: RENDER_WORKERS threads per process, plus the hold settler
(render_service.settler) that gives back the holds of jobs that ended without a charge.

A worker claims a job, keeps its lease alive with a heartbeat while it works, renders, stores
the image, captures the hold and finishes the job. Every step can be interrupted (process
killed, credit service down) and picked up again from the database:
- a lapsed lease makes the job claimable again;
- a job that already has its stored image is only captured and finished, never rendered twice;
- a capture is idempotent (the same hold gives the same credit-log row);
- a job without a hold (its submission was interrupted) gets one reserved, by its reference.
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from prometheus_client import Histogram

from carpet_common import errors, tracing
from carpet_common.errors import InvalidArgument
from carpet_common.pictures import read_header
from carpet_common.settings import Settings
from render_service import floor, jobs, placement
from render_service.audit_outbox import audit_relay
from render_service.credit_client import CreditClient
from render_service.events import event_relay
from render_service.models import Carpet, CarpetSize, RenderJob, database, size_id_of, utcnow
from render_service.renderers import (
    FALLBACK_RENDERER,
    CarpetLayer,
    Renderer,
    RenderError,
    RenderRequest,
)
from render_service.retention import retention_sweeper
from render_service.settler import HoldSettler
from render_service.storage import ImageStore

logger = logging.getLogger(__name__)

JOB_SECONDS = Histogram("carpet_render_job_duration_seconds",
                        "from claim to success or failure, by outcome", ["outcome"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
IDLE_POLL_S = 0.2
REPEATED_FAILURE_TEXT = "render failed repeatedly"
RENDER_FAILED_TEXT = "render failed"
NOT_A_PICTURE_TEXT = "the renderer's output is not a PNG or JPEG picture"
HOLD_EXPIRED_TEXT = "credit hold expired before the render finished"
HOLD_GONE_TEXT = "credit hold was no longer held"
# The fixed texts a worker ends a job with (the console shows each in the reader's words;
# a renderer's own error text is shown as it is).
WORKER_ERROR_TEXTS = (REPEATED_FAILURE_TEXT, RENDER_FAILED_TEXT, NOT_A_PICTURE_TEXT,
                      HOLD_EXPIRED_TEXT, HOLD_GONE_TEXT)


class _Heartbeat(threading.Thread):
    """Renews a job's lease every third of its length until stopped."""

    def __init__(self, job_id: int, owner: str, lease: datetime.timedelta, clock):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self._job_id, self._owner, self._lease, self._clock = job_id, owner, lease, clock
        self._stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self._stopped.wait(self._lease.total_seconds() / 3):
            try:
                with database.connection_context():
                    if not jobs.renew_lease(self._job_id, self._owner, self._clock(),
                                            self._lease):
                        self.lost = True
                        return
            except Exception:  # the next beat retries; the lease is longer than two beats
                logger.warning("lease renewal of job %d failed", self._job_id, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()


class WorkerPool:
    def __init__(self, settings: Settings, renderer: Renderer, credit: CreditClient,
                 store: ImageStore, *, clock: Callable[[], datetime.datetime] = utcnow):
        self._settings = settings
        self._renderer = renderer
        self._credit = credit
        self._store = store
        self._clock = clock
        self._lease = datetime.timedelta(seconds=settings.render_lease_seconds)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._owner_prefix = f"{socket.gethostname()}:{os.getpid()}"
        self._settler = HoldSettler(credit, clock)
        self._retention = retention_sweeper(settings, store, clock)
        self._events = event_relay(credit)
        self._audit = audit_relay(credit)

    def start(self) -> None:
        for index in range(self._settings.render_workers):
            self._threads.append(threading.Thread(
                target=self._work, args=(f"{self._owner_prefix}:{index}",),
                name=f"render-worker-{index}", daemon=True))
        for thread in self._threads:
            thread.start()
        self._settler.start()
        self._retention.start()
        self._events.start()
        self._audit.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the jobs in hand (up to `timeout`); unfinished ones are re-claimed later."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._settler.stop(timeout)
        self._retention.stop(timeout)
        self._events.stop(timeout)
        self._audit.stop(timeout)

    # --- workers ------------------------------------------------------------------------

    def _work(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                with database.connection_context():
                    job = jobs.claim_next(owner, self._clock(), self._lease)
                    if job is not None:
                        self.process(job, owner)
            except Exception:
                logger.exception("render worker %s hit an error", owner)
                job = None
                self._stop.wait(1.0)
            if job is None:
                self._stop.wait(IDLE_POLL_S)

    def process(self, job: RenderJob, owner: str) -> None:
        heartbeat = _Heartbeat(job.id, owner, self._lease, self._clock)
        heartbeat.start()
        started = time.perf_counter()
        try:
            # A trace of its own, linked to the submission's (it may run minutes later).
            with tracing.linked_span("render work", job.trace_parent,
                                     {"render.job_id": job.id, "render.mode": job.mode}):
                self.work_on(job, owner)
        finally:
            heartbeat.stop()
            status = RenderJob.select(RenderJob.status).where(RenderJob.id == job.id).scalar()
            outcome = status if status in jobs.TERMINAL else "deferred"
            JOB_SECONDS.labels(outcome).observe(time.perf_counter() - started)

    def work_on(self, job: RenderJob, owner: str) -> None:
        """One claimed job's work, without the heartbeat that `process` runs beside it (the
        simulator calls this: its clock does not move while a step runs)."""
        has_output = self._store.exists(job.output_path)
        if not has_output and job.attempts > self._settings.render_max_attempts:
            self._fail(job, owner, REPEATED_FAILURE_TEXT)
            return
        hold_id = job.hold_id  # a queued job is written with its hold (renders.submit_render)
        renderer: str | None = job.renderer
        if not has_output:
            renderer = self._render_and_store(job, owner)
            if renderer is None:
                return
        if renderer == FALLBACK_RENDERER and not self._settings.render_fallback_charge:
            # A local stand-in for the image API the admin chose not to charge: the job
            # succeeds without a capture and its hold goes back like a failed job's.
            if jobs.finish_uncharged(job.id, owner, self._clock()):
                self._settler.release(jobs.get_job(job.id))
            return
        if hold_id is None:
            raise RuntimeError(f"render job {job.id} has no hold")
        try:
            captured = self._credit.capture(hold_id)
        except errors.FailedPrecondition as error:
            # The hold expired (or was released) before the render finished: nothing charged.
            text = HOLD_EXPIRED_TEXT if error.reason == "HOLD_EXPIRED" else HOLD_GONE_TEXT
            jobs.finish_failed(job.id, owner, text, self._clock(), release_pending=False)
            return
        except errors.Unavailable:
            logger.warning("capture of job %d deferred: credit service unavailable", job.id)
            return  # the lease lapses and the job is captured on its next claim
        jobs.finish_success(job.id, owner, -captured.log.delta, captured.log.id, self._clock())

    def _render_and_store(self, job: RenderJob, owner: str) -> str | None:
        """The name of the renderer that made and stored the picture; None: the job failed
        or is no longer ours."""
        carpet = Carpet.get_by_id(job.carpet_id)
        size = CarpetSize.get_by_id(size_id_of(job))
        scene = floor.load(job.scene)
        request = RenderRequest(job_id=job.id, mode=job.mode, carpet_image=bytes(carpet.image),
                                carpet_width_cm=size.width_cm,
                                carpet_length_cm=size.length_cm,
                                room_image=jobs.room_image(job.id),
                                placement=placement.load(job.placement),
                                extra_carpets=tuple(
                                    CarpetLayer(bytes(Carpet.get_by_id(other.carpet_id).image),
                                                other.width_cm, other.length_cm, other.corners)
                                    for other in (scene.carpets[1:] if scene else ())),
                                occluders=scene.occluders if scene else ())
        try:
            image = self._renderer.render(request)
        except RenderError as error:
            self._fail(job, owner, str(error))
            return None
        except Exception:
            logger.exception("renderer crashed on job %d", job.id)
            self._fail(job, owner, RENDER_FAILED_TEXT)
            return None
        try:
            # What is stored and served is what the bytes are, whatever the renderer said
            # they were: the console serves it on its own origin.
            output = read_header(image.data, "the rendered picture")
        except InvalidArgument:
            self._fail(job, owner, NOT_A_PICTURE_TEXT)
            return None
        name = self._store.save(job.id, image.data, output.content_type)
        renderer = image.renderer or self._renderer.name
        if not jobs.record_output(job.id, owner, name, output.content_type, len(image.data),
                                  self._clock(), renderer=renderer):
            return None
        return renderer

    def _fail(self, job: RenderJob, owner: str, text: str) -> None:
        """Fail the job and give its hold back (or leave that to the settler)."""
        if jobs.finish_failed(job.id, owner, text, self._clock(), release_pending=True):
            self._settler.release(jobs.get_job(job.id))
