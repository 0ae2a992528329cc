"""The widget in a real Chromium, on a shop's page served from another origin with a strict
Content-Security-Policy, against the real gateway and services on both engines: the whole flow
to a finished render and its picture in both languages and at phone width, axe clean; an origin
not on the key's list gets nothing (the widget says why in the console); a revoked key stops at
once; a key at its daily cap says "try again later" in the page's language; the shop's credit
moves once per finished render (`docs/widget.md`)."""
import http.server
import json
import re
import threading
import time

import pytest
from playwright.sync_api import expect

from protos.carpet.credit.v1 import account_pb2
from protos.carpet.render.v1 import render_pb2
from render_service import models
from tests.builders import TOKEN, balance, call, create_org
from tests.e2e.test_admin_page import (
    Dialogs,
    browser,  # noqa: F401 - the fixture
    open_screen,
    person,
    sign_in,
)
from tests.fake_image_api import tiny_png
from tests.integration.test_widget_api import stack  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("engine")
ROOM = {"name": "room.png", "mimeType": "image/png", "buffer": tiny_png(size=(400, 300))}


class ShopSite:
    """A shop's product page on its own origin (another port), with a strict CSP: scripts,
    connections and nothing else from the gateway, pictures from blob: only."""

    def __init__(self, gateway: str):
        self.page = b""
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the standard library's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy",
                                 f"default-src 'none'; script-src {gateway}; "
                                 f"connect-src {gateway}; img-src blob:; style-src 'self'")
                self.end_headers()
                self.wfile.write(site.page)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.gateway = gateway
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def show(self, key: str, sku: str, language: str) -> str:
        self.page = (f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
                     f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                     f'<title>Kilim</title></head><body><main><h1>Kilim</h1>'
                     f'<button type="button" data-carpet-sku="{sku}"></button></main>'
                     f'<script src="{self.gateway}/widget/v1/widget.js" data-key="{key}" defer>'
                     f'</script></body></html>').encode()
        return self.origin + "/product"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def shop_site(stack):  # noqa: F811
    site = ShopSite(stack.base)
    yield site
    site.close()


def shop_with_carpet(stack, credit_server, shop_site, credits=20, **key_settings):  # noqa: F811
    shop = create_org(credit_server, "Shop", credits)
    carpet = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=shop.id, sku="KLM-1", name="Kilim", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=160, length_cm=230),
               render_pb2.CarpetSize(width_cm=80, length_cm=150)]), timeout=10)
    body = {"organizationId": shop.id, "allowedOrigins": [shop_site.origin],
            "ratePerVisitor": "1000/minute", **key_settings}
    status, key, _ = call(stack.base, "/admin/publishable-keys", method="POST", headers=TOKEN,
                          body=body)
    assert status == 200, key
    return shop, carpet, key


def dialog_with_photo(browser, shop_site, key, language):  # noqa: F811
    """A new page of the shop with the widget's dialog open and the room photo chosen; with
    the lines the page writes to its console."""
    page = browser.new_page()
    problems = console_lines(page)
    page.goto(shop_site.show(key["key"], "KLM-1", language))
    page.click("button[data-carpet-sku]")
    page.locator("label.file").nth(1).locator("input").set_input_files([ROOM])
    return page, problems


def console_lines(page):
    lines = []
    page.on("console", lambda message: lines.append(message.text))
    page.on("pageerror", lambda error: lines.append(f"page error: {error}"))
    return lines


@pytest.mark.parametrize("language,width", [("en", 1280), ("tr", 360)])
def test_a_shopper_sees_the_carpet_in_their_room(browser, stack, credit_server,  # noqa: F811
                                                 shop_site, start_workers, language, width):
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    start_workers()
    words = {"en": ("See it in your room", "Choose a photo", "Show preview", "Here it is.",
                    "Full quality", "Download"),
             "tr": ("Odanda gör", "Fotoğraf seç", "Önizlemeyi göster", "İşte odanızda.",
                    "Yüksek kalite", "İndir")}[language]
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    problems = console_lines(page)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(shop_site.show(key["key"], "KLM-1", language))
    expect(page.locator("button[data-carpet-sku]")).to_have_text(words[0])
    page.click("button[data-carpet-sku]")
    dialog = page.locator("dialog")
    expect(dialog).to_be_visible()
    # Styled by the widget's own stylesheet, though the page allows no inline style.
    assert dialog.evaluate("d => getComputedStyle(d).borderRadius") == "8px"
    page.locator("label.file", has_text=words[1]).locator("input").set_input_files([ROOM])
    handles = page.locator(".corner")
    expect(handles).to_have_count(4)
    # The near-left corner dragged a little to the right, the far-left nudged by the keyboard.
    box = page.locator(".stage").bounding_box()
    handle = handles.nth(3).bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.92, steps=5)
    page.mouse.up()
    handles.nth(0).focus()
    page.keyboard.press("ArrowLeft")
    page.select_option("#size", label="80 × 150 cm")
    page.click(f"button:has-text('{words[2]}')")
    expect(page.locator(".status")).to_have_text(words[3], timeout=30_000)
    expect(page.locator(".result img")).to_be_visible()
    page.click(f"button:has-text('{words[4]}')")
    expect(page.locator(".status")).to_have_text(words[3], timeout=30_000)
    download = page.locator("a.download")
    expect(download).to_have_text(words[5])
    assert download.get_attribute("href").startswith("blob:")
    if width == 360:
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        assert dialog.evaluate("d => d.scrollWidth <= d.clientWidth")

    jobs = list(models.RenderJob.select().order_by(models.RenderJob.id))
    small = carpet.sizes[1].id
    assert [(job.mode, job.status, job.priority, job.carpet_size_id) for job in jobs] == [
        ("preview", "success", 10, small), ("standard", "success", 10, small)]
    far_left, _, _, near_left = json.loads(jobs[0].placement)
    assert far_left[0] == pytest.approx(0.29, abs=0.001)
    assert near_left[0] == pytest.approx(0.25, abs=0.02)
    # Credit moved once per finished render: 1 for the preview, 2 for the full picture.
    assert balance(credit_server, shop.id).balance == 20 - 1 - 2
    assert [line for line in problems if "carpet widget" in line] == []
    # Nothing but the shop's page and the gateway: no third party, no cookies.
    assert [url for url in requested if not url.startswith(
        (shop_site.origin + "/", stack.base + "/", "blob:"))] == []
    assert any("/public/v1/renders/" in url and url.endswith("/events?key=" + key["key"])
               for url in requested)
    assert context.cookies() == []
    context.close()


def test_the_widget_is_accessible(browser, stack, credit_server, shop_site):  # noqa: F811
    from axe_playwright_python.sync_playwright import Axe

    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    # axe's script is injected into the page, which the strict CSP would refuse.
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    page = context.new_page()
    page.goto(shop_site.show(key["key"], "KLM-1", "tr"))
    page.click("button[data-carpet-sku]")
    page.locator("label.file").nth(1).locator("input").set_input_files([ROOM])
    expect(page.locator(".corner")).to_have_count(4)

    def serious():
        results = Axe().run(page)
        return [violation["id"] for violation in results.response["violations"]
                if violation["impact"] in ("serious", "critical")]

    assert serious() == []
    # True size by a length, with two carpets: every control named, in Turkish.
    page.check("#measure")
    page.select_option("#measure-kind", value="line")
    page.click("button:has-text('Halı ekle')")
    expect(page.locator(".carpet-handle")).to_have_count(2)
    expect(page.locator(".vanishing")).to_have_attribute("aria-label", re.compile("^Zemindeki"))
    assert serious() == []
    # The dialog closes with Escape and leaves nothing behind.
    page.keyboard.press("Escape")
    expect(page.locator("[data-carpet-widget]")).to_have_count(0)
    context.close()


def test_an_origin_not_on_the_list_gets_nothing(browser, stack, credit_server,  # noqa: F811
                                                 shop_site):
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    call(stack.base, f"/admin/publishable-keys/{key['id']}", method="PATCH", headers=TOKEN,
         body={"allowedOrigins": ["https://elsewhere.example"]})
    page = browser.new_page()
    problems = console_lines(page)
    page.goto(shop_site.show(key["key"], "KLM-1", "en"))
    page.click("button[data-carpet-sku]")
    # The widget says why in the console: seen whenever it says it (it may be before the
    # click, when the page loads the carpet; waiting for a console event after the click
    # missed it once).
    deadline = time.monotonic() + 30
    while not any("carpet widget" in line for line in problems):
        assert time.monotonic() < deadline, problems
        page.wait_for_timeout(50)
    expect(page.locator("dialog")).to_have_count(0)
    assert any("carpet widget: ORIGIN_NOT_ALLOWED" in line and shop_site.origin in line
               for line in problems), problems
    page.close()


def test_a_revoked_key_stops_at_once_and_a_full_day_says_later(browser, stack,  # noqa: F811
                                                               credit_server, shop_site,
                                                               start_workers):
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site, rendersPerDay=1)
    start_workers()
    page, problems = dialog_with_photo(browser, shop_site, key, "tr")
    page.click("button:has-text('Önizlemeyi göster')")
    expect(page.locator(".status")).to_have_text("İşte odanızda.", timeout=30_000)
    # The day's one render is made: the next is refused, in the page's language.
    page.click("button:has-text('Yüksek kalite')")
    expect(page.locator(".status")).to_have_text(
        "Şu anda çok fazla önizleme isteniyor. Lütfen daha sonra yeniden deneyin.")
    # Revoked: the very next call is refused; the shopper reads a plain sentence, the
    # developer the reason in the console.
    assert call(stack.base, f"/admin/publishable-keys/{key['id']}/revoke", method="POST",
                headers=TOKEN, body={})[0] == 200
    page.click("button:has-text('Yüksek kalite')")
    expect(page.locator(".status")).to_have_text("Önizleme şu anda kullanılamıyor.")
    assert any("carpet widget: PUBLISHABLE_KEY_INVALID" in line for line in problems), problems
    assert balance(credit_server, shop.id).balance == 20 - 1
    page.close()


def test_a_shops_staff_makes_rotates_and_revokes_a_key_in_the_console(
        browser, stack, credit_server, shop_site):  # noqa: F811
    shop = create_org(credit_server, "Shop", 10)
    person(credit_server, shop.id, "clerk@example.com", role=account_pb2.ROLE_STAFF)
    page = browser.new_page()
    dialogs = Dialogs(page)
    sign_in(page, stack.base, "clerk@example.com", "tr")
    open_screen(page, "keys")
    expect(page.locator("#keys tbody tr")).to_have_text("Gösterilecek bir şey yok.")
    # Wrong fields are named and nothing is sent.
    page.fill("#key-origins", "shop.example")
    page.click("#key-create")
    expect(page.locator("#error")).to_have_text(
        "Her adresi https://magaza.ornek biçiminde (yalnızca şema, alan adı ve port) girin ya da "
        "localhost'a izin verin.")
    assert models.PublishableKey.select().count() == 0
    page.fill("#key-name", "Mağaza")
    page.fill("#key-origins", f"{shop_site.origin}\nhttps://shop.example")
    page.fill("#key-day", "50")
    page.click("#key-create")
    secret = page.locator("#key-secret")
    expect(secret).to_have_text(re.compile(r"pk_live_[A-Za-z0-9]{32}"))
    key = secret.text_content()
    expect(page.locator("#key-snippet")).to_contain_text(f'data-key="{key}"')
    row = page.locator("#keys tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_have_text(f"…{key[-4:]}")
    expect(row.locator("td").nth(3)).to_have_text(f"{shop_site.origin}, https://shop.example")
    expect(row.locator("td").nth(4)).to_have_text(
        "günde 50, aynı anda 3, ziyaretçi başına 60/minute")
    made = models.PublishableKey.get()
    assert (made.organization_id, made.name, made.renders_per_day) == (shop.id, "Mağaza", 50)
    # Leaving the screen forgets the key.
    open_screen(page, "renders")
    open_screen(page, "keys")
    expect(page.locator("#key-secret-box")).to_be_hidden()
    # Rotate: a new key is shown; the old one still works for a day.
    page.click(f"button[aria-label='…{key[-4:]} yerine yeni anahtar']")
    expect(secret).to_have_text(re.compile(r"pk_live_[A-Za-z0-9]{32}"))
    rotated = secret.text_content()
    assert rotated != key
    assert public_status(stack, key, shop_site.origin) == 200
    assert public_status(stack, rotated, shop_site.origin) == 200
    # Revoke, after the confirmation: both stop at once.
    page.click(f"button[aria-label='…{rotated[-4:]} anahtarını iptal et']")
    expect(row.locator("td").nth(6)).to_have_text("İptal edildi")
    assert dialogs.seen[-1].startswith(f"…{rotated[-4:]} anahtarı iptal edilsin mi?")
    assert public_status(stack, rotated, shop_site.origin) == 401
    assert public_status(stack, key, shop_site.origin) == 401
    page.close()


def public_status(stack, key, origin):  # noqa: F811
    return call(stack.base, "/public/v1/carpets", headers={"X-Publishable-Key": key,
                                                           "Origin": origin})[0]


def test_a_shopper_places_the_carpet_in_true_size(browser, stack, credit_server,  # noqa: F811
                                                  shop_site, start_workers):
    """The floor marked on a rectangle of known size, the carpet moved and turned in cm: the
    render is placed by real size, its corners computed by the render service."""
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    start_workers()
    page, problems = dialog_with_photo(browser, shop_site, key, "en")
    expect(page.locator(".corner")).to_have_count(4)
    expect(page.locator(".carpet-handle")).to_be_hidden()
    page.check("#measure")
    page.fill("#measure-width", "200")
    page.fill("#measure-length", "300")
    page.select_option("#size", label="80 × 150 cm")
    handle = page.locator(".carpet-handle")
    expect(handle).to_be_visible()
    handle.focus()
    for key_name in ("ArrowRight", "ArrowRight", "ArrowDown", "r"):
        page.keyboard.press(key_name)
    page.click("button:has-text('Turn 15°')")
    page.click("button:has-text('Show preview')")
    expect(page.locator(".status")).to_have_text("Here it is.", timeout=30_000)
    [job] = list(models.RenderJob.select())
    scene = json.loads(job.scene)
    assert (scene["floor"]["width_cm"], scene["floor"]["length_cm"]) == (200, 300)
    [placed] = scene["carpets"]
    assert placed["spot"] == {"carpet_size_id": carpet.sizes[1].id, "center_x_cm": 110,
                              "center_y_cm": 155, "rotation_deg": 30}
    assert (placed["width_cm"], placed["length_cm"], placed["fit"]["inside_floor"]) == (
        80, 150, True)
    assert job.carpet_size_id == carpet.sizes[1].id
    assert balance(credit_server, shop.id).balance == 20 - 1
    assert [line for line in problems if "carpet widget" in line] == []
    page.close()


def drawn_carpets(page):
    """The carpets' outlines the widget draws over the photo, as photo fractions."""
    return [[tuple(float(value) / 100 for value in pair.split(","))
             for pair in polygon.get_attribute("points").split()]
            for polygon in page.locator(".stage svg g polygon").all()]


def assert_drawn_where_placed(page, scene):
    """The widget's own homography (JavaScript) draws each carpet where the render service
    (Python) computed it."""
    drawn = drawn_carpets(page)
    assert len(drawn) == len(scene["carpets"])
    for outline, placed in zip(drawn, scene["carpets"], strict=True):
        assert max(abs(a - b) for point, corner in zip(outline, placed["corners"], strict=True)
                   for a, b in zip(point, corner, strict=True)) < 1e-6


def test_a_shopper_places_two_carpets_of_a_design(browser, stack, credit_server,  # noqa: F811
                                                   shop_site, start_workers):
    """A room carpet and a smaller one of the same design on one measured floor: added, sized,
    a third added and removed again; one render, the extra carpet's surcharge charged once."""
    shop, _, key = shop_with_carpet(stack, credit_server, shop_site)
    duo = stack.render.renders.CreateCarpet(render_pb2.CreateCarpetRequest(
        organization_id=shop.id, sku="DUO", name="Duo", image=tiny_png(),
        sizes=[render_pb2.CarpetSize(width_cm=100, length_cm=150),
               render_pb2.CarpetSize(width_cm=60, length_cm=90)]), timeout=10)
    start_workers()
    page = browser.new_page()
    problems = console_lines(page)
    page.goto(shop_site.show(key["key"], "DUO", "en"))
    page.click("button[data-carpet-sku]")
    page.locator("label.file").nth(1).locator("input").set_input_files([ROOM])
    page.check("#measure")
    page.fill("#measure-width", "300")
    page.fill("#measure-length", "300")
    expect(page.locator(".carpet-handle")).to_have_count(1)
    expect(page.locator("button:has-text('Remove this carpet')")).to_be_hidden()
    page.click("button:has-text('Add a carpet')")
    page.select_option("#size", label="60 × 90 cm")  # the size of the carpet just added
    page.click("button:has-text('Add a carpet')")
    expect(page.locator(".carpet-handle")).to_have_count(3)
    expect(page.locator("button:has-text('Add a carpet')")).to_be_hidden()  # three at most
    page.click("button:has-text('Remove this carpet')")
    expect(page.locator(".carpet-handle")).to_have_count(2)
    page.click("button:has-text('Show preview')")
    expect(page.locator(".status")).to_have_text("Here it is.", timeout=30_000)
    [job] = list(models.RenderJob.select())
    scene = json.loads(job.scene)
    assert [placed["spot"] for placed in scene["carpets"]] == [
        {"carpet_size_id": duo.sizes[0].id, "center_x_cm": 150, "center_y_cm": 150,
         "rotation_deg": 0},
        {"carpet_size_id": duo.sizes[1].id, "center_x_cm": 260, "center_y_cm": 150,
         "rotation_deg": 0}]
    assert (job.carpet_id, job.carpet_size_id) == (duo.id, duo.sizes[0].id)
    assert_drawn_where_placed(page, scene)
    # One render: the preview (1) and the second carpet (1).
    assert balance(credit_server, shop.id).balance == 20 - 2
    assert [line for line in problems if "carpet widget" in line] == []
    page.close()


def test_a_shopper_measures_the_floor_by_a_length(browser, stack, credit_server,  # noqa: F811
                                                 shop_site, start_workers):
    """Two points a known length apart and where the floor's lines meet: the carpet, moved by
    the keyboard, is placed where the widget drew it, and the render is made."""
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    start_workers()
    page, problems = dialog_with_photo(browser, shop_site, key, "en")
    page.check("#measure")
    page.select_option("#measure-kind", label="a length (two points)")
    page.fill("#measure-line-length", "100")
    expect(page.locator(".corner").first).to_be_hidden()
    expect(page.locator(".line-end")).to_have_count(2)
    expect(page.locator(".vanishing")).to_be_visible()
    page.select_option("#size", label="80 × 150 cm")
    handle = page.locator(".carpet-handle")
    handle.focus()
    for _ in range(20):  # 100 cm away from the camera, past the measured length
        page.keyboard.press("ArrowUp")
    page.click("button:has-text('Show preview')")
    expect(page.locator(".status")).to_have_text("Here it is.", timeout=30_000)
    [job] = list(models.RenderJob.select())
    scene = json.loads(job.scene)
    assert scene["floor"] == {"start": [0.3, 0.8], "end": [0.7, 0.8], "length_cm": 100,
                              "vanishing_point": [0.5, 0.3], "focal_length_mm": 26,
                              "photo_aspect": pytest.approx(4 / 3)}
    [placed] = scene["carpets"]
    assert placed["spot"]["carpet_size_id"] == carpet.sizes[1].id
    assert (placed["spot"]["center_x_cm"], placed["spot"]["center_y_cm"]) == (
        pytest.approx(50), pytest.approx(-100))
    assert placed["fit"] is None
    assert_drawn_where_placed(page, scene)
    assert [line for line in problems if "carpet widget" in line] == []
    page.close()


@pytest.mark.parametrize("language", ["en", "tr"])
def test_a_shopper_shares_the_picture_and_asks_for_a_price(browser, stack,  # noqa: F811
                                                           credit_server, shop_site,
                                                           start_workers, language):
    """After the render: a share link that opens the picture's page, and the quote form,
    which needs the consent box and says what is wrong in the page's language; the funnel
    counts each step once (`docs/shares-and-leads.md`)."""
    words = {"en": ("Share", "Ask the shop for a price or a home visit", "Your name", "Phone",
                    "Please write the phone number like", "the shop has your request"),
             "tr": ("Paylaş", "Mağazadan fiyat ya da ev ziyareti isteyin", "Adınız",
                    "Telefon", "Lütfen telefon numarasını", "talebiniz mağazaya ulaştı")}[language]
    shop, carpet, key = shop_with_carpet(stack, credit_server, shop_site)
    start_workers()
    page, problems = dialog_with_photo(browser, shop_site, key, language)
    page.locator("button.primary").first.click()
    expect(page.locator(".result img")).to_be_visible(timeout=30_000)

    page.click(f".result button:has-text('{words[0]}')")
    link = page.locator(".result a.link")
    expect(link).to_be_visible()
    url = link.get_attribute("href")
    assert url.startswith(stack.base + "/s/")
    shared = browser.new_page()
    shared.goto(url)
    expect(shared.locator("h1")).to_have_text("Kilim")
    shared.close()

    page.click(f".result button:has-text('{words[1]}')")
    form = page.locator(".result form")
    form.get_by_label(words[2], exact=True).fill("Ayşe")
    form.get_by_label(words[3], exact=True).fill("12")
    form.locator("button[type=submit]").click()  # the consent box is not ticked yet
    assert form.locator(".consent input").evaluate("box => box.validity.valid") is False
    form.locator(".consent input").check()
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_contain_text(words[4])
    form.get_by_label(words[3], exact=True).fill("0532 111 22 33")
    form.locator("button[type=submit]").click()
    expect(page.locator(".result")).to_contain_text(words[5])
    lead = models.Lead.get()
    assert (lead.name, lead.phone, lead.consent_version, lead.organization_id) == (
        "Ayşe", "+905321112233", "widget-1", shop.id)
    assert lead.consent_text.startswith({"en": "I agree", "tr": "Mağazanın"}[language])

    def counted():
        return [(row.opened, row.photo_added, row.rendered, row.shared, row.lead)
                for row in models.FunnelDaily.select()]

    expect_eventually(lambda: counted() == [(1, 1, 1, 1, 1)], counted)
    assert [line for line in problems if "carpet widget" in line] == []
    page.close()


def expect_eventually(condition, show, seconds=10):
    """The page's steps are sent without waiting for their answers."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, show()
        time.sleep(0.05)
