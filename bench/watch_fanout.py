"""`render.watch.fanout`: thousands of WatchRender streams open on one render process while
their jobs end.

2,000 streams, one per queued job, then the jobs are ended by their own database connection in
batches of 20 every 50 ms (as workers of any replica would); each job's latency runs from its
batch's COMMIT to the moment its stream hears the end (status hub: LISTEN/NOTIFY on PostgreSQL,
one poll loop on SQLite). Then 5,000 streams are held open at once for the render process's
resident memory. The streams come from one asyncio client in this process (gRPC's aio API).
"""
from __future__ import annotations

import asyncio
import datetime
import statistics
import threading
import time

import grpc

from protos.carpet.render.v1 import render_pb2, render_pb2_grpc

FANOUT_STREAMS = 2000
HELD_STREAMS = 5000
BATCH = 20
BATCH_EVERY_S = 0.05


def queued_jobs(database_url: str, organization_id: int, carpet_id: int, count: int) -> list[int]:
    from carpet_common.db import bind_database
    from render_service import models

    database = bind_database(models.database, database_url)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)  # this batch's own stamp
    with database.connection_context(), database.atomic():
        models.RenderJob.insert_many([
            {"organization_id": organization_id, "carpet": carpet_id, "mode": "preview",
             "cost": 1, "status": "queued", "created_at": now, "updated_at": now}
            for _ in range(count)]).execute()
        ids = [job_id for (job_id,) in models.RenderJob.select(models.RenderJob.id)
               .where(models.RenderJob.created_at == now).tuples()]
    database.close()
    return ids


def end_jobs(database_url: str, ids: list[int], ended_at: dict[int, float]) -> None:
    """End the jobs `BATCH` at a time, noting when each batch's COMMIT returned."""
    from carpet_common.db import bind_database
    from render_service import models

    database = bind_database(models.database, database_url)
    with database.connection_context():
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            with database.atomic():
                (models.RenderJob.update(status="failed", error_text="bench: ended")
                 .where(models.RenderJob.id.in_(batch)).execute())
            committed = time.monotonic()
            for job_id in batch:
                ended_at[job_id] = committed
            time.sleep(BATCH_EVERY_S)
    database.close()


async def _open(stub, job_id: int, token: str):
    call = stub.WatchRender(render_pb2.WatchRenderRequest(id=job_id),
                            metadata=(("x-service-token", token),), timeout=600)
    first = await call.read()
    if first is grpc.aio.EOF or first.status != render_pb2.RENDER_STATUS_QUEUED:
        raise RuntimeError(f"job {job_id}: first message {first}")
    return call


async def _fanout(address: str, token: str, ids: list[int], database_url: str) -> dict:
    heard: dict[int, float] = {}
    ended_at: dict[int, float] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = render_pb2_grpc.RenderServiceStub(channel)
        calls = await asyncio.gather(*(_open(stub, job_id, token) for job_id in ids))

        async def hear(job_id, call):
            while (job := await call.read()) is not grpc.aio.EOF:
                if job.status == render_pb2.RENDER_STATUS_FAILED:
                    heard[job_id] = time.monotonic()

        listeners = [asyncio.ensure_future(hear(job_id, call))
                     for job_id, call in zip(ids, calls, strict=True)]
        ender = threading.Thread(target=end_jobs, args=(database_url, ids, ended_at))
        ender.start()
        await asyncio.wait_for(asyncio.gather(*listeners), 300)
        ender.join()
    latencies = sorted((heard[job_id] - ended_at[job_id]) * 1000 for job_id in ids)
    return {"streams": len(calls), "heard": len(heard),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[round(0.99 * (len(latencies) - 1))], 2),
            "max_ms": round(latencies[-1], 2)}


async def _held(address: str, token: str, ids: list[int], rss_kb) -> dict:
    before = rss_kb()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = render_pb2_grpc.RenderServiceStub(channel)
        calls = await asyncio.gather(*(_open(stub, ids[index % len(ids)], token)
                                       for index in range(HELD_STREAMS)))
        await asyncio.sleep(1)  # let the allocator settle
        during = rss_kb()
        for call in calls:
            call.cancel()
    return {"streams": len(calls), "rss_mib_before": round(before / 1024, 1),
            "rss_mib_with_streams": round(during / 1024, 1),
            "kib_per_stream": round((during - before) / len(calls), 1)}


def measure(config: dict, address: str, rss_kb) -> dict:
    """`rss_kb()`: the render process's resident memory now."""
    token = config["service_tokens"]["web"]
    database_url = config["render_database_url"]
    organization, carpet = config["render_organization"], config["carpet"]
    fanout = asyncio.run(_fanout(address, token,
                                 queued_jobs(database_url, organization, carpet, FANOUT_STREAMS),
                                 database_url))
    held = asyncio.run(_held(address, token, queued_jobs(database_url, organization, carpet, 500),
                             rss_kb))
    return {"fanout": fanout, "held": held}
