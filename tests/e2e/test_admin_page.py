"""The admin console in a real headless Chromium (Debian's, driven by Playwright), on SQLite and
PostgreSQL: every screen in Turkish and English (screenshots kept in docs/screens/), numbers and
dates in the language's format, the money form's confirmations and errors, keyboard-only use,
a STAFF session, an accessibility check (axe-core) and a phone-width run without sideways
scrolling."""
import datetime
import os
import re
import shutil

import pytest
from playwright.sync_api import expect

from credit_service.controls import spend_limit_message, suspended_message
from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2, notification_pb2
from tests.builders import submit, wait_final
from tests.helpers import ADMIN, ADMIN_TOKEN
from tests.integration.test_admin_gateway import world  # noqa: F401 - the shared fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
SCREENS = ("overview", "organizations", "users", "renders", "catalogue", "keys", "leads",
           "analytics", "credits", "grants", "controls", "webhooks", "audit")
SCREENSHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "screens")
PASSWORD = "console-sign-in-2026"

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def person(credit_server, organization_id, email, role=account_pb2.ROLE_ADMIN, name=None):
    return credit_server.accounts.CreateUser(account_pb2.CreateUserRequest(
        organization_id=organization_id, name=name or email.split("@")[0], email=email,
        role=role, password=PASSWORD), metadata=ADMIN, timeout=30)


def sign_in(page, base, email, language="en"):
    page.goto(base + "/admin/")
    page.click(f".lang[data-lang={language}]")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#dashboard:not([hidden])")
    expect(page.locator("#card-users")).not_to_have_text("–")


def open_screen(page, screen):
    page.click(f"#nav button[data-screen={screen}]")
    expect(page.locator(f"#screen-{screen}")).to_be_visible()
    table = {"organizations": "#organizations", "users": "#users", "renders": "#renders",
             "catalogue": "#carpets", "keys": "#keys", "leads": "#leads",
             "analytics": "#funnel-carpets",
             "credits": "#credit-logs", "grants": "#grants", "controls": "#controls",
             "webhooks": "#webhooks", "audit": "#audit"}.get(screen)
    if table:
        expect(page.locator(f"{table} tbody tr").first).to_be_visible()
    else:
        expect(page.locator("#chart-renders svg.chart")).to_be_visible()


class Dialogs:
    """Answers the page's dialogs: the next of `answers` — accept (True), dismiss (False) or
    type (a string) — else accept; `seen` keeps their messages."""

    def __init__(self, page):
        self.seen, self.answers = [], []
        page.on("dialog", self._handle)

    def _handle(self, dialog):
        self.seen.append(dialog.message)
        answer = self.answers.pop(0) if self.answers else True
        if answer is False:
            dialog.dismiss()
        elif isinstance(answer, str):
            dialog.accept(answer)
        else:
            dialog.accept()


def test_every_screen_in_turkish_and_english(browser, world, http_gateway,  # noqa: F811
                                             credit_server):
    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "yonetici@firma.com.tr", name="Yönetici")
    credit_server.credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=1215, reason="paket"), metadata=ADMIN, timeout=10)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    expected = {  # language -> (a heading, remaining credit, a date's shape, an audit row's
        # action and outcome in the language's words)
        "tr": ("Kredi geçmişi", "1.237", r"\d{2}\.\d{2}\.\d{4}", "Kredi ayarlama", "Yapıldı",
               "%25,5"),
        "en": ("Credit history", "1,237", r"\d{2}/\d{2}/\d{4}", "Adjust credit", "Done", "25.5%"),
    }
    for language, (heading, credit, date_shape, action, outcome, share) in expected.items():
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, http_gateway, "yonetici@firma.com.tr", language)
        assert page.evaluate("document.documentElement.lang") == language
        # A placement's corners as the language writes a percentage (%25,5 in Turkish).
        assert page.evaluate(
            "import('/admin/static/i18n.js').then((module) => module.percent(0.255))") == share
        expect(page.locator("#card-credit")).to_have_text(credit)  # 1234 + 3, the locale's way
        expect(page.locator("#nav button[data-screen=credits]")).to_have_text(heading)
        for screen in SCREENS:
            open_screen(page, screen)
            page.screenshot(path=os.path.join(SCREENSHOTS, f"{language}-{screen}.png"),
                            full_page=True)
        assert re.search(date_shape, page.text_content("#audit tbody"))
        adjusted = page.locator("#audit tbody tr", has_text="AdjustCredits")
        expect(adjusted).to_have_count(0)  # the method's name, not the reader's words
        expect(page.locator("#audit tbody tr", has_text=action).first).to_contain_text(outcome)
        # A refusal kept on a failed job, recognised by the shape the credit service writes
        # it in, and worded with its figures.
        refusals = [suspended_message(2, "unpaid invoice"), spend_limit_message(None, 5000),
                    spend_limit_message(7, 30)]
        assert page.evaluate(
            "(texts) => import('/admin/static/ui.js').then((ui) => texts.map(ui.jobError))",
            refusals) == {
            "tr": ["Kuruluş askıya alınmıştı: unpaid invoice",
                   "Bu ayın 5.000 kredilik harcama limiti aşılacaktı",
                   "7 numaralı kullanıcının 30 kredilik günlük harcama limiti aşılacaktı"],
            "en": ["The organisation was suspended: unpaid invoice",
                   "This month's spend limit of 5,000 credits would have been passed",
                   "User 7's daily spend limit of 30 credits would have been passed"],
        }[language]
        # A job's fixed error text in the reader's words, not the service's English.
        open_screen(page, "renders")
        expect(page.locator("#renders tbody")).to_contain_text(
            {"tr": "Kredi yetersiz", "en": "Not enough credit"}[language])
        expect(page.locator("#renders tbody")).not_to_contain_text("insufficient credits")
        # No untranslated catalogue key is left on any screen.
        assert not re.search(r"\b(nav|common|orgs|users|renders|audit|adjust|kind|action|outcome"
                             r"|mode|renderer|logReason|code|error)\.[A-Za-z_]+\b",
                             page.text_content("body"))
        page.close()


def test_the_money_form(browser, world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, other.id)
    open_screen(page, "organizations")
    dialogs = Dialogs(page)

    # Errors say what to fix, in words, and nothing is sent.
    page.select_option("#adjust-org", str(acme.id))
    for delta, reason, message in (
            ("abc", "x", "Enter a whole number other than 0, like 25 or -10."),
            ("0", "x", "Enter a whole number other than 0, like 25 or -10."),
            ("99999999999999", "x", "Enter a whole number other than 0, like 25 or -10."),
            ("5", "   ", "Write a reason: it goes into the audit log.")):
        page.fill("#adjust-delta", delta)
        page.fill("#adjust-reason", reason)
        page.click("#adjust-apply")
        expect(page.locator("#error")).to_have_text(message)
    assert dialogs.seen == []

    # Keyboard only: choose, type, submit with Enter; the confirmation names the organisation
    # and the balance it will have.
    page.focus("#adjust-org")
    page.keyboard.press("Tab")
    page.keyboard.type("7")
    page.keyboard.press("Tab")
    page.keyboard.type("goodwill from the page")
    page.keyboard.press("Enter")
    expect(page.locator("#adjust-result")).to_have_text("Done: Acme now has 26 credits.")
    assert dialogs.seen == ["Change the credit of Acme by +7? Its balance will be 26."]
    expect(page.locator("#adjust-delta")).to_have_value("")  # the form clears
    expect(page.locator("#adjust-reason")).to_have_value("")
    expect(page.locator("#adjust-org")).to_have_value(str(acme.id))  # and keeps its choice

    # A second and third change in a row land on the same organisation.
    for delta, balance in (("3", "29"), ("-2", "27")):
        page.fill("#adjust-delta", delta)
        page.fill("#adjust-reason", "again")
        page.click("#adjust-apply")
        expect(page.locator("#adjust-result")).to_have_text(
            f"Done: Acme now has {balance} credits.")
        expect(page.locator("#adjust-org")).to_have_value(str(acme.id))

    # A large change asks twice; saying no the second time changes nothing.
    dialogs.seen.clear()
    dialogs.answers[:] = [True, False]
    page.fill("#adjust-delta", "20000")
    page.fill("#adjust-reason", "too big?")
    page.click("#adjust-apply")
    expect(page.locator("#adjust-delta")).to_have_value("20000")
    assert dialogs.seen == [
        "Change the credit of Acme by +20,000? Its balance will be 20,027.",
        "This is a large change (+20,000, above 10,000). Really change Acme?"]
    assert credit_server.credits.GetBalance(credit_pb2.GetBalanceRequest(
        organization_id=acme.id), timeout=10).balance == 27
    # More than is available: the form says so before asking anything.
    dialogs.seen.clear()
    page.fill("#adjust-delta", "-1000")
    page.fill("#adjust-reason", "too much")
    page.click("#adjust-apply")
    expect(page.locator("#error")).to_have_text(
        "Acme has only 27 credits available; a change cannot take more.")
    assert dialogs.seen == []
    # Someone else spent meanwhile: the page's figures are old, the server refuses, in words.
    credit_server.credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=-20, reason="elsewhere"), metadata=ADMIN, timeout=10)
    page.fill("#adjust-delta", "-10")
    page.click("#adjust-apply")
    expect(page.locator("#error")).to_have_text("Not enough credit for this change.")
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.credit.v1.CreditService/AdjustCredits", actor="boss@example.com"),
        metadata=ADMIN, timeout=10).audit_logs
    assert [row.outcome for row in rows] == ["error:FAILED_PRECONDITION", "ok", "ok", "ok"]


def signed_in_boss(browser, http_gateway, credit_server, organization_id):
    """A page signed in as boss@example.com, an ADMIN of `organization_id`."""
    person(credit_server, organization_id, "boss@example.com")
    page = browser.new_page()
    sign_in(page, http_gateway, "boss@example.com")
    return page


def test_users_renders_and_audit_screens(browser, world, http_gateway,  # noqa: F811
                                         credit_server):
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, acme.id)
    open_screen(page, "users")
    page.fill("#user-name", "Şule")
    page.fill("#user-email", "sule@firma")
    page.click("#user-create")
    expect(page.locator("#error")).to_have_text(
        "Enter an email address like name@company.com.tr.")
    page.fill("#user-email", "ŞULE@Firma.com.tr")
    page.fill("#user-password", "short")
    page.click("#user-create")
    expect(page.locator("#error")).to_have_text("The password needs at least 12 characters.")
    page.fill("#user-password", "password1234")
    page.click("#user-create")
    expect(page.locator("#error")).to_have_text(
        "Choose a longer, less common password (12+ characters, not your email).")
    page.fill("#user-password", "halı-desen-2026")
    page.select_option("#user-org", str(other.id))
    page.click("#user-create")
    expect(page.locator("#notice")).to_have_text("User ŞULE@Firma.com.tr created.")
    expect(page.locator("#users tbody")).to_contain_text("ŞULE@Firma.com.tr")
    # The users table shows the number the renders screen's user filter takes.
    ada_number = page.locator("#users tbody tr", has_text="ada@example.com").locator("td").first
    expect(ada_number).to_have_text(str(ada.id))

    open_screen(page, "renders")
    page.fill("#filter-user", ada_number.text_content())
    page.select_option("#filter-status", "RENDER_STATUS_SUCCESS")
    page.click("#render-filters button[type=submit]")
    expect(page.locator("#renders tbody tr")).to_have_count(1)
    page.fill("#filter-user", "")
    page.wait_for_selector("#renders tbody img")  # the server-made thumbnail
    page.click("#renders tbody button")
    expect(page.locator("#render-detail")).to_be_visible()
    expect(page.locator("#render-detail-title")).to_have_text(f"Render #{done.id}")
    page.wait_for_selector("#render-result img")
    fields = page.locator("#render-detail-fields")
    expect(fields.locator("dt:has-text('Renderer') + dd")).to_have_text("Built-in (local)")
    expect(fields.locator("dt:has-text('Carpet') + dd")).to_have_text("Kilim")
    expect(fields.locator("dt:has-text('Placement') + dd")).to_have_text(
        "Default (the renderer chose)")
    expect(page.locator("#render-room")).to_have_text(
        "No room picture (none was sent, or it is no longer kept).")
    assert page.is_hidden("#render-cancel")  # only a queued render can be cancelled
    page.click("#render-close")
    page.select_option("#filter-status", "RENDER_STATUS_FAILED")
    page.click("#render-filters button[type=submit]")
    expect(page.locator("#renders tbody tr")).to_have_count(1)  # Other's, refused for credit
    page.click("#renders tbody button")
    expect(page.locator("#render-result")).to_have_text(
        "This render failed, so it has no picture.")
    page.click("#render-close")

    open_screen(page, "audit")
    page.click("#audit-verify")
    expect(page.locator("#audit-check")).to_contain_text("The audit chain is intact")
    open_screen(page, "credits")
    page.select_option("#credits-org", str(acme.id))
    expect(page.locator("#credit-logs tbody tr")).to_have_count(2)  # seed and the render
    # The credit log's own reasons in the reader's words, not the server's.
    expect(page.locator("#credit-logs tbody")).to_contain_text("Render charge")
    expect(page.locator("#credit-logs tbody")).to_contain_text("Initial credit")
    with page.expect_download() as download:
        page.click("#screen-credits .csv")
    content = open(download.value.path(), encoding="utf-8-sig").read()
    # In the console's language, with the comma an English spreadsheet splits on.
    assert content.splitlines()[0].startswith(
        '"No.","Created (UTC)","Organisation no.","Kind","Change"')
    assert len(content.splitlines()) == 3


def test_a_staff_session(browser, world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "clerk@example.com", role=account_pb2.ROLE_STAFF)
    page = browser.new_page()
    sign_in(page, http_gateway, "clerk@example.com")
    # A shop's staff see whose console it is.
    expect(page.locator("#whoami")).to_have_text("Signed in as clerk@example.com · Acme")
    assert page.is_hidden("#error")
    for admin_only in ("#nav button[data-screen=organizations]", "#nav button[data-screen=audit]",
                       "#overview-org", "#user-form", "#adjust-form"):
        assert page.is_hidden(admin_only), admin_only
    expect(page.locator("#card-users")).to_have_text("2")  # Ada and the clerk
    open_screen(page, "renders")
    expect(page.locator("#renders tbody tr")).to_have_count(1)  # Acme's only
    open_screen(page, "credits")
    expect(page.locator("#credit-logs tbody tr")).to_have_count(2)
    # Signing out ends the session on the server.
    page.click("#sign-out")
    page.wait_for_selector("#sign-in-form:not([hidden])")
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.credit.v1.AuthService/Logout"), metadata=ADMIN, timeout=10).audit_logs
    assert [(row.actor, row.outcome) for row in rows] == [("clerk@example.com", "ok")]
    assert page.evaluate("sessionStorage.length") == 0


def test_a_session_ended_by_an_admin_brings_back_the_sign_in_form(
        browser, world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    clerk = person(credit_server, acme.id, "clerk@example.com", role=account_pb2.ROLE_STAFF)
    page = browser.new_page()
    sign_in(page, http_gateway, "clerk@example.com", "tr")
    expect(page.locator("#whoami")).to_have_text("clerk@example.com olarak giriş yapıldı · Acme")
    page.click(".lang[data-lang=en]")  # the header follows the language too
    expect(page.locator("#whoami")).to_have_text("Signed in as clerk@example.com · Acme")
    credit_server.accounts.DeactivateUser(account_pb2.SetUserActiveRequest(id=clerk.id),
                                          metadata=ADMIN, timeout=10)
    # Within the gateway's session check the clerk's next call is refused, and the page says
    # why on the sign-in form instead of staying on an empty screen.
    for _ in range(100):  # the clerk keeps working (a click that does not wait for the nav)
        if page.is_visible("#sign-in-form"):
            break
        page.evaluate("document.querySelector('#nav button[data-screen=renders]').click()")
        page.wait_for_timeout(100)
    expect(page.locator("#error")).to_have_text("Your session has ended: sign in again.")
    assert page.is_hidden("#whoami") and page.is_hidden("#dashboard")


def test_forms_say_what_is_wrong_with_them(browser, world, http_gateway,  # noqa: F811
                                           credit_server):
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, acme.id)
    open_screen(page, "organizations")
    page.click("#org-form button[type=submit]")
    expect(page.locator("#error")).to_have_text("Enter the organisation's name.")
    page.fill("#org-name", "Yeni Halı")
    page.fill("#org-credits", "-5")
    page.click("#org-form button[type=submit]")
    expect(page.locator("#error")).to_have_text("Enter a whole number, 0 or more.")
    assert page.get_attribute("#org-credits", "aria-invalid") == "true"
    page.fill("#org-credits", "40")
    page.click("#org-form button[type=submit]")
    # The new row is whole at once: its spending and status too, not only after a reopen.
    created = page.locator("#organizations tbody tr", has_text="Yeni Halı")
    expect(created).to_contain_text("Active")
    expect(created.locator("td").nth(6)).to_have_text("0")
    open_screen(page, "users")
    dialogs = Dialogs(page)
    row = page.locator("#users tbody tr", has_text="ada@example.com")
    # A new password is typed into a password field, never in clear (no window.prompt).
    row.locator("button", has_text="Set password").click()
    expect(page.locator("#password-dialog-title")).to_contain_text("ada@example.com")
    assert page.get_attribute("#password-new", "type") == "password"
    page.fill("#password-new", "short")
    page.click("#password-save")
    expect(page.locator("#error")).to_have_text("The password needs at least 12 characters.")
    row.locator("button", has_text="Set password").click()
    page.fill("#password-new", "ada's new passphrase")
    page.click("#password-save")
    expect(page.locator("#notice")).to_contain_text("ada@example.com")
    assert page.is_hidden("#password-dialog") and dialogs.seen == []
    assert page.input_value("#password-new") == ""
    signed_in = page.request.post(http_gateway + "/auth/login", data={
        "email": "ada@example.com", "password": "ada's new passphrase"})
    assert signed_in.status == 200  # the password Ada now has
    row.locator("button", has_text="Deactivate").click()
    expect(page.locator("#notice")).to_have_text(
        "ada@example.com is deactivated; their sessions have ended.")
    assert dialogs.seen and "ada@example.com" in dialogs.seen[0]


def test_automation_token_and_a_wrong_password(browser, world, http_gateway):  # noqa: F811
    page = browser.new_page()
    page.goto(http_gateway + "/admin/")
    page.click(".lang[data-lang=en]")
    page.fill("#email", "nobody@example.com")
    page.fill("#password", "not-the-password")
    page.click("#sign-in")
    expect(page.locator("#error")).to_have_text("Email or password is wrong.")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in")
    page.wait_for_selector("#dashboard:not([hidden])")
    assert page.is_visible("#nav button[data-screen=audit]")
    assert ADMIN_TOKEN not in page.url


def test_accessibility_and_phone_width(browser, world, http_gateway,  # noqa: F811
                                       credit_server):
    from axe_playwright_python.sync_playwright import Axe

    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "boss@example.com")
    axe = Axe()
    for width in (390, 360):
        # axe's script is injected into the page, which the strict CSP would refuse.
        context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)
        page = context.new_page()
        sign_in(page, http_gateway, "boss@example.com", "tr")
        for screen in SCREENS:
            open_screen(page, screen)
            assert page.evaluate(
                "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
            ), f"{screen} scrolls sideways at {width} px"
            if width == 390:
                page.screenshot(path=os.path.join(SCREENSHOTS, f"phone-tr-{screen}.png"),
                                full_page=True)
                results = axe.run(page)
                serious = [violation["id"] for violation in results.response["violations"]
                           if violation["impact"] in ("serious", "critical")]
                assert serious == [], f"{screen}: {serious}"
        context.close()


def test_low_balance_and_suspension_are_shown(browser, world, http_gateway,  # noqa: F811
                                              credit_server):
    """`docs/webhooks.md` on the page: the overview lists organisations below their low-balance
    threshold; the organisations table shows spend this month and who is suspended."""
    admin, acme, other, ada, done = world
    credit_server.notifications.SetLowBalanceAlert(notification_pb2.SetLowBalanceAlertRequest(
        id=acme.id, low_balance_threshold=1000), metadata=ADMIN, timeout=10)
    credit_server.notifications.SuspendOrganization(notification_pb2.SuspendOrganizationRequest(
        id=other.id, reason="unpaid invoice"), metadata=ADMIN, timeout=10)
    person(credit_server, acme.id, "boss@example.com")
    page = browser.new_page()
    sign_in(page, http_gateway, "boss@example.com")
    expect(page.locator("#low-balance")).to_be_visible()
    expect(page.locator("#low-balance-list li")).to_have_count(1)
    expect(page.locator("#low-balance-list li")).to_contain_text(
        f"{acme.name}: ")
    expect(page.locator("#low-balance-list li")).to_contain_text("(alert below 1,000)")
    open_screen(page, "organizations")
    suspended = page.locator("#organizations tbody tr", has_text=other.name)
    expect(suspended.locator("td").last).to_have_text("Suspended: unpaid invoice")
    low = page.locator("#organizations tbody tr", has_text=acme.name)
    expect(low.locator("td").last).to_have_text("Low balance")
    expect(low.locator("td").nth(6)).to_have_text("1")  # the one preview render this month


def test_charts_have_axes_in_the_locales_numbers(browser, world, http_gateway,  # noqa: F811
                                                 credit_server, render_server, clock):
    """Spent and added each on an axis of its own (a 20,000 top-up no longer hides 1 spent),
    round ticks written the locale's way, left of the bars; labels stay readable on a phone."""
    admin, acme, other, ada, done = world
    # The chart shows the 30 days up to the gateway's today: the services' day moves there.
    clock.now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    wait_final(render_server, submit(render_server, acme.id, done.carpet_id).id)
    credit_server.credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=acme.id, delta=20000, reason="top-up"), metadata=ADMIN, timeout=10)
    person(credit_server, acme.id, "boss@example.com")
    page = browser.new_page(viewport={"width": 390, "height": 800})
    sign_in(page, http_gateway, "boss@example.com", "tr")
    ticks = page.locator("#chart-added text.chart-label")
    expect(ticks.first).to_be_visible()
    assert "20.000" in ticks.all_text_contents()  # Turkish thousands
    assert page.locator("#chart-spent text.chart-label").all_text_contents()[:2] == ["0", "1"]
    bars = page.locator("#chart-spent rect:not([width='12'])")
    expect(bars).to_have_count(1)  # the one render charged, a bar of its own height
    assert float(bars.first.get_attribute("height")) > 100
    axis_right = max(box["x"] + box["width"] for box in (
        label.bounding_box() for label in page.locator("#chart-added text[text-anchor=end]").all()))
    bar_left = min(bar.bounding_box()["x"] for bar in page.locator("#chart-added rect").all()
                   if bar.get_attribute("width") != "12")
    assert axis_right <= bar_left  # the largest tick no longer sits on the last bar
    day_label = page.locator("#chart-renders text[text-anchor=middle]").first
    assert day_label.bounding_box()["height"] >= 10  # 4-5 px tall before, at this width
