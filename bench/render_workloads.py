"""Client-side workloads of the render scenarios (see bench/credit_workloads.py for the shape).

A factory ending in `_open` returns a callable that sends one call and returns its future, for
the open-loop scenarios (bench.driver.run_open_loop)."""
from __future__ import annotations

import datetime

from bench.chain import SUBMIT
from bench.environment import channel_as
from bench.health import health_check_of
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc

TIMEOUT_S = 30
FINAL = (render_pb2.RENDER_STATUS_SUCCESS, render_pb2.RENDER_STATUS_FAILED)


health_check = health_check_of("render_address")


def _submit_request(config: dict) -> render_pb2.SubmitRenderRequest:
    return render_pb2.SubmitRenderRequest(organization_id=config["render_organization"],
                                          carpet_id=config["carpet"], mode="preview")


def _closed(call, request):
    def operation() -> int:
        call(request, timeout=TIMEOUT_S)
        return 1

    return operation


def _submit_call(config: dict):
    stub = render_pb2_grpc.RenderServiceStub(
        channel_as(config, config["render_address"], "web"))
    return stub.SubmitRender, _submit_request(config)


def submit(config: dict, index: int):
    return _closed(*_submit_call(config))


def submit_open(config: dict, index: int):
    call, request = _submit_call(config)
    return lambda: call.future(request, timeout=TIMEOUT_S)


def _chain_call(config: dict, address_key: str):
    """The same request as `submit`, to the first server of a chain (bench.chain)."""
    channel = channel_as(config, config[address_key], "web")
    call = channel.unary_unary(SUBMIT,
                               request_serializer=render_pb2.SubmitRenderRequest.SerializeToString,
                               response_deserializer=render_pb2.RenderJob.FromString)
    return call, _submit_request(config)


def chain(config: dict, index: int):
    return _closed(*_chain_call(config, "chain_address"))


def chain_open(config: dict, index: int):
    call, request = _chain_call(config, "chain_address")
    return lambda: call.future(request, timeout=TIMEOUT_S)


def chain3(config: dict, index: int):
    return _closed(*_chain_call(config, "chain3_address"))


def submit_statements(config: dict, index: int):
    """`ceiling.submit_sql`: a submission's statements on PostgreSQL — its carpet and size
    found, the job's id from its sequence, the hold's reservation with its draw from the
    grants (one transaction), the job written with its hold — as the services issue them (the
    very `Statement`s, prepared once per connection), straight through psycopg2 on the two
    databases, no gRPC and no service code in between."""
    import psycopg2

    from credit_service import ledger_sql
    from render_service import catalogue, jobs

    render_db = psycopg2.connect(config["render_database_url"])
    credit_db = psycopg2.connect(config["database_url"])
    render_db.autocommit = credit_db.autocommit = True  # explicit BEGIN/COMMIT, as peewee
    render, credit = render_db.cursor(), credit_db.cursor()
    next_id, insert_job = (jobs.SUBMISSION_STATEMENTS[name]
                           for name in ("next_job_id", "insert_job"))
    reserve, draw = (ledger_sql.STATEMENTS[name] for name in ("reserve_pg", "draw_pg"))
    renderable = catalogue.RENDERABLE
    prepared = {statement: statement.prepare(cursor) for statement, cursor in (
        (renderable, render), (next_id, render), (insert_job, render), (reserve, credit),
        (draw, credit))}
    organization, carpet = config["render_organization"], config["carpet"]

    def execute(cursor, statement, **params):
        cursor.execute(prepared[statement], statement.values(params))
        return cursor.fetchone()

    def operation() -> int:
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        size_id = execute(render, renderable, carpet_id=carpet)[2]
        (job_id,) = execute(render, next_id)
        credit.execute("BEGIN")
        (hold_id, *_state) = execute(
            credit, reserve, organization_id=organization, user_id=None, amount=1,
            reference=f"render-job:{job_id}", expires_at=now + datetime.timedelta(minutes=15),
            now=now)
        execute(credit, draw, organization_id=organization, now=now, amount=1, hold_id=hold_id)
        credit.execute("COMMIT")
        execute(render, insert_job, **queued_job(job_id, organization, carpet, size_id,
                                                 hold_id, now))
        return 1

    return operation


def queued_job(job_id: int, organization_id: int, carpet_id: int, size_id: int, hold_id: int,
               now: datetime.datetime) -> dict[str, object]:
    """The job insert's parameters for a queued preview with its hold, as a backend's
    submission writes it (tests/unit/test_bench_statements.py keeps them the statement's)."""
    return dict(id=job_id, organization_id=organization_id, user_id=None, carpet_id=carpet_id,
                carpet_size_id=size_id, mode="preview", status="queued", error_text="", cost=1,
                idempotency_key=None, request_hash="", release_pending=False,
                has_room_image=False, input_bytes=0, output_expired=False, placement="",
                hold_id=hold_id, now=now, finished_at=None, priority=0, public_id=None,
                publishable_key_id=None, scene="", trace_parent="")


def end_to_end(config: dict, index: int):
    """Submit, then watch until the job ends: one operation is one finished render."""
    stub = render_pb2_grpc.RenderServiceStub(
        channel_as(config, config["render_address"], "web"))
    request = _submit_request(config)

    def operation() -> int:
        job = stub.SubmitRender(request, timeout=TIMEOUT_S)
        for update in stub.WatchRender(render_pb2.WatchRenderRequest(id=job.id),
                                       timeout=120):
            if update.status in FINAL:
                if update.status != render_pb2.RENDER_STATUS_SUCCESS:
                    raise RuntimeError(f"render failed: {update.error_text}")
                return 1
        raise RuntimeError("watch ended early")

    return operation
