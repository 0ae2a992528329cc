"""From a render to a sale over real HTTP (gateway, render and credit services on both engines):
share links made by the widget, their page with Open Graph tags, revoked and expired; quote
requests from the widget and from the share page, validated, rate-limited, one open per phone and
render, listed, updated, exported as CSV and sent as a `lead.created` webhook without personal
data; the funnel counted per carpet and day, a sale attributed within 7 days; a person's data
exported and erased on request, and leads past LEAD_RETENTION swept
(`docs/shares-and-leads.md`)."""
import csv
import datetime
import io
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from protos.carpet.render.v1 import render_pb2
from render_service import models
from tests.fake_image_api import tiny_png
from tests.integration.test_admin_http import TOKEN, call
from tests.integration.test_credit_accounts import create_org, staff_token
from tests.helpers import bearer
from tests.integration.test_widget_api import (  # noqa: F401 - the fixture
    SHOP,
    audit_rows,
    make_key,
    public,
    stack,
    submit_public,
)

pytestmark = pytest.mark.usefixtures("engine")


def json_call(stack, path, key, body, *, origin=SHOP, visitor=None):
    """(status, document, headers) of a public JSON POST as a shop's page makes it."""
    headers = {"X-Publishable-Key": key, "Origin": origin, "Content-Type": "application/json"}
    if visitor:
        headers["X-Forwarded-For"] = visitor
    request = urllib.request.Request(stack.base + path, data=json.dumps(body).encode(),
                                     method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), dict(error.headers)


def page(stack, path, *, method="GET", form=None, language="en"):
    """(status, text, headers) of the share page as a browser (or a messenger) gets it."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    headers = {"Accept-Language": language}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(stack.base + path, data=data, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), dict(error.headers)


def finished_render(stack, key, carpet_id, start_workers, **extra):
    """A widget render, rendered by a worker: its public id."""
    status, render, _ = submit_public(stack, key, carpet_id, **extra)
    assert status == 201, render
    start_workers()
    deadline = time.monotonic() + 60
    while public(stack, f"/public/v1/renders/{render['id']}", key)[1]["status"] != "success":
        assert time.monotonic() < deadline, "the render never finished"
        time.sleep(0.05)
    return render["id"]


@pytest.fixture
def shop(stack, credit_server, start_workers):
    """A shop with a carpet (two sizes), a key and one finished widget render."""
    organization = create_org(credit_server, "Halıcı Ahmet", 20)
    carpet = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=organization.id, sku="KLM-1", name="Kilim Mavi", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=160, length_cm=230),
               render_pb2.CarpetSize(width_cm=80, length_cm=150)]), timeout=10)
    key = make_key(stack, organization.id)["key"]
    small = carpet.sizes[1].id
    render_id = finished_render(stack, key, carpet.id, start_workers, carpetSizeId=small)
    return organization, carpet, key, render_id


def lead_body(clock, render_id, **fields):
    return {"renderId": render_id, "name": "Ayşe Yılmaz", "phone": "0532 123 45 67",
            "email": "Ayse@Example.COM", "message": "Salon için fiyat?",
            "consent": {"text": "Benimle iletişime geçilmesini kabul ediyorum.",
                        "version": "2026-01",
                        "acceptedAt": clock.now.isoformat() + "Z"}, **fields}


def test_a_share_link_shows_one_render_until_revoked_or_expired(stack, shop, clock):
    organization, carpet, key, render_id = shop
    status, link, headers = json_call(stack, f"/public/v1/renders/{render_id}/share", key,
                                      {"sessionId": "session-0001"})
    assert status == 201 and headers["Access-Control-Allow-Origin"] == SHOP
    token = link["url"].rsplit("/", 1)[1]
    assert link["url"] == f"{stack.base}/s/{token}" and re.fullmatch(r"[A-Za-z0-9]{32}", token)
    assert link["expiresAt"] == "2026-01-31T12:00:00Z"  # 30 days on the service's clock
    row = models.RenderShare.get_by_id(int(link["id"]))
    assert token not in (row.token_hash, row.shop_name) and row.shop_name == "Halıcı Ahmet"

    # The page as a messenger fetches it: Open Graph tags naming the picture, in Turkish.
    status, html, headers = page(stack, f"/s/{token}", language="tr-TR,tr;q=0.9")
    text = html.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert (headers["X-Robots-Tag"], headers["Referrer-Policy"]) == ("noindex", "no-referrer")
    assert '<html lang="tr">' in text
    assert '<meta property="og:title" content="Kilim Mavi (80 × 150 cm) — Halıcı Ahmet">' in text
    assert f'<meta property="og:image" content="{stack.base}/s/{token}/image">' in text
    assert "Mağazadan fiyat ya da ev ziyareti isteyin" in text
    # Nothing else of the shop or the render: not its key, not its public id, no other path.
    assert key not in text and render_id not in text and "/public/" not in text
    assert set(re.findall(r'(?:src|href|action)="([^"]+)"', text)) == {
        "/s/share.css", f"/s/{token}/image", f"/s/{token}/lead?lang=tr"}
    status, picture, headers = page(stack, f"/s/{token}/image")
    assert status == 200 and headers["Content-Type"] in ("image/png", "image/jpeg")
    assert picture[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    status, english, _ = page(stack, f"/s/{token}?lang=en", language="tr")
    assert status == 200 and "Ask the shop for a price or a home visit" in english.decode()

    # Counted in the funnel as a share of the carpet, today.
    day = models.FunnelDaily.get((models.FunnelDaily.carpet_id == carpet.id))
    assert (day.shared, day.day) == (1, datetime.date(2026, 1, 1))

    # Listed for the shop (never the token), revoked (audited): gone, 410.
    status, listed, _ = call(stack.base, f"/admin/shares?renderId={row.job_id}", headers=TOKEN)
    assert status == 200 and [(s["id"], s["renderId"], s.get("revokedAt")) for s in
                              listed["shares"]] == [(link["id"], str(row.job_id), None)]
    assert token not in json.dumps(listed)
    status, revoked, _ = call(stack.base, f"/admin/shares/{link['id']}/revoke", method="POST",
                              headers=TOKEN, body={})
    assert status == 200 and revoked["revokedAt"] == "2026-01-01T12:00:00Z"
    assert [(entry["render_id"], entry["outcome"]) for entry in audit_rows("RevokeShare")] == [
        (row.job_id, "ok")]
    status, gone, _ = page(stack, f"/s/{token}")
    assert status == 410 and "no longer works" in gone.decode()
    assert page(stack, f"/s/{token}/image")[0] == 410

    # A second link expires after 30 days; an unknown token was never there.
    status, second, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    token = second["url"].rsplit("/", 1)[1]
    assert page(stack, f"/s/{token}")[0] == 200
    clock.advance(days=30)
    assert page(stack, f"/s/{token}")[0] == 410
    assert page(stack, "/s/" + "A" * 32)[0] == 404
    assert page(stack, "/s/short")[0] == 404


def test_a_render_not_finished_or_of_another_shop_cannot_be_shared(stack, shop, credit_server):
    organization, carpet, key, render_id = shop
    other = create_org(credit_server, "Other", 5)
    other_key = make_key(stack, other.id)["key"]
    assert json_call(stack, f"/public/v1/renders/{render_id}/share", other_key, {})[:2] == (
        404, {"code": "NOT_FOUND", "message": "render not found"})
    # A picture no longer kept cannot be shared.
    models.RenderJob.update(output_expired=True).where(
        models.RenderJob.public_id == render_id).execute()
    status, refused, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    assert (status, refused["code"]) == (412, "RENDER_NOT_READY")


def test_quote_requests_from_the_widget_and_the_share_page(stack, shop, clock, credit_server):
    from credit_service import models as credit_models

    organization, carpet, key, render_id = shop
    status, hook, _ = call(stack.base, "/admin/webhooks", method="POST", headers=TOKEN,
                           body={"organizationId": organization.id,
                                 "url": "http://127.0.0.1:9/leads", "events": ["lead.created"]})
    assert status == 200, hook
    status, answer, headers = json_call(stack, "/public/v1/leads", key,
                                        lead_body(clock, render_id))
    assert (status, answer) == (201, {"status": "received"})
    assert headers["Access-Control-Allow-Origin"] == SHOP
    lead = models.Lead.get()
    job = models.RenderJob.get(models.RenderJob.public_id == render_id)
    assert (lead.organization_id, lead.job_id, lead.carpet_id, lead.name, lead.phone,
            lead.email, lead.status, lead.consent_version, lead.consent_accepted_at) == (
        organization.id, job.id, carpet.id, "Ayşe Yılmaz", "+905321234567",
        "Ayse@example.com", "new", "2026-01", clock.now)

    # One open request per phone and render, however the number is written.
    status, refused, _ = json_call(stack, "/public/v1/leads", key,
                                   lead_body(clock, render_id, phone="+90 (532) 123-45-67"))
    assert (status, refused["code"]) == (409, "LEAD_ALREADY_OPEN")
    # Every field checked, in words a shopper can read.
    for change, code, words in (
            ({"phone": "12345"}, "PHONE_INVALID", "phone must be a number like 0532 123 45 67"),
            ({"email": "not-an-address"}, "EMAIL_INVALID", "email must be an address like"),
            ({"name": " "}, "NAME_INVALID", "name is required"),
            ({"consent": {}}, "CONSENT_REQUIRED", "consent to be contacted is required"),
            ({"consent": {"text": "ok", "version": "1",
                          "acceptedAt": "2025-01-01T00:00:00Z"}}, "CONSENT_REQUIRED",
             "consent acceptedAt must be the moment")):
        status, refused, _ = json_call(stack, "/public/v1/leads", key,
                                       lead_body(clock, render_id,
                                                 **{"phone": "05551112233", **change}))
        assert (status, refused["code"]) == (400, code) and words in refused["message"], change
    status, refused, _ = json_call(stack, "/public/v1/leads", key,
                                   lead_body(clock, render_id, consent="yes"))
    assert (status, refused["code"]) == (400, "INVALID_ARGUMENT")
    # A bot filling the hidden field is answered like a person; nothing is stored.
    assert json_call(stack, "/public/v1/leads", key,
                     lead_body(clock, render_id, phone="05551112233",
                               website="http://spam.example"))[:2] == (201, {"status": "received"})
    assert models.Lead.select().count() == 1

    # The webhook says which lead, never who.
    deadline = time.monotonic() + 30
    while not credit_models.WebhookEvent.select().where(
            credit_models.WebhookEvent.type == "lead.created").exists():
        assert time.monotonic() < deadline, "no lead.created event"
        time.sleep(0.05)
    event = credit_models.WebhookEvent.get(credit_models.WebhookEvent.type == "lead.created")
    assert event.event_id == f"msg_lead_{lead.id}"
    assert json.loads(event.body)["data"] == {
        "organizationId": organization.id, "leadId": lead.id, "renderId": job.id,
        "carpetId": carpet.id, "status": "new", "createdAt": "2026-01-01T12:00:00.000Z"}
    for personal in ("Ayşe", "532", "example.com", "Salon"):
        assert personal not in event.body

    # From the share page: a plain form, in the reader's language.
    status, link, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    token = link["url"].rsplit("/", 1)[1]
    form = {"name": "Mehmet", "phone": "0212 555 66 77", "email": "", "message": "Ev ziyareti"}
    status, html, _ = page(stack, f"/s/{token}/lead?lang=tr", method="POST", form=form)
    assert status == 400 and "kutuyu işaretleyin" in html.decode()
    status, html, _ = page(stack, f"/s/{token}/lead?lang=en", method="POST",
                           form={**form, "phone": "12", "consent": "yes"})
    assert status == 400 and "Please write the phone number like 0532" in html.decode()
    assert 'value="Mehmet"' in html.decode()  # what was typed is kept
    status, html, _ = page(stack, f"/s/{token}/lead?lang=tr", method="POST",
                           form={**form, "consent": "yes"})
    assert status == 201 and "talebiniz mağazaya ulaştı" in html.decode()
    status, html, _ = page(stack, f"/s/{token}/lead?lang=en", method="POST",
                           form={**form, "consent": "yes"})
    assert status == 409 and "already asked" in html.decode()
    second = models.Lead.get(models.Lead.name == "Mehmet")
    assert (second.phone, second.publishable_key_id, second.consent_version,
            second.consent_accepted_at) == ("+902125556677", None, "share-page-1", clock.now)
    assert second.consent_text.startswith("Mağazanın bu talebim hakkında")

    # The shop's list, newest first; STAFF of another shop sees none of it.
    status, listed, _ = call(stack.base, f"/admin/leads?organizationId={organization.id}",
                             headers=TOKEN)
    assert status == 200 and [(row["name"], row["phone"], row["status"], row["renderId"])
                              for row in listed["leads"]] == [
        ("Mehmet", "+902125556677", "new", str(job.id)),
        ("Ayşe Yılmaz", "+905321234567", "new", str(job.id))]
    other = create_org(credit_server, "Other", 1)
    status, none, _ = call(stack.base, "/admin/leads",
                           headers=dict(bearer(staff_token(other.id))))
    assert status == 200 and none["leads"] == []
    assert call(stack.base, f"/admin/leads/{lead.id}", method="PATCH",
                headers=dict(bearer(staff_token(other.id))), body={"status": "won"})[0] == 404

    # Contacted, with a note (audited without the note or the shopper).
    staff = dict(bearer(staff_token(organization.id)))
    status, updated, _ = call(stack.base, f"/admin/leads/{lead.id}", method="PATCH",
                              headers=staff, body={"status": "contacted", "note": "Cuma arar"})
    assert status == 200 and (updated["status"], updated["note"]) == ("contacted", "Cuma arar")
    assert call(stack.base, f"/admin/leads/{lead.id}", method="PATCH", headers=staff,
                body={"status": "maybe"})[0] == 400
    entries = audit_rows("UpdateLead")  # refusals too: another shop's, a wrong status
    assert [entry["outcome"] for entry in entries] == [
        "error:NOT_FOUND", "ok", "error:INVALID_ARGUMENT"]
    assert (entries[1]["status"], entries[1]["note_changed"]) == ("contacted", True)
    assert "Cuma" not in json.dumps(entries) and "Ayşe" not in json.dumps(entries)
    status, filtered, _ = call(stack.base, "/admin/leads?status=contacted", headers=staff)
    assert [row["id"] for row in filtered["leads"]] == [str(lead.id)]

    # The CSV, in Turkish for a Turkish spreadsheet.
    request = urllib.request.Request(
        f"{stack.base}/admin/leads.csv?lang=tr&delimiter=semicolon", headers=staff)
    with urllib.request.urlopen(request, timeout=30) as response:
        rows = list(csv.reader(io.StringIO(response.read().decode("utf-8-sig")),
                               delimiter=";"))
    assert rows[0] == ["No.", "Oluşturulma (UTC)", "Kuruluş no.", "Durum", "Ad", "Telefon",
                       "E-posta", "Mesaj", "Görsel", "Halı no.", "Not", "Onay metni sürümü",
                       "Onay zamanı"]
    # A phone starts with "+", which a spreadsheet would run as a formula: quoted.
    assert [(row[3], row[4], row[5]) for row in rows[1:]] == [
        ("Yeni", "Mehmet", "'+902125556677"), ("Arandı", "Ayşe Yılmaz", "'+905321234567")]


def test_quote_requests_are_rate_limited_per_visitor(stack, shop, clock):
    organization, carpet, key, render_id = shop
    phones = [f"0532 000 00 {number:02d}" for number in range(7)]
    answers = [json_call(stack, "/public/v1/leads", key,
                         lead_body(clock, render_id, phone=phone), visitor="203.0.113.9")
               for phone in phones]
    assert [status for status, _, _ in answers] == [201] * 5 + [429] * 2
    assert answers[5][2]["Retry-After"].isdigit()
    # Another visitor is not held back by the first.
    assert json_call(stack, "/public/v1/leads", key, lead_body(clock, render_id,
                                                               phone="0532 000 00 99"),
                     visitor="198.51.100.7")[0] == 201
