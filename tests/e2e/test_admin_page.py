"""The admin page in a real headless Chromium (Debian's, driven by Playwright): sign in with
the token, the cards show GetOverview's numbers, a credit adjustment through the form changes
the balance and adds an audit row, a wrong token shows an error. On SQLite and PostgreSQL."""
import shutil

import pytest
from playwright.sync_api import expect

from protos.carpet.admin.v1 import admin_pb2
from protos.carpet.credit.v1 import audit_pb2, credit_pb2
from tests.helpers import ADMIN, ADMIN_TOKEN
from tests.integration.test_admin_gateway import world  # noqa: F401 - the shared fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_admin_page(browser, world, http_gateway, credit_server):  # noqa: F811
    admin, acme, other, ada, done = world
    page = browser.new_page()
    page.goto(http_gateway + "/admin/")

    page.fill("#token", "wrong-token-wrong-token-wrong")
    page.click("#sign-in")
    page.wait_for_selector("#error:not([hidden])")
    assert "Sign-in failed" in page.text_content("#error")
    assert page.is_hidden("#dashboard")

    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in")
    page.wait_for_selector("#dashboard:not([hidden])")
    assert ADMIN_TOKEN not in page.url
    assert page.evaluate("sessionStorage.getItem('carpet-admin-token')") == ADMIN_TOKEN
    overview = admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=ADMIN, timeout=10)
    assert page.text_content("#card-users") == str(overview.total_users)
    assert page.text_content("#card-renders") == str(overview.total_renders)
    assert page.text_content("#card-credit") == str(overview.total_remaining_credit)

    users = page.locator("#users tbody tr")
    assert users.count() == 2
    assert "ada@example.com" in users.nth(1).text_content()
    renders = page.locator("#renders tbody tr")
    assert renders.count() == 2
    assert "insufficient credits" in renders.nth(0).text_content()
    page.wait_for_selector("#renders tbody tr:nth-child(2) img")  # the success's thumbnail

    confirmations = []

    def confirm(dialog):
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    other_balance_before = credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=other.id), timeout=10).balance
    page.select_option("#adjust-org", str(acme.id))
    page.fill("#adjust-delta", "7")
    page.fill("#adjust-reason", "goodwill from the page")
    page.click("#adjust-apply")
    # Locator assertions wait without evaluating strings (the page's CSP forbids eval).
    expect(page.locator("#adjust-result")).to_have_text("Done: balance is now 26.")
    balance = credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=acme.id), timeout=10)
    assert balance.balance == 26
    expect(page.locator("#card-credit")).to_have_text("29")
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.credit.v1.CreditService/AdjustCredits"), metadata=ADMIN,
        timeout=10).audit_logs
    assert [(row.actor, row.outcome) for row in rows] == [("alice", "ok")]
    assert '"reason": "goodwill from the page"' in rows[0].details
    assert confirmations == [f"Really add 7 credits to Acme (#{acme.id})?"]
    # The form is cleared and keeps the chosen organisation after the reload.
    expect(page.locator("#adjust-delta")).to_have_value("")
    expect(page.locator("#adjust-reason")).to_have_value("")
    expect(page.locator("#adjust-org")).to_have_value(str(acme.id))

    # A second adjustment in a row lands on the same organisation, named again.
    page.fill("#adjust-delta", "3")
    page.fill("#adjust-reason", "second goodwill")
    page.click("#adjust-apply")
    expect(page.locator("#adjust-result")).to_have_text("Done: balance is now 29.")
    assert confirmations[-1] == f"Really add 3 credits to Acme (#{acme.id})?"
    assert credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=acme.id), timeout=10).balance == 29
    assert credit_server.credits.GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=other.id), timeout=10).balance == \
        other_balance_before

    page.fill("#adjust-delta", "-1000")
    page.fill("#adjust-reason", "too much")
    page.click("#adjust-apply")
    expect(page.locator("#error")).to_have_text("Not enough credit for this change.")


def test_people_sign_in_with_email_and_password(browser, world, http_gateway,  # noqa: F811
                                                credit_server):
    """The page's sign-in form (CONTRACT §9): an admin and a STAFF member with their own
    passwords; the tokens stay in the page's memory; signing out ends the session."""
    from protos.carpet.credit.v1 import account_pb2

    admin, acme, other, ada, done = world
    for email, role, organization in (("boss@example.com", account_pb2.ROLE_ADMIN, other),
                                      ("clerk@example.com", account_pb2.ROLE_STAFF, acme)):
        credit_server.accounts.CreateUser(account_pb2.CreateUserRequest(
            organization_id=organization.id, name=email.split("@")[0], email=email, role=role,
            password="page-sign-in-2026"), metadata=ADMIN, timeout=30)
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(http_gateway + "/admin/")

    page.fill("#email", "boss@example.com")
    page.fill("#password", "not-the-password")
    page.click("#sign-in")
    expect(page.locator("#error")).to_have_text("Email or password is wrong.")
    assert page.is_hidden("#dashboard")

    page.fill("#email", "boss@example.com")
    page.fill("#password", "page-sign-in-2026")
    page.click("#sign-in")
    page.wait_for_selector("#dashboard:not([hidden])")
    expect(page.locator("#card-users")).to_have_text("4")
    assert page.is_visible("#adjust-section")
    # Nothing of the session is stored where another page or a reload could read it.
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    assert not any("page-sign-in" in url or "token" in url.split("?")[0] for url in requests)
    page.click("#sign-out")
    page.wait_for_selector("#sign-in-form:not([hidden])")
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        action="/carpet.credit.v1.AuthService/Logout"), metadata=ADMIN, timeout=10).audit_logs
    assert [(row.actor, row.outcome) for row in rows] == [("boss@example.com", "ok")]

    # STAFF: its own organisation's numbers, and no credit form.
    page.fill("#email", "clerk@example.com")
    page.fill("#password", "page-sign-in-2026")
    page.click("#sign-in")
    page.wait_for_selector("#dashboard:not([hidden])")
    expect(page.locator("#users tbody tr")).to_have_count(2)  # Ada and the clerk, of Acme
    expect(page.locator("#renders tbody tr")).to_have_count(1)
    assert page.is_hidden("#adjust-section")
    assert page.is_hidden("#error")
