"""The console's Catalogue screen in a real Chromium, against the real services on SQLite and
PostgreSQL: a carpet added with its picture and sizes (wrong fields named, nothing sent),
changed, archived and restored; a spreadsheet checked first (nothing changes) and then
imported; STAFF managing their own catalogue and only seeing the shared one — in English and
in Turkish (`docs/catalogue.md`)."""
import io
import time
import zipfile

import pytest
from playwright.sync_api import expect

from protos.carpet.credit.v1 import account_pb2, audit_pb2
from render_service import models
from tests.e2e.test_admin_page import (
    Dialogs,
    browser,  # noqa: F401 - the fixture
    open_screen,
    person,
    sign_in,
    signed_in_boss,
)
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN
from tests.integration.test_admin_gateway import world  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("engine")
PNG = {"name": "kilim.png", "mimeType": "image/png", "buffer": tiny_png()}


def rows(page):
    return page.locator("#carpets tbody tr")


def test_add_change_archive_and_restore_a_carpet(browser, world, http_gateway,  # noqa: F811
                                                 credit_server):
    admin, acme, other, ada, done = world
    page = signed_in_boss(browser, http_gateway, credit_server, acme.id)
    open_screen(page, "catalogue")
    dialogs = Dialogs(page)
    # The world's carpet, in the shared catalogue, with its thumbnail.
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first.locator("td").nth(5)).to_have_text("Shared catalogue")
    expect(rows(page).first.locator("img")).to_have_attribute("alt", "Picture of Kilim")
    # Rendered twice in the last 30 days: Acme's render and Other's refused one.
    expect(rows(page).first.locator("td").nth(7)).to_have_text("2")

    # Wrong fields are named and nothing is sent.
    page.select_option("#carpet-org", str(acme.id))
    for sku, name, width, picture, message in (
            ("", "Kilim", "160", True, "Enter the carpet's SKU."),
            ("ACME-1", "", "160", True, "Enter the carpet's name."),
            ("ACME-1", "Kilim", "0", True,
             "Enter width and length as whole centimetres from 1 to 10,000."),
            ("ACME-1", "Kilim", "160", False, "Choose the carpet's picture (PNG or JPEG).")):
        page.fill("#carpet-sku", sku)
        page.fill("#carpet-name", name)
        page.locator("#carpet-sizes .size-width").first.fill(width)
        page.locator("#carpet-sizes .size-length").first.fill("230")
        page.set_input_files("#carpet-picture", [PNG] if picture else [])
        page.click("#carpet-save")
        expect(page.locator("#error")).to_have_text(message)
    assert models.Carpet.select().count() == 1

    page.locator("#carpet-sizes .size-width").first.fill("160")
    page.fill("#carpet-material-field", "wool")
    page.click("#carpet-add-size")
    page.locator("#carpet-sizes .size-width").nth(1).fill("80")
    page.locator("#carpet-sizes .size-length").nth(1).fill("150")
    page.locator("#carpet-sizes .size-sizeSku").nth(1).fill("ACME-1-S")
    page.set_input_files("#carpet-picture", [PNG])
    page.click("#carpet-save")
    expect(page.locator("#notice")).to_have_text("Added ACME-1.")
    added = rows(page).filter(has_text="ACME-1")
    expect(added.locator("td").nth(4)).to_have_text("160 × 230, 80 × 150 (ACME-1-S)")
    expect(added.locator("td").nth(5)).to_have_text("Acme")
    carpet = models.Carpet.get(models.Carpet.sku == "ACME-1")
    assert carpet.organization_id == acme.id

    # Change: a new name, the small size left out, a large one added.
    added.get_by_role("button", name="Change ACME-1").click()
    expect(page.locator("#carpet-form-title")).to_have_text("Change ACME-1")
    assert page.locator("#carpet-sku").get_attribute("readonly") is not None
    page.fill("#carpet-name", "Kilim Acme")
    page.locator("#carpet-sizes .size-row").nth(1).get_by_role(
        "button", name="Remove this size").click()
    page.click("#carpet-add-size")
    page.locator("#carpet-sizes .size-width").nth(1).fill("200")
    page.locator("#carpet-sizes .size-length").nth(1).fill("300")
    page.click("#carpet-save")
    expect(page.locator("#notice")).to_have_text("Saved the changes to ACME-1.")
    expect(added.locator("td").nth(2)).to_have_text("Kilim Acme")
    expect(added.locator("td").nth(4)).to_have_text("160 × 230, 200 × 300")

    # Archive (asked first), out of the list; back with "Archived too"; restored.
    dialogs.answers[:] = [False]
    added.get_by_role("button", name="Archive: ACME-1").click()
    expect(added).to_have_count(1)  # declined: nothing changed
    added.get_by_role("button", name="Archive: ACME-1").click()
    expect(page.locator("#notice")).to_have_text("ACME-1 is archived.")
    assert dialogs.seen[-1].startswith("Archive ACME-1 (Kilim Acme)? It can no longer be rendered")
    expect(rows(page).filter(has_text="ACME-1")).to_have_count(0)
    page.check("#carpet-archived")
    page.click("#carpet-filters button[type=submit]")
    expect(added.locator("td").nth(6)).to_have_text("Archived")
    added.get_by_role("button", name="Restore: ACME-1").click()
    expect(page.locator("#notice")).to_have_text("ACME-1 is back in use.")
    expect(added.locator("td").nth(6)).to_have_text("In use")
    # Each change in the audit log with who made it (the render service's relay runs here).
    expected = ["CreateCarpet", "UpdateCarpet", "ArchiveCarpet", "RestoreCarpet"]
    deadline = time.monotonic() + 30
    while (logged := carpet_actions(credit_server)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged == expected


def carpet_actions(credit_server):
    rows = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(
        actor="boss@example.com"), metadata=ADMIN, timeout=10).audit_logs
    return [row.action.rsplit("/", 1)[-1] for row in reversed(rows)
            if row.action.endswith("Carpet")]


def catalogue_files() -> tuple[dict, dict]:
    csv_text = ("sku,name,material,width_cm,length_cm,image\n"
                "HALI-1,Çiçekli halı,yün,120,180,cicek.png\n"
                "HALI-1,Çiçekli halı,yün,160,230,\n"
                "HALI-2,Kırık,yün,genis,180,cicek.png\n")
    pictures = io.BytesIO()
    with zipfile.ZipFile(pictures, "w") as archive:
        archive.writestr("cicek.png", tiny_png())
    return ({"name": "katalog.csv", "mimeType": "text/csv", "buffer": csv_text.encode()},
            {"name": "gorseller.zip", "mimeType": "application/zip",
             "buffer": pictures.getvalue()})


def test_staff_import_their_catalogue_in_turkish(browser, world, http_gateway,  # noqa: F811
                                                 credit_server):
    admin, acme, other, ada, done = world
    person(credit_server, acme.id, "clerk@example.com", role=account_pb2.ROLE_STAFF)
    page = browser.new_page()
    sign_in(page, http_gateway, "clerk@example.com", "tr")
    open_screen(page, "catalogue")
    # The shared carpet is seen, not changed; no catalogue picker for STAFF.
    shared = rows(page).first
    expect(shared.locator("td").nth(5)).to_have_text("Ortak katalog")
    expect(shared.get_by_role("button")).to_have_count(0)
    expect(shared.locator("td").nth(7)).to_have_text("1")  # its own organisation's render only
    for hidden in ("#carpet-org-label", "#import-org", "#carpet-filter-org"):
        assert page.is_hidden(hidden), hidden

    expect(page.locator("#import-apply")).to_be_disabled()
    spreadsheet, pictures = catalogue_files()
    page.set_input_files("#import-file", [spreadsheet])
    page.set_input_files("#import-pictures", [pictures])
    page.click("#import-check")
    expect(page.locator("#import-summary")).to_have_text(
        "Denetlendi, henüz hiçbir şey değişmedi: 2 satır eklenecek, 0 değişecek, 0 zaten böyle, "
        "1 reddedildi.")
    report = page.locator("#import-report tbody tr")
    expect(report).to_have_count(3)
    expect(report.nth(2).locator("td")).to_have_text(
        ["4", "HALI-2", "Reddedildi", "width_cm: tam sayı değil"])
    assert models.Carpet.select().where(models.Carpet.sku == "HALI-1").count() == 0

    page.click("#import-apply")
    expect(page.locator("#import-summary")).to_have_text(
        "İçe aktarıldı: 2 satır eklendi, 0 değişti, 0 zaten böyleydi, 1 reddedildi.")
    expect(page.locator("#import-apply")).to_be_disabled()
    imported = rows(page).filter(has_text="HALI-1")
    expect(imported.locator("td").nth(2)).to_have_text("Çiçekli halı")
    expect(imported.locator("td").nth(4)).to_have_text("120 × 180, 160 × 230")
    expect(imported.locator("td").nth(5)).to_have_text("Kataloğunuz")
    assert models.Carpet.get(models.Carpet.sku == "HALI-1").organization_id == acme.id
