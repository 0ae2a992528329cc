"""Share links, quote requests and the funnel in a real Chromium, against the real gateway and
services on both engines (`docs/shares-and-leads.md`): the share page as a shopper's friend opens
it (picture, Open Graph tags, no sideways scroll at 360 px, axe clean, nothing blocked by its
strict CSP) and as a messenger's preview fetch sees it; its quote form refusing a bad phone in
both languages, needing the consent box, and taking a request; the console's Leads screen
changing a request's status and note and a shopper's data exported and erased on request, the
Analytics screen showing the funnel; a shop's
logo set on the console and shown on its share pages."""
import json
import os
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from protos.carpet.credit.v1 import account_pb2
from render_service import models
from tests.e2e.test_admin_page import (
    SCREENSHOTS,
    Dialogs,
    browser,  # noqa: F401 - the fixture
    open_screen,
    person,
    sign_in,
)
from tests.integration.test_shares_and_leads import (  # noqa: F401
    json_call,
    lead_body,
    shop,
    wide_logo,
)
from tests.integration.test_widget_api import stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("engine")


def share_link(stack, key, render_id):  # noqa: F811
    status, link, _ = json_call(stack, f"/public/v1/renders/{render_id}/share", key, {})
    assert status == 201, link
    return link["url"]


def test_the_share_page_and_its_quote_form(browser, stack, shop):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    organization, carpet, key, render_id = shop
    url = share_link(stack, key, render_id)

    # A messenger's preview fetch: no script runs, the tags say it all.
    request = urllib.request.Request(url, headers={"User-Agent": "WhatsApp/2.24.1 A"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    assert '<meta property="og:title" content="Kilim Mavi (80 × 150 cm) — Halıcı Ahmet">' in text
    assert f'<meta property="og:image" content="{url}/image">' in text

    context = browser.new_context(viewport={"width": 360, "height": 780}, locale="tr-TR")
    page = context.new_page()
    blocked = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(url)
    expect(page.locator("h1")).to_have_text("Kilim Mavi")
    expect(page.locator(".size")).to_have_text("80 × 150 cm")
    expect(page.locator(".shop")).to_have_text("Halıcı Ahmet")
    assert page.evaluate("document.querySelector('img.render').naturalWidth") > 0
    assert page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, "share-page-tr.png"), full_page=True)
    results = Axe().run(page)
    assert [violation["id"] for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")] == []

    # The consent box is required: the browser does not send the form without it.
    page.fill("input[name=name]", "Mehmet Kaya")
    page.fill("input[name=phone]", "0212 555")
    page.click("button[type=submit]")
    assert page.evaluate("document.querySelector('input[name=consent]').validity.valid") is False
    assert models.Lead.select().count() == 0
    # A wrong phone: the page says how to write it, in Turkish, and keeps what was typed.
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("0532 123 45 67 ya da +90 532 123 45 67")
    expect(page.locator("input[name=name]")).to_have_value("Mehmet Kaya")
    page.fill("input[name=phone]", "0212 555 66 77")
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("talebiniz mağazaya ulaştı")
    lead = models.Lead.get()
    assert (lead.name, lead.phone, lead.consent_version) == ("Mehmet Kaya", "+902125556677",
                                                            "share-page-1")
    assert blocked == []  # nothing refused by the page's Content-Security-Policy
    context.close()

    # In English, from the browser's language.
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"})
    page = context.new_page()
    page.goto(url)
    expect(page.locator("h2")).to_have_text("Ask the shop for a price or a home visit")
    page.fill("input[name=name]", "Jane")
    page.fill("input[name=phone]", "12")
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("Please write the phone number like")
    context.close()


def test_the_leads_and_analytics_screens(browser, stack, shop, clock,  # noqa: F811
                                         credit_server):
    organization, carpet, key, render_id = shop
    for step in ("opened", "opened", "photo_added", "rendered"):
        json_call(stack, "/public/v1/events", key, {"sessionId": "session-e2e-1", "type": step,
                                                    "carpetId": str(carpet.id)})
    assert json_call(stack, "/public/v1/leads", key, lead_body(clock, render_id))[0] == 201
    url = share_link(stack, key, render_id)
    person(credit_server, organization.id, "magaza@halici.com.tr")
    for language, (status_word, saved) in {"tr": ("Arandı", "talebi kaydedildi"),
                                           "en": ("Contacted", "request saved")}.items():
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        dialogs = Dialogs(page)
        sign_in(page, stack.base, "magaza@halici.com.tr", language)
        open_screen(page, "leads")
        row = page.locator("#leads tbody tr").first
        expect(row).to_contain_text("Ayşe Yılmaz")
        expect(row).to_contain_text("+905321234567")
        row.locator("select").select_option("contacted")
        expect(page.locator("#notice")).to_contain_text(saved)
        expect(page.locator("#leads tbody tr select").first).to_have_value("contacted")
        assert models.Lead.get().status == "contacted"
        dialogs.answers.append(f"Cuma arayacak ({language})")
        page.locator("#leads tbody tr").first.get_by_role("button").click()
        expect(page.locator("#leads tbody tr .note").first).to_have_text(
            f"Cuma arayacak ({language})")
        assert status_word in page.locator("#leads tbody tr select").first.inner_text()

        open_screen(page, "analytics")
        expect(page.locator("#funnel-carpets tbody tr").first).to_contain_text("Kilim Mavi")
        expect(page.locator("#chart-funnel svg.chart")).to_be_visible()
        steps = page.locator("#funnel-steps li")
        expect(steps.first).to_contain_text({"tr": "Açıldı: 2", "en": "Opened: 2"}[language])
        expect(steps.nth(2)).to_contain_text({"tr": "%50", "en": "50%"}[language])
        with page.expect_download() as download:
            page.click("#analytics-csv")
        with open(download.value.path(), encoding="utf-8-sig") as handle:
            first_line = handle.readline()
        # In the console's language, with the separator its spreadsheets expect.
        assert first_line.startswith({"tr": '"Halı no.";"Halı";"Açıldı";',
                                      "en": '"Carpet no.","Carpet","Opened",'}[language])
        page.close()

    # The render's detail lists its share link; withdrawn there, the link is gone.
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = Dialogs(page)
    sign_in(page, stack.base, "magaza@halici.com.tr", "en")
    open_screen(page, "renders")
    page.click("#renders tbody button")
    shares = page.locator("#render-shares li")
    expect(shares).to_have_count(1)
    expect(shares.first).to_contain_text("works until")
    shares.first.get_by_role("button", name="Withdraw").click()
    expect(shares.first).to_contain_text("withdrawn")
    assert dialogs.seen[-1].startswith("Withdraw this share link?")
    assert models.RenderShare.get().revoked_at is not None
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=30)
    assert gone.value.code == 410

    # A shopper's data on request: exported as a file, then erased (the dialog names them).
    page.click("#render-close")
    open_screen(page, "leads")
    page.click("#privacy-erase")  # nobody named: said at the field, nothing erased
    expect(page.locator("#privacy-contact")).to_have_attribute("aria-invalid", "true")
    page.fill("#privacy-contact", "0532 123 45 67")
    with page.expect_download() as download:
        page.click("#privacy-export")
    assert download.value.suggested_filename == "personal-data.json"
    with open(download.value.path(), encoding="utf-8") as handle:
        held = json.load(handle)
    assert [(lead["name"], lead["phone"]) for lead in held["leads"]] == [
        ("Ayşe Yılmaz", "+905321234567")]
    page.click("#privacy-erase")
    expect(page.locator("#notice")).to_contain_text("Deleted 1 request(s) and the photos of 1")
    assert dialogs.seen[-1].startswith("Delete everything held about 0532 123 45 67?")
    assert models.Lead.select().count() == 0
    expect(page.locator("#leads tbody tr")).to_have_count(1)  # the "nothing here" row


def test_staff_set_the_logo_their_share_pages_show(browser, stack, shop, credit_server,  # noqa: F811
                                                   tmp_path):
    organization, _carpet, key, render_id = shop
    url = share_link(stack, key, render_id)
    logo_file = tmp_path / "logo.png"
    logo_file.write_bytes(wide_logo())
    person(credit_server, organization.id, "satis@halici.com.tr", role=account_pb2.ROLE_STAFF)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs = Dialogs(page)
    sign_in(page, stack.base, "satis@halici.com.tr", "tr")
    open_screen(page, "keys")
    expect(page.locator("#logo-none")).to_have_text("Henüz logo yok.")
    page.click("#logo-save")  # no file chosen: said at the field, nothing sent
    expect(page.locator("#logo-form [aria-invalid=true]")).to_have_count(1)
    page.set_input_files("#logo-file", str(logo_file))
    page.click("#logo-save")
    expect(page.locator("#notice")).to_contain_text("Logo kaydedildi")
    expect(page.locator("#logo-preview")).to_be_visible()
    assert page.evaluate("document.getElementById('logo-preview').naturalWidth") == 512
    assert models.ShopLogo.get().organization_id == organization.id

    shared = browser.new_page()
    shared.goto(url)
    expect(shared.locator("img.logo")).to_be_visible()
    assert shared.evaluate("document.querySelector('img.logo').naturalWidth") == 512
    shared.screenshot(path=os.path.join(SCREENSHOTS, "share-page-logo.png"))

    page.click("#logo-remove")
    expect(page.locator("#logo-none")).to_be_visible()
    assert dialogs.seen[-1].startswith("Logo kaldırılsın mı?")
    assert models.ShopLogo.select().count() == 0
    shared.reload()
    expect(shared.locator("span.logo")).to_have_text("H")
    shared.close()
    page.close()
