"""RenderService through real servers (render and credit both on port 0, interceptors on),
with the local renderer, on SQLite and PostgreSQL."""
import dataclasses
import io
import time

import grpc
import pytest
from PIL import Image

from credit_service.verify import verify_credit
from ops.reconcile import reconcile
from protos.carpet.credit.v1 import credit_pb2
from protos.carpet.render.v1 import render_pb2
from tests.builders import (
    amounts,
    balance,
    create_carpet,
    create_org,
    expect_error,
    jpeg,
    settings_for,
    submit,
    wait_final,
)
from tests.fake_image_api import tiny_png

pytestmark = pytest.mark.usefixtures("engine")


def test_carpets(render_server):
    carpet = create_carpet(render_server, "K-1")
    assert (carpet.sku, carpet.width_cm, carpet.length_cm, carpet.image_content_type) == (
        "K-1", 160, 230, "image/png")
    assert create_carpet(render_server, "K-2", image=jpeg(), material="silk"
                         ).image_content_type == "image/jpeg"
    assert render_server.renders.GetCarpet(render_pb2.GetCarpetRequest(id=carpet.id),
                                           timeout=10) == carpet
    listed = render_server.renders.ListCarpets(render_pb2.ListCarpetsRequest(page_size=1),
                                               timeout=10)
    assert [c.sku for c in listed.carpets] == ["K-2"] and listed.next_page_token
    silk = render_server.renders.ListCarpets(render_pb2.ListCarpetsRequest(material="silk"),
                                             timeout=10)
    assert [c.sku for c in silk.carpets] == ["K-2"]


def test_carpet_errors(render_server):
    create_carpet(render_server, "K-1")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expect_error(lambda: create_carpet(render_server, "K-1"), grpc.StatusCode.ALREADY_EXISTS)
    expect_error(lambda: create_carpet(render_server, "K-3", image=b"not an image"), invalid)
    expect_error(lambda: create_carpet(render_server, "K-4", image=tiny_png()[:40]), invalid)
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    expect_error(lambda: create_carpet(render_server, "K-5", image=gif.getvalue()), invalid)
    expect_error(lambda: create_carpet(render_server, "K-6", image=b"\x89PNG" + b"0" * (
        10 * 1024 * 1024)), invalid)
    expect_error(lambda: create_carpet(render_server, "K-7", width_cm=0), invalid)
    expect_error(lambda: create_carpet(render_server, "", image=tiny_png()), invalid)
    expect_error(lambda: render_server.renders.GetCarpet(render_pb2.GetCarpetRequest(id=999),
                                                         timeout=10), grpc.StatusCode.NOT_FOUND)


def test_render_creates_job_and_exactly_one_charge(render_server, credit_server, start_workers,
                                                    credit_db_url, render_db_url):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    job = submit(render_server, org.id, carpet.id, mode="standard")
    assert job.status == render_pb2.RENDER_STATUS_QUEUED and job.hold_id
    assert balance(credit_server, org.id).held == 2
    stream = render_server.renders.WatchRender(render_pb2.WatchRenderRequest(id=job.id),
                                               timeout=30)
    assert next(stream).status == render_pb2.RENDER_STATUS_QUEUED
    start_workers()
    states = [update.status for update in stream]
    assert states[-1] == render_pb2.RENDER_STATUS_SUCCESS  # via processing, unless too quick
    assert set(states) <= {render_pb2.RENDER_STATUS_PROCESSING, render_pb2.RENDER_STATUS_SUCCESS}
    done = render_server.renders.GetRender(render_pb2.GetRenderRequest(id=job.id), timeout=10)
    assert done.status == render_pb2.RENDER_STATUS_SUCCESS, done.error_text
    assert done.credits_charged == 2 and done.credit_log_id
    assert done.started_at.seconds and done.finished_at.seconds
    assert amounts(balance(credit_server, org.id)) == (8, 0, 8)
    logs = credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(organization_id=org.id,
                                         kind=credit_pb2.CREDIT_LOG_KIND_RENDER),
        metadata=(("x-admin-token", "admin-token-for-tests-0123456789"),), timeout=10).logs
    assert [(log.id, log.delta, log.reference) for log in logs] == [
        (done.credit_log_id, -2, f"render-job:{job.id}")]

    chunks = list(render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=job.id), timeout=10))
    assert {chunk.content_type for chunk in chunks} == {"image/png"}
    picture = Image.open(io.BytesIO(b"".join(chunk.data for chunk in chunks)))
    assert picture.format == "PNG" and picture.size == (1024, 768)
    assert verify_credit() == []
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []


def test_render_with_a_room_photo(render_server, credit_server, start_workers):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    job = submit(render_server, org.id, carpet.id, room=jpeg((300, 200)))
    start_workers()
    done, _ = wait_final(render_server, job.id)
    assert done.status == render_pb2.RENDER_STATUS_SUCCESS
    data = b"".join(c.data for c in render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=job.id), timeout=10))
    assert Image.open(io.BytesIO(data)).size == (640, 427)  # the photo's shape, preview width


def test_insufficient_credit_is_kept_as_a_failed_job(render_server, credit_server):
    org = create_org(credit_server, "Poor", 3)
    carpet = create_carpet(render_server)
    expect_error(lambda: submit(render_server, org.id, carpet.id, mode="hd"),
                 grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")
    failed = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=org.id, status=render_pb2.RENDER_STATUS_FAILED), timeout=10).renders
    assert [(j.mode, j.error_text, j.credits_charged) for j in failed] == [
        ("hd", "insufficient credits", 0)]
    assert balance(credit_server, org.id).held == 0


def test_submit_errors(render_server, credit_server):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expect_error(lambda: submit(render_server, org.id, 999), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: submit(render_server, org.id, carpet.id, mode="ultra"), invalid)
    expect_error(lambda: submit(render_server, org.id, carpet.id, room=b"garbage"), invalid)
    expect_error(lambda: submit(render_server, org.id, carpet.id,
                                room=b"\xff\xd8" + b"0" * (10 * 1024 * 1024)), invalid)
    # 13 MB: over the picture limit, under the transport's, so refused with the numbers; over
    # the transport's own limit gRPC itself refuses it.
    expect_error(lambda: submit(render_server, org.id, carpet.id,
                                room=b"0" * (13 * 1024 * 1024)), invalid)
    expect_error(lambda: submit(render_server, org.id, carpet.id,
                                room=b"0" * (25 * 1024 * 1024)),
                 grpc.StatusCode.RESOURCE_EXHAUSTED)  # above the message size limit
    expect_error(lambda: submit(render_server, 999, carpet.id), grpc.StatusCode.NOT_FOUND)
    expect_error(lambda: submit(render_server, 0, carpet.id), invalid)
    expect_error(lambda: render_server.renders.GetRender(render_pb2.GetRenderRequest(id=999),
                                                         timeout=10), grpc.StatusCode.NOT_FOUND)
    assert balance(credit_server, org.id).held == 0


def test_submit_idempotency(render_server, credit_server):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    first = submit(render_server, org.id, carpet.id, key="order-7")
    assert submit(render_server, org.id, carpet.id, key="order-7") == first
    expect_error(lambda: submit(render_server, org.id, carpet.id, mode="hd", key="order-7"),
                 grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert balance(credit_server, org.id).held == 1  # reserved once


def test_one_key_submitted_at_once_reserves_once(render_server, credit_server, render_db_url,
                                                 credit_db_url):
    """Eight submissions with one idempotency key at the same moment: one job and one hold.
    On PostgreSQL each reserves under its own job id before writing its job; the seven that
    lose the key's race give their holds back."""
    from concurrent.futures import ThreadPoolExecutor

    org = create_org(credit_server, "Acme", 100)
    carpet = create_carpet(render_server)
    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda _: submit(render_server, org.id, carpet.id, mode="hd",
                                              key="order-9"), range(8)))
    assert len({job.id for job in jobs}) == 1
    assert amounts(balance(credit_server, org.id)) == (100, 4, 96)
    listed = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=org.id), timeout=10).renders
    # (A replay answered while the first was still reserving shows it without its hold yet.)
    assert [job.id for job in listed] == [jobs[0].id] and listed[0].hold_id > 0
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []


def test_a_hold_whose_job_was_never_written_is_not_a_charge(render_server, credit_server,
                                                            render_db_url, credit_db_url):
    """What a render process that died between reserving and writing its job leaves behind
    (PostgreSQL's order): a held hold naming a job that does not exist. Nothing charged it, it
    goes back when it expires, and reconcile does not count it as a problem."""
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    job = submit(render_server, org.id, carpet.id)
    credit_server.credits.ReserveCredits(credit_pb2.ReserveCreditsRequest(
        organization_id=org.id, amount=2, reference=f"render-job:{job.id + 1000}",
        ttl_seconds=60), timeout=10)
    assert amounts(balance(credit_server, org.id)) == (10, 3, 7)
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []


def test_cancel_releases_the_hold(render_server, credit_server, start_workers, credit_db_url,
                                  render_db_url):
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    job = submit(render_server, org.id, carpet.id, mode="hd")
    assert balance(credit_server, org.id).held == 4
    canceled = render_server.renders.CancelRender(render_pb2.CancelRenderRequest(id=job.id),
                                                  timeout=10)
    assert (canceled.status, canceled.error_text) == (render_pb2.RENDER_STATUS_FAILED,
                                                      "canceled")
    assert amounts(balance(credit_server, org.id)) == (10, 0, 10)
    expect_error(lambda: render_server.renders.CancelRender(
        render_pb2.CancelRenderRequest(id=job.id), timeout=10),
        grpc.StatusCode.FAILED_PRECONDITION, "NOT_CANCELLABLE")
    expect_error(lambda: list(render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=job.id), timeout=10)),
        grpc.StatusCode.FAILED_PRECONDITION, "RENDER_NOT_READY")
    second = submit(render_server, org.id, carpet.id)
    start_workers()
    done, _ = wait_final(render_server, second.id)
    expect_error(lambda: render_server.renders.CancelRender(
        render_pb2.CancelRenderRequest(id=done.id), timeout=10),
        grpc.StatusCode.FAILED_PRECONDITION)
    assert verify_credit() == []
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []


def test_list_renders_filters_and_pages(render_server, credit_server):
    acme = create_org(credit_server, "Acme", 20)
    other = create_org(credit_server, "Other", 20)
    carpet = create_carpet(render_server)
    ids = [submit(render_server, acme.id, carpet.id, mode=mode).id
           for mode in ("preview", "hd", "preview")]
    submit(render_server, other.id, carpet.id)
    mine, token = [], ""
    while True:
        page = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
            organization_id=acme.id, page_size=2, page_token=token), timeout=10)
        mine += [job.id for job in page.renders]
        token = page.next_page_token
        if not token:
            break
    assert mine == ids[::-1]
    previews = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=acme.id, mode="preview"), timeout=10).renders
    assert [job.id for job in previews] == [ids[2], ids[0]]
    expect_error(lambda: render_server.renders.ListRenders(
        render_pb2.ListRendersRequest(status=9), timeout=10), grpc.StatusCode.INVALID_ARGUMENT)


def test_submit_is_rate_limited_per_client_ip(render_db, render_settings):
    from render_service.app import build_server
    from tests.helpers import render_stubs

    limited = dataclasses.replace(render_settings, rate_limit_render="3/minute")
    running, port = build_server(limited, "127.0.0.1:0")
    stubs = render_stubs(port)
    try:
        for _ in range(3):  # refused for other reasons, but counted
            expect_error(lambda: submit(stubs, 1, 999), grpc.StatusCode.NOT_FOUND)
        error = expect_error(lambda: submit(stubs, 1, 999), grpc.StatusCode.RESOURCE_EXHAUSTED,
                             "RATE_LIMITED")
        trailers = dict(error.trailing_metadata())
        assert 1 <= int(trailers["retry-after"]) <= 60
        # CreateCarpet shares the client's budget; other methods are not limited.
        expect_error(lambda: stubs.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
            sku="S", name="S", width_cm=1, length_cm=1, image=tiny_png()), timeout=10),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        expect_error(lambda: stubs.renders.GetRender(render_pb2.GetRenderRequest(id=5),
                                                     timeout=10), grpc.StatusCode.NOT_FOUND)
    finally:
        stubs.channel.close()
        stubs.anonymous.channel.close()
        running.stop(grace=1)


def test_concurrent_submissions_never_overspend(render_server, credit_server, start_workers,
                                                credit_db_url, render_db_url):
    import concurrent.futures

    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)

    def attempt(_):
        try:
            return submit(render_server, org.id, carpet.id, mode="standard").id
        except grpc.RpcError as error:
            return error.code()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(attempt, range(32)))
    accepted = [r for r in results if isinstance(r, int)]
    assert len(accepted) == 5
    assert results.count(grpc.StatusCode.FAILED_PRECONDITION) == 27
    start_workers()
    for job_id in accepted:
        assert wait_final(render_server, job_id)[0].status == render_pb2.RENDER_STATUS_SUCCESS
    assert balance(credit_server, org.id).balance == 0
    deadline = time.monotonic() + 5
    while reconcile(settings_for(credit_db_url, render_db_url)) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []
    assert verify_credit() == []


def test_unknown_ids_and_bad_pages(render_server):
    not_found = grpc.StatusCode.NOT_FOUND
    expect_error(lambda: list(render_server.renders.WatchRender(
        render_pb2.WatchRenderRequest(id=404), timeout=10)), not_found)
    expect_error(lambda: list(render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=404), timeout=10)), not_found)
    expect_error(lambda: render_server.renders.CancelRender(
        render_pb2.CancelRenderRequest(id=404), timeout=10), not_found)
    expect_error(lambda: render_server.renders.ListCarpets(
        render_pb2.ListCarpetsRequest(page_size=501), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)
    expect_error(lambda: render_server.renders.ListRenders(
        render_pb2.ListRendersRequest(page_token="%%%"), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT)


def test_staff_sees_and_spends_only_for_its_own_organisation(render_server, credit_server):
    """STAFF persons on the render service: submissions for its own organisation only, naming
    only its own users; another organisation's job does not exist for it (NOT_FOUND). Every
    caller's submission names a user of the submitting organisation."""
    from tests.helpers import bearer
    from tests.integration.test_credit_accounts import create_user, staff_token

    mine, theirs = create_org(credit_server, "Mine", 20), create_org(credit_server, "Theirs", 20)
    my_user = create_user(credit_server, mine.id, "me@example.com")
    their_user = create_user(credit_server, theirs.id, "them@example.com")
    carpet = create_carpet(render_server)
    staff = bearer(staff_token(mine.id))
    renders = render_server.anonymous.renders  # the person's credential alone

    def as_staff(request_type, method, **fields):
        return getattr(renders, method)(request_type(**fields), metadata=staff, timeout=10)

    own = as_staff(render_pb2.SubmitRenderRequest, "SubmitRender", organization_id=mine.id,
                   carpet_id=carpet.id, mode="preview")
    assert own.organization_id == mine.id
    assert own.user_id == 0  # a minted STAFF JWT names no user: the organisation pays
    implicit = as_staff(render_pb2.SubmitRenderRequest, "SubmitRender", carpet_id=carpet.id,
                        mode="preview")  # organisation 0: its own
    assert implicit.organization_id == mine.id
    expect_error(lambda: as_staff(render_pb2.SubmitRenderRequest, "SubmitRender",
                                  organization_id=theirs.id, carpet_id=carpet.id,
                                  mode="preview"), grpc.StatusCode.PERMISSION_DENIED)
    # A person submits as itself: naming anyone, of its own organisation or another, is refused.
    for user in (my_user, their_user):
        expect_error(lambda u=user: as_staff(render_pb2.SubmitRenderRequest, "SubmitRender",
                                             organization_id=mine.id, carpet_id=carpet.id,
                                             mode="preview", user_id=u.id),
                     grpc.StatusCode.PERMISSION_DENIED)
    # A backend names members only: another shop's user and no user at all answer alike, and
    # neither refusal keeps a job.
    before = render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=theirs.id), timeout=10).renders
    details = set()
    for user_id in (my_user.id, 999_999):
        with pytest.raises(grpc.RpcError) as refused:
            submit(render_server, theirs.id, carpet.id, user_id=user_id)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        details.add(refused.value.details().replace(str(user_id), "N"))
    assert details == {f"user N not found in organisation {theirs.id}"}
    assert render_server.renders.ListRenders(render_pb2.ListRendersRequest(
        organization_id=theirs.id), timeout=10).renders == before

    foreign = submit(render_server, theirs.id, carpet.id)
    for method, request_type in (("GetRender", render_pb2.GetRenderRequest),
                                 ("CancelRender", render_pb2.CancelRenderRequest)):
        expect_error(lambda m=method, r=request_type: as_staff(r, m, id=foreign.id),
                     grpc.StatusCode.NOT_FOUND)
    for method, request_type in (("WatchRender", render_pb2.WatchRenderRequest),
                                 ("GetRenderOutput", render_pb2.GetRenderOutputRequest)):
        expect_error(lambda m=method, r=request_type: list(as_staff(r, m, id=foreign.id)),
                     grpc.StatusCode.NOT_FOUND)
    assert submit(render_server, theirs.id, carpet.id).status == render_pb2.RENDER_STATUS_QUEUED
    listed = as_staff(render_pb2.ListRendersRequest, "ListRenders")
    assert {job.organization_id for job in listed.renders} == {mine.id}
    expect_error(lambda: as_staff(render_pb2.ListRendersRequest, "ListRenders",
                                  organization_id=theirs.id), grpc.StatusCode.PERMISSION_DENIED)
    assert as_staff(render_pb2.GetRenderRequest, "GetRender", id=own.id).id == own.id
    totals = as_staff(render_pb2.GetRenderTotalsRequest, "GetRenderTotals")
    assert totals.total == len(listed.renders)
    # STAFF add carpets to their own organisation's catalogue only (organization_id 0 means
    # it for them); another's is as if it did not exist.
    added = as_staff(render_pb2.CreateCarpetRequest, "CreateCarpet", sku="S", name="S",
                     width_cm=1, length_cm=1, image=tiny_png())
    assert added.organization_id == mine.id
    expect_error(lambda: as_staff(render_pb2.CreateCarpetRequest, "CreateCarpet", sku="S",
                                  name="S", width_cm=1, length_cm=1, image=tiny_png(),
                                  organization_id=theirs.id), grpc.StatusCode.NOT_FOUND)


def test_limits_are_refused_with_the_limit_and_the_value(render_server, credit_server,
                                                        monkeypatch):
    """Every picture limit is INVALID_ARGUMENT naming the limit and the value, up to the
    transport's own limit (well above the picture limit), and before any pixel is decoded:
    a decode that starts on a picture over the pixel limit fails the test. A picture exactly
    at each limit is accepted."""
    from PIL import ImageFile

    from carpet_common.server import MAX_MESSAGE_BYTES
    from render_service.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS

    decoded_too_large = []
    load = ImageFile.ImageFile.load

    def guarded_load(image):
        if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
            decoded_too_large.append(image.size)
            raise AssertionError("a picture over the pixel limit is being decoded")
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded_load)
    org = create_org(credit_server, "Acme", 20)
    carpet = create_carpet(render_server)
    at_the_limit = tiny_png(size=(32, 32))
    at_the_limit += b"\0" * (MAX_IMAGE_BYTES - len(at_the_limit))  # trailing bytes after IEND
    assert submit(render_server, org.id, carpet.id, room=at_the_limit).status == \
        render_pb2.RENDER_STATUS_QUEUED
    assert refusal_of(render_server, org.id, carpet.id, at_the_limit + b"\0") == (
        f"room_image is {MAX_IMAGE_BYTES + 1} bytes; the limit is {MAX_IMAGE_BYTES} bytes "
        f"(10 MB)")
    most = io.BytesIO()
    Image.new("1", (8000, 5000)).save(most, "PNG")  # exactly 40 MP
    assert submit(render_server, org.id, carpet.id, room=most.getvalue()).status == \
        render_pb2.RENDER_STATUS_QUEUED
    one_row_more = io.BytesIO()
    Image.new("1", (8000, 5001)).save(one_row_more, "PNG")
    assert refusal_of(render_server, org.id, carpet.id, one_row_more.getvalue()) == (
        "room_image has 40008000 pixels (8000×5001); the limit is 40000000")

    def refusal(room):
        return expect_error(lambda: submit(render_server, org.id, carpet.id, room=room),
                            grpc.StatusCode.INVALID_ARGUMENT).details()

    oversized = b"\x89PNG" + b"0" * (MAX_IMAGE_BYTES + 1_000_000)  # 11 MB: under the transport's
    assert len(oversized) < MAX_MESSAGE_BYTES
    assert refusal(oversized) == (f"room_image is {len(oversized)} bytes; the limit is "
                                  f"{MAX_IMAGE_BYTES} bytes (10 MB)")
    many = io.BytesIO()
    Image.new("1", (8000, 6000)).save(many, "PNG")  # 48 MP, yet a small file
    assert refusal(many.getvalue()) == ("room_image has 48000000 pixels (8000×6000); the limit "
                                        "is 40000000")
    thin = io.BytesIO()
    Image.new("1", (200, 200_000)).save(thin, "PNG")  # 40 MP: a 1600×1.6M canvas in hd
    assert refusal(thin.getvalue()) == ("room_image is 200×200000; its longer side may be at "
                                        "most 4 times its shorter side")
    assert refusal(tiny_png(size=(8, 8))) == ("room_image is 8×8; each side must be at least 16 "
                                              "pixels")
    # A long runner is a fine carpet picture; a sliver is not.
    create_carpet(render_server, sku="RUNNER", image=tiny_png(size=(40, 360)))
    expect_error(lambda: create_carpet(render_server, sku="SLIVER", image=tiny_png(size=(20, 400))),
                 grpc.StatusCode.INVALID_ARGUMENT)
    assert decoded_too_large == []


def refusal_of(stubs, organization_id, carpet_id, room):
    return expect_error(lambda: submit(stubs, organization_id, carpet_id, room=room),
                        grpc.StatusCode.INVALID_ARGUMENT).details()


def test_room_pictures_are_kept_only_while_needed(render_server, credit_server, start_workers,
                                                  render_settings, clock, gateway):
    """A room picture is stored once its credit is reserved, removed with a job that ends
    unrendered, and after RENDER_INPUT_RETENTION; an output after RENDER_OUTPUT_RETENTION
    answers "expired"; the bytes kept are a per-organisation figure in the overview."""
    import datetime

    from protos.carpet.admin.v1 import admin_pb2
    from render_service import models, retention
    from render_service.storage import ImageStore
    from tests.helpers import ADMIN

    poor, rich = create_org(credit_server, "Poor", 0), create_org(credit_server, "Rich", 50)
    carpet = create_carpet(render_server)
    room = jpeg((64, 48))

    def stored(organization_id):
        return render_server.renders.GetRenderTotals(render_pb2.GetRenderTotalsRequest(
            organization_id=organization_id), timeout=10).storage_bytes

    expect_error(lambda: submit(render_server, poor.id, carpet.id, room=room),
                 grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CREDITS")
    assert models.RenderInput.select().count() == 0 and stored(poor.id) == 0

    canceled = submit(render_server, rich.id, carpet.id, room=room)
    assert stored(rich.id) == len(room)
    render_server.renders.CancelRender(render_pb2.CancelRenderRequest(id=canceled.id),
                                       timeout=10)
    assert stored(rich.id) == 0 and models.RenderInput.select().count() == 0

    start_workers()
    done, _ = wait_final(render_server, submit(render_server, rich.id, carpet.id, room=room).id)
    assert done.status == render_pb2.RENDER_STATUS_SUCCESS
    output_bytes = models.RenderJob.get_by_id(done.id).output_bytes
    assert output_bytes > 0 and stored(rich.id) == len(room) + output_bytes
    admin, _ = gateway
    overview = admin.GetOverview(admin_pb2.GetOverviewRequest(organization_id=rich.id),
                                 metadata=ADMIN, timeout=10)
    assert overview.storage_bytes == len(room) + output_bytes

    kept = dataclasses.replace(render_settings, render_input_retention_s=86400,
                               render_output_retention_s=86400)
    store = ImageStore(render_settings.render_storage_dir)
    assert retention.sweep(kept, store, min(clock(), models.utcnow())) == (0, 0)  # too young
    # Two days on for both clocks at play (the server's, fake; the workers', real).
    later = max(clock(), models.utcnow()) + datetime.timedelta(days=2)
    assert retention.sweep(kept, store, later) == (1, 1)
    assert retention.sweep(kept, store, later) == (0, 0)  # replicas: removed once
    assert stored(rich.id) == 0 and models.RenderInput.select().count() == 0
    from render_service.verify import count_problems

    assert list(count_problems()) == []  # the trigger-kept figures equal a recount
    expect_error(lambda: list(render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=done.id), timeout=10)),
        grpc.StatusCode.FAILED_PRECONDITION, "RENDER_OUTPUT_EXPIRED")


def test_a_full_decode_budget_asks_for_a_retry_and_gives_the_credit_back(
        render_server, credit_server, monkeypatch):
    """While other decodes hold the whole budget, a submission waits its patience, then is
    told to retry (RESOURCE_EXHAUSTED): its credit goes back, and the retry with the same
    idempotency key makes a new job rather than finding a failed one."""
    from carpet_common.pictures import DECODES
    from tests.helpers import error_reason

    monkeypatch.setattr(DECODES, "patience_s", 0.2)
    org = create_org(credit_server, "Acme", 5)
    carpet = create_carpet(render_server)
    room = tiny_png(size=(64, 48))
    with DECODES.decoding(10**12):  # another decode holds the whole budget
        refused = expect_error(lambda: submit(render_server, org.id, carpet.id, key="retry-1",
                                              room=room), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert error_reason(refused) == "DECODE_BUDGET_EXHAUSTED"
    shown = balance(credit_server, org.id)
    assert (shown.balance, shown.held) == (5, 0)
    job = submit(render_server, org.id, carpet.id, key="retry-1", room=room)
    assert job.status == render_pb2.RENDER_STATUS_QUEUED
    assert submit(render_server, org.id, carpet.id, key="retry-1", room=room).id == job.id
    assert balance(credit_server, org.id).held == 1
    assert verify_credit() == []
