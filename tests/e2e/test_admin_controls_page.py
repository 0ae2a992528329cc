"""The console's money and access screens in a real Chromium, against the real services on
SQLite and PostgreSQL: grants (what makes up a balance; giving credit with a kind, an expiry and
a priority), alerts, limits and suspension, and webhooks with their delivery log — each change
asked first in words, refused with a clear message when the form is wrong, and written to the
audit log. STAFF sees its own grants and nothing of the rest. CSV files in the console's
language with the separator chosen."""
import csv
import datetime
import re

import pytest
from playwright.sync_api import expect
from standardwebhooks import Webhook

from protos.carpet.credit.v1 import account_pb2, audit_pb2, credit_pb2, notification_pb2
from tests.builders import staff
from tests.e2e.test_admin_page import (
    Dialogs,
    browser,  # noqa: F401 - the fixture
    open_screen,
    person,
    sign_in,
    signed_in_boss,
)
from tests.helpers import ADMIN
from tests.integration.test_admin_gateway import world  # noqa: F401
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("engine")


def audited(credit_server, method, actor="boss@example.com"):
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action=method, actor=actor), metadata=ADMIN, timeout=10).audit_logs
    return [row.outcome for row in rows]


def test_grants_are_listed_and_given(browser, world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, other.id)
    open_screen(page, "grants")
    dialogs = Dialogs(page)
    page.select_option("#grants-org", str(acme.id))
    # Acme's 20 initial credits, one spent on the finished render.
    expect(page.locator("#grants-balance")).to_have_text(
        "Balance 19 · held for renders 0 · available 19")
    initial = page.locator("#grants tbody tr")
    expect(initial).to_have_count(1)
    expect(initial.locator("td")).to_have_text(
        ["paid", "20", "19", "0", "0", re.compile(r"\d{2}/\d{2}/\d{4}, \d{2}:\d{2}"), "Never",
         "Initial credit"])

    # Wrong fields are named, and nothing is asked or sent.
    for amount, expires, priority, reason, message in (
            ("0", "", "0", "x", "Enter a whole number of credits, 1 or more."),
            ("5", "31/02/2030", "0", "x", "Write the day as dd/mm/yyyy, for example 31/12/2026."),
            ("5", "01/01/2020", "0", "x",
             "Choose a day from today on: credit cannot be given already expired."),
            ("5", "", "first", "x", "Enter a whole number as the priority, for example 0 or 10."),
            ("5", "", "0", " ", "Write a reason: it goes into the audit log.")):
        page.fill("#grant-amount", amount)
        page.fill("#grant-expires", expires)
        page.fill("#grant-priority", priority)
        page.fill("#grant-reason", reason)
        page.click("#grant-apply")
        expect(page.locator("#error")).to_have_text(message)
    assert dialogs.seen == []

    page.fill("#grant-amount", "500")
    page.select_option("#grant-kind", "GRANT_KIND_PROMOTIONAL")
    page.fill("#grant-expires", "31/12/2099")
    page.fill("#grant-priority", "-1")
    page.fill("#grant-reason", "autumn campaign")
    page.click("#grant-apply")
    expect(page.locator("#notice")).to_have_text(
        "Done: Acme got 500 promotional credits and now has 519.")
    assert dialogs.seen == ["Give Acme 500 promotional credits, spendable until: 31/12/2099? "
                            "Its balance will be 519."]
    expect(page.locator("#grants tbody tr")).to_have_count(2)
    given = page.locator("#grants tbody tr").first  # priority -1 is spent first
    expect(given).to_contain_text("promotional")
    expect(given.locator("td").nth(4)).to_have_text("-1")
    expect(given.locator("td").nth(7)).to_have_text("autumn campaign")
    # Spendable through the whole day chosen: it expires as 1 January 2100 begins (UTC).
    grant = [one for one in credit_server.credits.GetBalance(credit_pb2.GetBalanceRequest(
        organization_id=acme.id), timeout=10).grants if one.amount == 500][0]
    assert (grant.kind, grant.remaining, grant.priority) == (credit_pb2.GRANT_KIND_PROMOTIONAL,
                                                             500, -1)
    assert grant.expires_at.ToDatetime() == datetime.datetime(2100, 1, 1)
    assert audited(credit_server, "/carpet.credit.v1.CreditService/GrantCredits") == ["ok"]

    # The credit history says what the row added: a promotional grant and its last moment.
    open_screen(page, "credits")
    page.select_option("#credits-org", str(acme.id))
    expect(page.locator("#credit-logs tbody tr").first.locator("td").nth(1)).to_have_text(
        "Grant: promotional, until 01/01/2100, 00:00")
    open_screen(page, "grants")

    # Declined: nothing given.
    dialogs.answers[:] = [False]
    page.fill("#grant-amount", "7")
    page.fill("#grant-reason", "not really")
    page.click("#grant-apply")
    expect(page.locator("#grant-amount")).to_have_value("7")
    assert credit_server.credits.GetBalance(credit_pb2.GetBalanceRequest(
        organization_id=acme.id), timeout=10).balance == 519


def test_staff_sees_its_own_grants_only(browser, world, http_gateway,  # noqa: F811
                                        credit_server):
    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "clerk@example.com", role=account_pb2.ROLE_STAFF)
    page = browser.new_page()
    sign_in(page, http_gateway, "clerk@example.com", "tr")
    for admin_only in ("#nav button[data-screen=controls]", "#nav button[data-screen=webhooks]",
                       "#grants-org", "#grant-form"):
        assert page.is_hidden(admin_only), admin_only
    open_screen(page, "grants")
    expect(page.locator("#grants-balance")).to_have_text(
        "Bakiye 19 · bekleyen görsellere ayrılan 0 · kullanılabilir 19")
    expect(page.locator("#grants tbody tr")).to_have_count(1)
    expect(page.locator("#grants tbody")).to_contain_text("Süresiz")
    # Another organisation's balance is refused by the gateway, whatever a page asks.
    refused = page.request.get(f"{http_gateway}/admin/balance?organizationId={other.id}",
                               headers=dict(staff(acme.id)))
    assert (refused.status, refused.json()["code"]) == (403, "PERMISSION_DENIED")


def test_alerts_limits_and_suspension(browser, world, http_gateway,  # noqa: F811
                                      credit_server):
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, other.id)
    open_screen(page, "controls")
    dialogs = Dialogs(page)
    row = page.locator("#controls tbody tr", has_text="Acme")
    expect(row.locator("td")).to_have_text(["Acme", "19", "—", "1", "—", "Active", "Change"])
    row.locator("button", has_text="Change").click()
    expect(page.locator("#controls-org")).to_have_value(str(acme.id))
    expect(page.locator("#controls-threshold")).to_be_focused()

    page.fill("#controls-threshold", "-3")
    page.click("#controls-save")
    expect(page.locator("#error")).to_have_text("Enter a whole number of credits, 0 or more.")
    page.fill("#controls-threshold", "100")
    page.fill("#controls-monthly", "5000")
    page.click("#controls-save")
    expect(page.locator("#notice")).to_have_text(
        "Saved for Acme: alert below 100, monthly limit 5,000, per user per day —.")
    assert dialogs.seen == ["Set for Acme: alert below 100, monthly limit 5,000, "
                            "per user per day —?"]
    controls = credit_server.notifications.GetOrganizationControls(
        notification_pb2.GetOrganizationControlsRequest(id=acme.id), metadata=ADMIN, timeout=10)
    assert (controls.low_balance_threshold, controls.monthly_credits,
            controls.user_daily_credits, controls.low_balance) == (100, 5000, 0, True)
    expect(row.locator("td")).to_have_text(
        ["Acme", "19", "100", "1 / 5,000", "—", "Low balance", "Change"])
    # Saving what is in force already sends nothing.
    dialogs.seen.clear()
    page.click("#controls-save")
    expect(page.locator("#notice")).to_have_text(
        "Nothing changed: the values are the ones in force.")
    assert dialogs.seen == []

    page.click("#suspend")
    expect(page.locator("#error")).to_have_text(
        "Write why: it is shown to admins and sent to the organisation's webhooks.")
    page.fill("#suspend-reason", "unpaid invoice")
    page.click("#suspend")
    expect(page.locator("#notice")).to_have_text("Acme is suspended.")
    assert dialogs.seen[-1] == ("Suspend Acme? Its new renders are refused until it is "
                                "resumed. Reason: unpaid invoice")
    expect(row.locator("td").nth(5)).to_have_text("Suspended: unpaid invoice")
    expect(page.locator("#suspension-state")).to_have_text("Suspended: unpaid invoice")
    assert page.is_hidden("#suspend") and page.is_visible("#resume")
    page.click("#resume")
    expect(page.locator("#notice")).to_have_text("Acme is active again.")
    assert dialogs.seen[-1] == "Resume Acme? Its users can render again."
    assert not credit_server.notifications.GetOrganizationControls(
        notification_pb2.GetOrganizationControlsRequest(id=acme.id), metadata=ADMIN,
        timeout=10).suspended
    for method in ("SetLowBalanceAlert", "SetSpendLimits", "SuspendOrganization",
                   "ResumeOrganization"):
        assert audited(credit_server,
                       f"/carpet.credit.v1.NotificationService/{method}") == ["ok"], method


def test_webhooks_secret_once_deliveries_and_retry(browser, world, http_gateway,  # noqa: F811
                                                   credit_server, start_dispatcher):
    admin, acme, other, ada, done = world
    start_dispatcher()
    page = signed_in_boss(browser, http_gateway, credit_server, other.id)
    open_screen(page, "webhooks")
    dialogs = Dialogs(page)
    with WebhookReceiver(script=("status:500", "ok")) as receiver:
        page.fill("#webhook-url", "hooks.example.com")
        page.click("#webhook-create")
        expect(page.locator("#error")).to_have_text(
            "Enter the receiver's full address, starting with https://.")
        page.fill("#webhook-url", receiver.url)
        page.click("#webhook-create")
        expect(page.locator("#error")).to_have_text("Choose at least one event.")
        page.select_option("#webhook-org", str(acme.id))
        page.check("#webhook-events input[value='credit.adjusted']")
        page.click("#webhook-create")
        expect(page.locator("#notice")).to_have_text(f"{receiver.url} added.")
        secret = page.text_content("#webhook-secret")
        assert secret.startswith("whsec_")
        endpoint = page.locator("#webhooks tbody tr", has_text=receiver.url)
        expect(endpoint.locator("td").nth(1)).to_have_text("Acme")
        expect(endpoint.locator("td").nth(2)).to_have_text("Credit changed")

        credit_server.credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
            organization_id=acme.id, delta=5, reason="top-up"), metadata=ADMIN, timeout=10)
        endpoint.locator("button", has_text="Deliveries").click()
        delivery = page.locator("#deliveries tbody tr").first
        for _ in range(100):  # the dispatcher's first try, answered 500
            if "HTTP 500" in (delivery.text_content() or ""):
                break
            page.click("#delivery-filters button[type=submit]")
            page.wait_for_timeout(100)
        expect(delivery).to_contain_text("Credit changed")
        expect(delivery).to_contain_text("Waiting")
        expect(delivery).to_contain_text("1 · last answer HTTP 500")
        delivery.locator("button", has_text="Send again").click()
        expect(page.locator("#notice")).to_have_text(
            "Credit changed will be sent again shortly.")
        for _ in range(100):
            page.click("#delivery-filters button[type=submit]")
            if "Delivered" in (delivery.text_content() or ""):
                break
            page.wait_for_timeout(100)
        expect(delivery).to_contain_text("Delivered")
        # The secret the page showed is the one the events are signed with.
        last = receiver.received[-1]
        assert Webhook(secret).verify(last.body, last.headers)["type"] == "credit.adjusted"

    # Shown once: gone from the page when the screen changes, never listed.
    open_screen(page, "grants")
    open_screen(page, "webhooks")
    assert page.is_hidden("#webhook-secret-box")
    assert secret not in page.content()
    endpoint.locator("button", has_text="Remove").click()
    expect(page.locator("#notice")).to_have_text(f"{receiver.url} removed.")
    assert dialogs.seen[-1].startswith(f"Remove {receiver.url}?")
    expect(page.locator("#webhooks tbody tr", has_text=receiver.url)).to_have_count(0)
    for method in ("CreateWebhookEndpoint", "RetryWebhookDelivery", "DeleteWebhookEndpoint"):
        assert audited(credit_server,
                       f"/carpet.credit.v1.NotificationService/{method}") == ["ok"], method


def test_csv_in_the_consoles_language_and_separator(browser, world, http_gateway,  # noqa: F811
                                                    credit_server):
    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "boss@example.com")
    page = browser.new_page()
    sign_in(page, http_gateway, "boss@example.com", "tr")
    open_screen(page, "renders")
    picker = page.locator("#screen-renders select.csv-delimiter")
    expect(picker).to_have_value("semicolon")  # Turkish: what a Turkish spreadsheet splits on
    with page.expect_download() as download:
        page.click("#screen-renders .csv")
    lines = open(download.value.path(), encoding="utf-8-sig").read().splitlines()
    header = next(csv.reader(lines[:1], delimiter=";"))
    assert header[:3] == ["No.", "Oluşturulma (UTC)", "Kuruluş no."]
    rows = list(csv.DictReader(lines, delimiter=";"))
    assert sorted(row["Durum"] for row in rows) == ["Başarısız", "Tamamlandı"]

    page.click(".lang[data-lang=en]")
    expect(picker).to_have_value("comma")  # the default follows the language
    picker.select_option("semicolon")  # until the person picks one, kept for every list
    open_screen(page, "credits")
    expect(page.locator("#screen-credits select.csv-delimiter")).to_have_value("semicolon")
    page.select_option("#credits-org", str(acme.id))
    with page.expect_download() as download:
        page.click("#screen-credits .csv")
    lines = open(download.value.path(), encoding="utf-8-sig").read().splitlines()
    rows = list(csv.DictReader(lines, delimiter=";"))
    assert [(row["Kind"], row["Reason"]) for row in rows] == [
        ("Render", "Render charge"), ("Initial", "Initial credit")]
