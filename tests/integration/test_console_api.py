"""The console's server side over real HTTP, with the real services behind the gateway, on
SQLite and PostgreSQL: the usage chart's days (`docs/console.md`), the CSV exports, thumbnails and
room pictures on their own rate budget, cancelling from the console (audited), the chain check,
and STAFF kept to its own organisation everywhere."""
import csv
import dataclasses
import datetime
import io
import json
import time

import pytest
from PIL import Image

from tests.builders import (
    create_carpet,
    create_org,
    create_user,
    get,
    jpeg,
    staff,
    submit,
    wait_final,
)
from tests.helpers import SERVICE_TOKEN
from tests.integration.test_admin_gateway import world  # noqa: F401

pytestmark = pytest.mark.usefixtures("engine")


def as_staff(organization_id):
    return dict(staff(organization_id))


def test_usage_has_every_day_and_counts_from_the_roll_ups(world, http_gateway, clock):  # noqa: F811
    admin, acme, other, ada, done = world
    today = datetime.date.today()  # renders carry the render service's (real) time
    first = clock().date()  # the credit service runs on the test clock
    status, _, body = get(http_gateway, f"/admin/usage?from={first}&to={today}")
    assert status == 200, body
    days = json.loads(body)["days"]
    assert [day["date"] for day in days] == [
        (first + datetime.timedelta(days=offset)).isoformat()
        for offset in range((today - first).days + 1)]  # days without activity included
    assert sum(int(day["creditsAdded"]) for day in days) == 20 + 3  # the two seeds
    assert sum(int(day["creditsSpent"]) for day in days) == 1  # one preview render
    assert days[-1]["rendersByStatus"] == {"queued": "0", "processing": "0", "success": "1",
                                           "failed": "1"}
    # STAFF: its own organisation, even when it asks for all.
    status, _, body = get(http_gateway, f"/admin/usage?from={today}&to={today}",
                          headers=as_staff(acme.id))
    assert status == 200
    assert json.loads(body)["days"][0]["rendersByStatus"]["failed"] == "0"
    status, _, _ = get(http_gateway, f"/admin/usage?from={today}&to={today}"
                                     f"&organizationId={other.id}", headers=as_staff(acme.id))
    assert status == 403
    # Without dates: the last 30 days.
    status, _, body = get(http_gateway, "/admin/usage")
    assert status == 200 and len(json.loads(body)["days"]) == 30
    for bad in ("from=2026-13-01&to=2026-12-01", "from=2026-02-01&to=2026-01-01",
                "from=2024-01-01&to=2026-01-01", "from=yesterday&to=today"):
        status, _, body = get(http_gateway, "/admin/usage?" + bad)
        assert (status, json.loads(body)["code"]) == (400, "INVALID_ARGUMENT"), bad


def read_csv(body: bytes, delimiter: str = ",") -> list[list[str]]:
    assert body.startswith("\ufeff".encode())  # spreadsheets then read UTF-8
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=delimiter))


def test_csv_exports_stream_every_row_with_the_filters(world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    create_user(credit_server, acme.id, "sule@örnek.com.tr", name="=Şule Çağlar")
    status, headers, body = get(http_gateway, "/admin/users.csv")
    assert status == 200 and headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == 'attachment; filename="users.csv"'
    rows = read_csv(body)
    assert rows[0][:4] == ["id", "name", "email", "role"]
    names = {row[1] for row in rows[1:]}
    # Turkish letters survive; a cell a spreadsheet would run as a formula is defused.
    assert names == {"Ada", "Olga", "'=Şule Çağlar"}
    assert "sule@örnek.com.tr" in {row[2] for row in rows[1:]}

    rows = read_csv(get(http_gateway, "/admin/renders.csv")[2])
    assert [row[10] for row in rows[1:]] == ["failed", "success"]  # newest first
    assert rows[0][7:9] == ["carpet_id", "carpet_name"]
    assert [row[3] for row in rows[1:]] == ["Other", "Acme"]  # whose render, by name
    assert rows[2][5] == "Ada"
    rows = read_csv(get(http_gateway, "/admin/renders.csv?status=RENDER_STATUS_SUCCESS")[2])
    assert [row[0] for row in rows[1:]] == [str(done.id)]
    rows = read_csv(get(http_gateway, f"/admin/credit-logs.csv?organizationId={acme.id}")[2])
    assert [(row[3], row[4]) for row in rows[1:]] == [("render", "-1"), ("seed", "20")]
    rows = read_csv(get(http_gateway, "/admin/audit.csv")[2])
    assert rows[0][:3] == ["id", "created_at", "actor"] and len(rows) > 1

    # STAFF: its own organisation's rows; no audit export.
    rows = read_csv(get(http_gateway, "/admin/users.csv", headers=as_staff(other.id))[2])
    assert [row[1] for row in rows[1:]] == ["Olga"]
    status, _, body = get(http_gateway, "/admin/audit.csv", headers=as_staff(other.id))
    assert (status, json.loads(body)["code"]) == (403, "PERMISSION_DENIED")
    status, _, body = get(http_gateway, "/admin/renders.csv", headers={})
    assert status == 401


def test_csv_in_a_language_and_with_semicolons(world, http_gateway, credit_server):  # noqa: F811
    """`lang` puts the header and the coded values in the console's words; `delimiter=semicolon`
    is what a spreadsheet set to Turkish splits on. Filters still apply; anything else is
    refused before a row is read."""
    admin, acme, other, ada, done = world
    create_user(credit_server, acme.id, "ali@example.com", name="Ali; =1+2")
    status, _, body = get(http_gateway, "/admin/renders.csv?lang=tr&delimiter=semicolon"
                                        "&status=RENDER_STATUS_SUCCESS")
    assert status == 200
    rows = read_csv(body, delimiter=";")
    assert rows[0][:4] == ["No.", "Oluşturulma (UTC)", "Kuruluş no.", "Kuruluş"]
    assert [(row[0], row[3], row[9], row[10]) for row in rows[1:]] == [
        (str(done.id), "Acme", "Önizleme", "Tamamlandı")]
    rows = read_csv(get(http_gateway,
                        f"/admin/credit-logs.csv?lang=en&organizationId={acme.id}")[2])
    assert rows[0][3:7] == ["Kind", "Change", "Balance after", "Reason"]
    assert [(row[3], row[4], row[6]) for row in rows[1:]] == [
        ("Render", "-1", "Render charge"), ("Initial", "20", "Initial credit")]
    rows = read_csv(get(http_gateway, "/admin/users.csv?lang=tr&delimiter=semicolon")[2],
                    delimiter=";")
    assert {(row[1], row[3], row[6]) for row in rows[1:]} == {
        ("Ada", "Personel", "Evet"), ("Olga", "Personel", "Evet"),
        ("Ali; '=1+2", "Personel", "Evet")}  # defused after the `;` too
    for query, message in (("lang=de", "lang must be one of tr, en"),
                           ("delimiter=tab", "delimiter must be one of comma, semicolon")):
        status, _, body = get(http_gateway, f"/admin/renders.csv?{query}")
        assert (status, json.loads(body)) == (400, {"code": "INVALID_ARGUMENT",
                                                    "message": message})


def test_a_balance_with_its_grants(world, http_gateway):  # noqa: F811
    """GET /admin/balance: the grants that make up a balance; STAFF its own only."""
    admin, acme, other, ada, done = world
    status, _, body = get(http_gateway, f"/admin/balance?organizationId={acme.id}")
    balance = json.loads(body)
    assert status == 200
    assert (balance["balance"], balance["available"]) == ("19", "19")
    assert [(grant["kind"], grant["amount"], grant["remaining"], grant["reason"])
            for grant in balance["grants"]] == [("GRANT_KIND_PAID", "20", "19", "initial credit")]
    status, _, body = get(http_gateway, "/admin/balance", headers=as_staff(other.id))
    assert (status, json.loads(body)["balance"]) == (200, "3")
    status, _, body = get(http_gateway, f"/admin/balance?organizationId={acme.id}",
                          headers=as_staff(other.id))
    assert (status, json.loads(body)["code"]) == (403, "PERMISSION_DENIED")


def test_pictures_have_their_own_budget(credit_server, render_server, render_settings,
                                        start_workers):
    from admin_gateway.app import start_gateway

    acme = create_org(credit_server, "Acme", 50)
    carpet = create_carpet(render_server)
    with_room = submit(render_server, acme.id, carpet.id, room=jpeg((400, 300)))
    failing = submit(render_server, acme.id, carpet.id, key="second")
    start_workers()
    wait_final(render_server, with_room.id)
    wait_final(render_server, failing.id)
    settings = dataclasses.replace(render_settings, render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=SERVICE_TOKEN["admin-gateway"],
                                   rate_limit_admin="2/minute", rate_limit_images="50/minute")
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    base = f"http://127.0.0.1:{gateway.http.port}"
    try:
        for _ in range(6):  # more pictures than the API's budget allows calls
            status, headers, thumbnail = get(base, f"/admin/renders/{with_room.id}/thumbnail")
            assert (status, headers["Content-Type"]) == (200, "image/jpeg")
        full = get(base, f"/admin/renders/{with_room.id}/image")[2]
        with Image.open(io.BytesIO(full)) as picture:
            assert picture.size[0] > 320
        with Image.open(io.BytesIO(thumbnail)) as picture:
            assert picture.size[0] <= 320 and picture.size[1] <= 240
        assert len(thumbnail) < 20_000
        status, headers, room = get(base, f"/admin/renders/{with_room.id}/room")
        assert (status, headers["Content-Type"]) == (200, "image/jpeg")
        with Image.open(io.BytesIO(room)) as picture:
            assert picture.size == (400, 300)
        status, _, body = get(base, f"/admin/renders/{failing.id}/room")
        assert (status, json.loads(body)["code"]) == (404, "NOT_FOUND")
        # The API's own budget is untouched by all those pictures.
        assert [get(base, "/admin/overview")[0] for _ in range(3)] == [200, 200, 429]
    finally:
        gateway.stop()


def test_cancel_from_the_console_is_audited(credit_server, render_server, http_gateway,
                                            start_workers):
    start_workers(render_workers=0)  # no renders, but the relays of the render service's outboxes
    acme = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    queued = submit(render_server, acme.id, carpet.id)  # no workers: it stays queued
    status, _, body = get(http_gateway, f"/admin/renders/{queued.id}/cancel",
                          headers=as_staff(acme.id), method="POST", body={})
    assert status == 403  # STAFF: no admin actions
    status, _, body = get(http_gateway, f"/admin/renders/{queued.id}/cancel", method="POST",
                          body={})
    job = json.loads(body)
    assert (status, job["status"], job["errorText"]) == (200, "RENDER_STATUS_FAILED", "canceled")
    status, _, body = get(http_gateway, f"/admin/renders/{queued.id}/cancel", method="POST",
                          body={})
    assert (status, json.loads(body)["code"]) == (412, "NOT_CANCELLABLE")
    # The render service wrote both entries with the cancel (the refusal on its own); its relay
    # brings them to the audit chain.
    deadline = time.monotonic() + 30
    while True:
        status, _, body = get(http_gateway, "/admin/audit?action=/carpet.render.v1."
                                            "RenderService/CancelRender")
        rows = json.loads(body)["auditLogs"]
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(row["actor"], row["target"], row["organizationId"], row["outcome"])
            for row in rows] == [
        ("alice", f"render_job:{queued.id}", str(acme.id), "error:FAILED_PRECONDITION"),
        ("alice", f"render_job:{queued.id}", str(acme.id), "ok")]


def test_chain_check_and_console_settings(world, http_gateway):  # noqa: F811
    admin, acme, other, ada, done = world
    status, _, body = get(http_gateway, "/admin/audit/verify")
    check = json.loads(body)
    assert (status, check["ok"], check["problems"]) == (200, True, [])
    assert int(check["rows"]) >= 4
    assert get(http_gateway, "/admin/audit/verify", headers=as_staff(acme.id))[0] == 403
    status, _, body = get(http_gateway, "/admin/console-settings", headers=as_staff(acme.id))
    settings = json.loads(body)
    assert (status, settings["largeAdjustment"]) == (200, "10000")
    assert settings["renderModes"] == {"preview": "1", "standard": "2", "hd": "4"}


def test_staff_reads_its_own_credit_history(world, http_gateway):  # noqa: F811
    admin, acme, other, ada, done = world
    status, _, body = get(http_gateway, "/admin/credit-logs", headers=as_staff(acme.id))
    assert status == 200
    assert {row["organizationId"] for row in json.loads(body)["logs"]} == {str(acme.id)}
    status, _, _ = get(http_gateway, f"/admin/credit-logs?organizationId={other.id}",
                       headers=as_staff(acme.id))
    assert status == 403
