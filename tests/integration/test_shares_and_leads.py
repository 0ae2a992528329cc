"""From a render to a sale over real HTTP (gateway, render and credit services on both engines):
share links made by the widget, their page with Open Graph tags, revoked and expired; quote
requests from the widget and from the share page, validated, rate-limited, one open per phone and
render, listed, updated, exported as CSV and sent as a `lead.created` webhook without personal
data; the funnel counted per carpet and day, a sale attributed within 7 days; a person's data
exported and erased on request, and leads past LEAD_RETENTION swept
(`docs/shares-and-leads.md`)."""
import base64
import concurrent.futures
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
from PIL import Image

from protos.carpet.render.v1 import render_pb2
from render_service import models
from tests.builders import TOKEN, call, create_org, staff_token
from tests.fake_image_api import tiny_png
from tests.helpers import bearer
from tests.integration.test_widget_api import (
    SHOP,
    audit_rows,
    make_key,
    public,
    stack,  # noqa: F401 - the fixture
    submit_public,
)

pytestmark = pytest.mark.usefixtures("engine")


def json_call(stack, path, key, body, *, origin=SHOP, visitor=None):  # noqa: F811
    """(status, document, headers) of a public JSON POST as a shop's page makes it."""
    headers = {"X-Publishable-Key": key, "Origin": origin}
    if visitor:
        headers["X-Forwarded-For"] = visitor
    return call(stack.base, path, method="POST", headers=headers, body=body)


def page(stack, path, *, method="GET", form=None, language="en", headers=None):  # noqa: F811
    """(status, body, headers) of the share page as a browser (or a messenger) gets it."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    headers = {"Accept-Language": language, **(headers or {})}
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


def finished_render(stack, key, carpet_id, start_workers, **extra):  # noqa: F811
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
def shop(stack, credit_server, start_workers):  # noqa: F811
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


def counts(conversionValue=0.0, **steps):  # noqa: N803 - the JSON name
    """A funnel's counts as the admin API writes them (every field, int64 as text)."""
    named = ("opened", "photoAdded", "rendered", "shared", "leads", "conversions")
    return {**{name: str(steps.get(name, 0)) for name in named},
            "conversionValue": conversionValue}


def lead_body(clock, render_id, **fields):
    return {"renderId": render_id, "name": "Ayşe Yılmaz", "phone": "0532 123 45 67",
            "email": "Ayse@Example.COM", "message": "Salon için fiyat?",
            "consent": {"text": "Benimle iletişime geçilmesini kabul ediyorum.",
                        "version": "2026-01",
                        "acceptedAt": clock.now.isoformat() + "Z"}, **fields}


def wide_logo() -> bytes:
    """A 1200 × 300 PNG with a transparent half."""
    picture = Image.new("RGBA", (1200, 300), (122, 46, 31, 255))
    picture.paste((0, 0, 0, 0), (600, 0, 1200, 300))
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def test_the_share_page_shows_the_shops_logo_which_staff_set_and_remove(stack, shop,  # noqa: F811
                                                                       credit_server):
    organization, _carpet, key, render_id = shop
    logo_path = f"/admin/organizations/{organization.id}/logo"
    _, link, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    token = link["url"].rsplit("/", 1)[1]
    status, html, _ = page(stack, f"/s/{token}")
    assert status == 200 and '<span class="logo" aria-hidden="true">H</span>' in html.decode()
    assert f"/s/{token}/logo" not in html.decode() and page(stack, f"/s/{token}/logo")[0] == 404
    assert page(stack, logo_path, headers=TOKEN)[0] == 404

    # STAFF set their own shop's logo, never another's; a file that is no picture is refused.
    own = dict(bearer(staff_token(organization.id)))
    other = dict(bearer(staff_token(create_org(credit_server, "Başka Halı", 1).id)))
    body = {"image": base64.b64encode(wide_logo()).decode()}
    status, refused, _ = call(stack.base, logo_path, method="PUT", headers=other, body=body)
    assert (status, refused["code"]) == (403, "PERMISSION_DENIED")
    status, refused, _ = call(stack.base, logo_path, method="PUT", headers=own,
                              body={"image": base64.b64encode(b"GIF89a not a logo").decode()})
    assert (status, refused["code"]) == (400, "INVALID_ARGUMENT")
    status, saved, _ = call(stack.base, logo_path, method="PUT", headers=own, body=body)
    assert status == 200 and (saved["organizationId"], saved["contentType"]) == (
        str(organization.id), "image/png")
    assert saved["image"] == ""  # the picture is not sent back

    # Kept reduced (512 × 128, its transparency kept), shown on the page and to the console.
    status, stored, headers = page(stack, logo_path, headers=own)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    with Image.open(io.BytesIO(stored)) as reduced:
        assert (reduced.size, reduced.mode) == ((512, 128), "RGBA")
        assert reduced.getpixel((500, 64))[3] == 0 and reduced.getpixel((10, 64))[3] == 255
    status, html, _ = page(stack, f"/s/{token}")
    assert f'<img class="logo" src="/s/{token}/logo" alt="">' in html.decode()
    assert page(stack, f"/s/{token}/logo")[:2] == (200, stored)
    assert [(entry.get("bytes"), entry["outcome"]) for entry in audit_rows("SetShopLogo")] == [
        (None, "error:INVALID_ARGUMENT"), (len(stored), "ok")]
    # A PNG cut short passes its header's checks and fails as it is decoded: still a 400, and
    # the logo stays as it was.
    status, refused, _ = call(stack.base, logo_path, method="PUT", headers=own,
                              body={"image": base64.b64encode(wide_logo()[:300]).decode()})
    assert (status, refused["code"]) == (400, "INVALID_ARGUMENT")
    assert "not a readable PNG or JPEG" in refused["message"]
    assert page(stack, logo_path, headers=own)[:2] == (200, stored)

    # Removed (audited): the initial again. A link that no longer works shows no logo either.
    status, _, _ = call(stack.base, logo_path, method="PUT", headers=own, body=body)
    status, removed, _ = call(stack.base, logo_path, method="DELETE", headers=TOKEN)
    assert status == 200 and removed["organizationId"] == str(organization.id)
    assert [entry["outcome"] for entry in audit_rows("DeleteShopLogo")] == ["ok"]
    assert call(stack.base, logo_path, method="DELETE", headers=TOKEN)[0] == 404
    assert '<span class="logo"' in page(stack, f"/s/{token}")[1].decode()
    call(stack.base, logo_path, method="PUT", headers=own, body=body)
    call(stack.base, f"/admin/shares/{link['id']}/revoke", method="POST", headers=TOKEN, body={})
    assert page(stack, f"/s/{token}/logo")[0] == 410


def test_a_share_link_shows_one_render_until_revoked_or_expired(stack, shop, clock):  # noqa: F811
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
    day = models.FunnelDaily.get(models.FunnelDaily.carpet_id == carpet.id)
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


def test_only_a_shops_own_kept_render_is_shared(stack, shop, credit_server):  # noqa: F811
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


def test_quote_requests_from_the_widget_and_the_share_page(
        stack, shop, clock, credit_server):  # noqa: F811
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
        "ayse@example.com", "new", "2026-01", clock.now)

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


def test_quote_requests_are_rate_limited_per_visitor(stack, shop, clock):  # noqa: F811
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


def test_the_funnel_per_carpet_and_day_and_a_sale_attributed(stack, shop, clock,  # noqa: F811
                                                               credit_server):
    organization, carpet, key, render_id = shop
    session = "visitor-session-1"
    for step in ("opened", "opened", "photo_added", "rendered"):
        status, answer, _ = json_call(stack, "/public/v1/events", key,
                                      {"sessionId": session, "type": step,
                                       "carpetId": str(carpet.id)})
        assert (status, answer) == (202, {"counted": True})
    # Shares and requests are counted where they are made, not from the page.
    assert json_call(stack, "/public/v1/events", key, {"sessionId": session, "type": "shared",
                                                       "carpetId": str(carpet.id)})[:2] == (
        202, {"counted": False})
    json_call(stack, f"/public/v1/renders/{render_id}/share", key, {"sessionId": session})
    assert json_call(stack, "/public/v1/leads", key,
                     lead_body(clock, render_id, sessionId=session))[0] == 201
    for body, code in (({"sessionId": "x", "type": "opened", "carpetId": str(carpet.id)},
                        "INVALID_ARGUMENT"),
                       ({"sessionId": session, "type": "bought", "carpetId": str(carpet.id)},
                        "INVALID_ARGUMENT"),
                       ({"sessionId": session, "type": "opened", "carpetId": "999999"},
                        "NOT_FOUND")):
        status, refused, _ = json_call(stack, "/public/v1/events", key, body)
        assert (status, refused["code"]) == ({"NOT_FOUND": 404}.get(code, 400), code), body

    # The next day: another carpet opened; a sale reported by the shop's backend, twice.
    clock.advance(days=1)
    runner = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=organization.id, sku="RUN-1", name="Yolluk", image=tiny_png(),
        width_cm=80, length_cm=300), timeout=10)
    json_call(stack, "/public/v1/events", key, {"sessionId": "visitor-session-2",
                                                "type": "opened", "carpetId": str(runner.id)})
    staff = dict(bearer(staff_token(organization.id)))
    for _ in range(2):
        status, sale, _ = call(stack.base, "/admin/conversions", method="POST", headers=staff,
                               body={"sessionId": session, "value": 12500.5,
                                     "orderId": "ORD-1"})
        assert status == 200 and sale["carpetId"] == str(carpet.id)
    assert models.FunnelConversion.select().count() == 1
    for body, code in (({"sessionId": "never-seen-1", "value": 1}, "NOT_ATTRIBUTABLE"),
                       ({"sessionId": session, "renderId": "1", "value": 1},
                        "INVALID_ARGUMENT"),
                       ({"sessionId": session, "value": 1.234}, "INVALID_ARGUMENT"),
                       ({"sessionId": session, "value": -1}, "INVALID_ARGUMENT")):
        status, refused, _ = call(stack.base, "/admin/conversions", method="POST",
                                  headers=staff, body=body)
        assert (status, refused["code"]) == ({"NOT_ATTRIBUTABLE": 412}.get(code, 400),
                                             code), body
    # A session older than 7 days no longer attributes.
    clock.advance(days=7)
    status, refused, _ = call(stack.base, "/admin/conversions", method="POST", headers=staff,
                              body={"sessionId": session, "value": 10})
    assert (status, refused["code"]) == (412, "NOT_ATTRIBUTABLE")

    status, funnel, _ = call(stack.base, "/admin/analytics?days=10", headers=staff)
    assert status == 200 and len(funnel["days"]) == 10
    by_day = {day["date"]: day["counts"] for day in funnel["days"]}
    assert by_day["2026-01-01"] == counts(opened=2, photoAdded=1, rendered=1, shared=1, leads=1)
    assert by_day["2026-01-02"] == counts(opened=1, conversions=1, conversionValue=12500.5)
    assert by_day["2026-01-09"] == counts()
    assert [(row["carpetName"], row["counts"]["opened"], row["counts"]["leads"])
            for row in funnel["carpets"]] == [("Kilim Mavi", "2", "1"), ("Yolluk", "1", "0")]
    # Another shop's funnel is empty; STAFF cannot read it.
    other = create_org(credit_server, "Other", 1)
    status, empty, _ = call(stack.base, "/admin/analytics?days=10",
                            headers=dict(bearer(staff_token(other.id))))
    assert status == 200 and empty["carpets"] == [] and empty["total"] == counts()
    assert call(stack.base, f"/admin/analytics?organizationId={organization.id}",
                headers=dict(bearer(staff_token(other.id))))[0] == 403
    assert call(stack.base, "/admin/analytics?days=400", headers=staff)[0] == 400

    request = urllib.request.Request(f"{stack.base}/admin/analytics.csv?days=10",
                                     headers=staff)
    with urllib.request.urlopen(request, timeout=30) as response:
        rows = list(csv.reader(io.StringIO(response.read().decode("utf-8-sig"))))
    assert rows == [
        ["carpet_id", "carpet_name", "opened", "photo_added", "rendered", "shared", "leads",
         "conversions", "conversion_value", "lead_rate"],
        [str(carpet.id), "Kilim Mavi", "2", "1", "1", "1", "1", "1", "12500.50", "100.0"],
        [str(runner.id), "Yolluk", "1", "0", "0", "0", "0", "0", "0.00", ""]]


def test_a_persons_data_is_exported_and_erased_and_leads_expire(stack, shop, clock,  # noqa: F811
                                                                 render_settings):
    from render_service import retention
    from render_service.storage import ImageStore

    organization, carpet, key, render_id = shop
    assert json_call(stack, "/public/v1/leads", key, lead_body(clock, render_id))[0] == 201
    assert json_call(stack, "/public/v1/leads", key,
                     lead_body(clock, render_id, phone="05329998877", email=""))[0] == 201
    job = models.RenderJob.get(models.RenderJob.public_id == render_id)
    status, link, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    token = link["url"].rsplit("/", 1)[1]

    status, held, _ = call(stack.base, "/admin/privacy/export", method="POST", headers=TOKEN,
                           body={"email": "ayse@EXAMPLE.com"})
    assert status == 200 and [(lead["name"], lead["phone"], lead["consent"]["version"])
                              for lead in held["leads"]] == [
        ("Ayşe Yılmaz", "+905321234567", "2026-01")]
    assert held["renderIds"] == [str(job.id)]
    assert call(stack.base, "/admin/privacy/export", method="POST", headers=TOKEN,
                body={})[0] == 400
    status, erased, _ = call(stack.base, "/admin/privacy/erase", method="POST", headers=TOKEN,
                             body={"phone": "+90 532 123 45 67"})
    assert status == 200 and erased == {"leadsErased": 1, "rendersErased": 1}
    assert [lead.phone for lead in models.Lead.select()] == ["+905329998877"]
    assert not models.Lead.select().where(models.Lead.phone == "+905321234567").exists()
    job = models.RenderJob.get_by_id(job.id)
    assert (job.output_expired, job.input_bytes, job.output_bytes) == (True, 0, 0)
    assert not models.RenderInput.select().where(models.RenderInput.job == job.id).exists()
    assert page(stack, f"/s/{token}")[0] == 410
    # The audit entries hold what was done, never whose data.
    exported, erased_entry = audit_rows("ExportPersonalData"), audit_rows("ErasePersonalData")
    assert [(entry.get("leads"), entry["outcome"]) for entry in exported] == [
        (1, "ok"), (None, "error:INVALID_ARGUMENT")]
    assert [(entry["leads"], entry["renders"]) for entry in erased_entry] == [(1, 1)]
    assert "532" not in json.dumps(exported + erased_entry)
    assert "xample" not in json.dumps(exported + erased_entry)

    # Past LEAD_RETENTION the sweeper deletes what is left.
    clock.advance(days=731)
    retention.sweep(render_settings, ImageStore(render_settings.render_storage_dir), clock())
    assert models.Lead.select().count() == 0 and models.LeadEvent.select().count() == 0


def test_one_open_request_per_phone_and_render_when_sent_at_once(stack, shop,  # noqa: F811
                                                                  clock):
    """Eight requests for one phone (written eight ways) at the same moment, from eight
    addresses: the partial unique index lets one through."""
    organization, carpet, key, render_id = shop
    ways = ["0532 123 45 67", "05321234567", "+90 532 123 45 67", "532 123 4567",
            "0090 532 123 45 67", "+90 (532) 123-45-67", "90 532 123 45 67", "0532-123-45-67"]
    with concurrent.futures.ThreadPoolExecutor(len(ways)) as pool:
        answers = list(pool.map(
            lambda index: json_call(stack, "/public/v1/leads", key,
                                    lead_body(clock, render_id, phone=ways[index]),
                                    visitor=f"203.0.113.{index + 1}"),
            range(len(ways))))
    assert sorted((status, document.get("code", "")) for status, document, _ in answers) == [
        (201, "")] + [(409, "LEAD_ALREADY_OPEN")] * 7
    assert [(lead.phone, lead.status) for lead in models.Lead.select()] == [
        ("+905321234567", "new")]
    assert models.LeadEvent.select().count() == 1
    assert models.FunnelDaily.get(models.FunnelDaily.carpet_id == carpet.id).lead == 1
