"""`POST /admin/carpets/import` over real HTTP with the gateway and services behind it, both
engines: CSV (UTF-8, and Windows-1254 with `;`) and XLSX with a ZIP of pictures, a dry run
that changes nothing, re-importing that changes nothing, row-by-row problems with line and
column, whole-file refusals that change nothing, STAFF kept to their own catalogue, one audit
entry per applied import (`docs/catalogue.md`)."""
import io
import json
import urllib.error
import urllib.request
import uuid
import zipfile

import pytest

from admin_gateway.imports import MAX_UPLOAD_BYTES
from render_service import models
from tests.builders import TOKEN, call, create_org, staff_token
from tests.fake_image_api import tiny_png
from tests.helpers import bearer

pytestmark = pytest.mark.usefixtures("engine")
HEADER = "sku,name,material,width_cm,length_cm,image\n"


def pictures_zip(**files: bytes) -> bytes:
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name.replace("__", "/"), data)
    return output.getvalue()


def upload(base, *, file: bytes, file_name="catalogue.csv", pictures: bytes | None = None,
           dry_run=False, headers=None, organization_id=0):
    boundary = uuid.uuid4().hex
    parts = [("dryRun", None, b"true" if dry_run else b"false"),
             ("file", file_name, file)]
    if organization_id:
        parts.append(("organizationId", None, str(organization_id).encode()))
    if pictures is not None:
        parts.append(("pictures", "pictures.zip", pictures))
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        base + "/admin/carpets/import", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                 **(TOKEN if headers is None else headers)})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def outcomes(report):
    return [(int(row["line"]), row["sku"], row["outcome"],
             [(problem["column"], problem["code"]) for problem in row["errors"]])
            for row in report["rows"]]


def counts(report):
    return tuple(int(report[key]) for key in ("created", "updated", "unchanged", "rejected"))


def catalogue(base, headers=TOKEN):
    listed = call(base, "/admin/carpets?includeArchived=true&pageSize=100", headers=headers)[1]
    return sorted((carpet["sku"], carpet["name"], carpet["material"],
                   [(size["widthCm"], size["lengthCm"]) for size in carpet["sizes"]])
                  for carpet in listed["carpets"])


def test_a_dry_run_then_the_import_then_the_same_file_again(http_gateway):
    file = (HEADER + "KLM-1,Kilim,wool,160,230,kilim.png\n"
                     "KLM-1,Kilim,wool,80,150,\n"
                     "HLY-2,Hereke,silk,200,300,photos/hereke.png\n").encode()
    pictures = pictures_zip(**{"kilim.png": tiny_png(), "photos__hereke.png": tiny_png()})
    status, dry = upload(http_gateway, file=file, pictures=pictures, dry_run=True)
    assert status == 200, dry
    assert counts(dry) == (3, 0, 0, 0)
    assert outcomes(dry) == [(2, "KLM-1", "created", []), (3, "KLM-1", "created", []),
                             (4, "HLY-2", "created", [])]
    assert catalogue(http_gateway) == []  # a dry run changes nothing
    assert models.RenderAudit.select().count() == 0

    status, applied = upload(http_gateway, file=file, pictures=pictures)
    assert (status, counts(applied), outcomes(applied)) == (200, (3, 0, 0, 0), outcomes(dry))
    assert catalogue(http_gateway) == [("HLY-2", "Hereke", "silk", [(200, 300)]),
                                       ("KLM-1", "Kilim", "wool", [(160, 230), (80, 150)])]
    entries = [(entry.action.rsplit("/", 1)[-1], entry.organization_id,
                json.loads(entry.details)) for entry in models.RenderAudit.select()]
    assert entries == [("ImportCarpets", 0, {"file": "catalogue.csv", "created": 3,
                                              "updated": 0, "unchanged": 0, "rejected": 0,
                                              "relayed_by": "admin-gateway"})]

    # Its report is kept under the id its answer and its audit entry name.
    assert applied["id"] and not dry["id"]
    status, kept, _ = call(http_gateway, f"/admin/carpets/import-report?id={applied['id']}",
                           headers=TOKEN)
    assert status == 200
    assert (outcomes(kept), counts(kept), kept["fileName"], kept["organizationId"]) == (
        outcomes(applied), (3, 0, 0, 0), "catalogue.csv", "0")
    assert models.RenderAudit.get().target == f"import:{applied['id']}"
    assert call(http_gateway, "/admin/carpets/import-report?id=0123", headers=TOKEN)[0] == 404

    # The same file again changes nothing (pictures included); a changed one updates.
    status, again = upload(http_gateway, file=file, pictures=pictures)
    assert counts(again) == (0, 0, 3, 0)
    changed = (HEADER + "KLM-1,Kilim No. 1,wool,160,230,\n"
                        "KLM-1,Kilim No. 1,wool,240,340,\n").encode()
    status, updated = upload(http_gateway, file=changed)
    assert counts(updated) == (0, 2, 0, 0)
    assert catalogue(http_gateway) == [("HLY-2", "Hereke", "silk", [(200, 300)]),
                                       ("KLM-1", "Kilim No. 1", "wool", [(160, 230), (240, 340)])]


def test_turkish_excel_csv_and_xlsx(http_gateway):
    turkish = ("sku;name;material;width_cm;length_cm;image\r\n"
               "TR-1;Çiçekli halı;Yün;120;180;cicek.png\r\n").encode("cp1254")
    status, report = upload(http_gateway, file=turkish,
                            pictures=pictures_zip(**{"CICEK.PNG": tiny_png()}))
    assert (status, counts(report)) == (200, (1, 0, 0, 0)), report
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["SKU", "Name", "Material", "width_cm", "length_cm", "image"])
    sheet.append(["XL-1", "Işıl", "ipek", 90, 150.0, "cicek.png"])
    sheet.append(["XL-2", "=HYPERLINK(\"http://x\")", "ipek", 90, 150, "cicek.png"])
    workbook = io.BytesIO()
    book.save(workbook)
    status, report = upload(http_gateway, file=workbook.getvalue(), file_name="katalog.xlsx",
                            pictures=pictures_zip(**{"cicek.png": tiny_png()}))
    assert status == 200, report
    assert outcomes(report) == [(2, "XL-1", "created", []),
                                (3, "XL-2", "rejected", [("name", "FORMULA")])]
    assert catalogue(http_gateway) == [("TR-1", "Çiçekli halı", "Yün", [(120, 180)]),
                                       ("XL-1", "Işıl", "ipek", [(90, 150)])]


def test_each_bad_row_is_reported_and_skipped(http_gateway):
    file = (HEADER + "OK-1,Fine,wool,100,150,ok.png\n"
                     "BAD-1,=1+1,wool,100,150,ok.png\n"
                     "BAD-2,No width,wool,,150,ok.png\n"
                     "BAD-3,Wide,wool,wide,150,ok.png\n"
                     "BAD-4,Huge,wool,10001,150,ok.png\n"
                     "BAD-5,Lost,wool,100,150,missing.png\n"
                     "BAD-6,Not a picture,wool,100,150,text.png\n"
                     "BAD-7,New without picture,wool,100,150,\n"
                     "OK-1,Another name,wool,80,150,\n"
                     ",No sku,wool,100,150,ok.png\n").encode()
    status, report = upload(http_gateway, file=file, pictures=pictures_zip(
        **{"ok.png": tiny_png(), "text.png": b"just text"}))
    assert status == 200, report
    assert outcomes(report) == [
        (2, "OK-1", "created", []),
        (3, "BAD-1", "rejected", [("name", "FORMULA")]),
        (4, "BAD-2", "rejected", [("width_cm", "REQUIRED")]),
        (5, "BAD-3", "rejected", [("width_cm", "NOT_A_NUMBER")]),
        (6, "BAD-4", "rejected", [("width_cm", "OUT_OF_RANGE")]),
        (7, "BAD-5", "rejected", [("image", "PICTURE_MISSING")]),
        (8, "BAD-6", "rejected", [("image", "PICTURE_INVALID")]),
        (9, "BAD-7", "rejected", [("image", "PICTURE_MISSING")]),
        (10, "OK-1", "rejected", [("name", "CONFLICTING_ROWS")]),
        (11, "", "rejected", [("sku", "REQUIRED")])]
    assert counts(report) == (1, 0, 0, 9)
    assert [sku for sku, *_ in catalogue(http_gateway)] == ["OK-1"]


@pytest.mark.parametrize("case", ["zip bomb", "no header", "not multipart", "too large",
                                  "not a spreadsheet"])
def test_a_file_that_cannot_be_read_is_refused_whole(http_gateway, case):
    good = (HEADER + "K-1,Kilim,wool,100,150,k.png\n").encode()
    if case == "zip bomb":
        bomb = io.BytesIO()
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("k.png", b"\0" * (50 * 1024 * 1024))
        status, body = upload(http_gateway, file=good, pictures=bomb.getvalue())
    elif case == "no header":
        status, body = upload(http_gateway, file=b"K-1,Kilim,wool,100,150,k.png\n")
    elif case == "not a spreadsheet":
        status, body = upload(http_gateway, file=b"PK\x03\x04 not really a workbook",
                              file_name="x.xlsx")
    elif case == "not multipart":
        status, body, _ = call(http_gateway, "/admin/carpets/import", method="POST",
                               body={"file": "K-1"}, headers=TOKEN)
    else:
        status, body = upload(http_gateway, file=good + b"#" * MAX_UPLOAD_BYTES)
    expected = (413, "TOO_LARGE") if case == "too large" else (400, "INVALID_ARGUMENT")
    assert (status, body["code"]) == expected, body
    assert {"zip bomb": "a ZIP bomb", "no header": "the header lacks sku, name",
            "not multipart": "multipart/form-data", "too large": "at most 20 MiB",
            "not a spreadsheet": "the XLSX file is not a ZIP archive"}[case] in body["message"]
    assert catalogue(http_gateway) == []
    assert models.RenderAudit.select().count() == 0


def test_staff_import_into_their_own_catalogue_only(http_gateway, credit_server):
    shop, other = create_org(credit_server, "Shop", 10), create_org(credit_server, "Other", 10)
    staff = dict(bearer(staff_token(shop.id)))
    file = (HEADER + "S-1,Shop kilim,wool,100,150,s.png\n").encode()
    pictures = pictures_zip(**{"s.png": tiny_png()})
    status, report = upload(http_gateway, file=file, pictures=pictures, headers=staff)
    assert (status, counts(report)) == (200, (1, 0, 0, 0))
    assert call(http_gateway, "/admin/carpets", headers=staff)[1]["carpets"][0][
        "organizationId"] == str(shop.id)
    status, body = upload(http_gateway, file=file, pictures=pictures, headers=staff,
                          organization_id=other.id)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    # No credential: refused as every call is, without reading the file.
    status, body = upload(http_gateway, file=file, pictures=pictures, headers={})
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    # Its report is its shop's: another shop's staff get NOT_FOUND.
    other_staff = dict(bearer(staff_token(other.id)))
    path = f"/admin/carpets/import-report?id={report['id']}"
    assert call(http_gateway, path, headers=staff)[0] == 200
    assert call(http_gateway, path, headers=other_staff)[0] == 404
    outcomes_audited = [(entry.outcome, entry.organization_id) for entry in
                        models.RenderAudit.select().order_by(models.RenderAudit.id)]
    assert outcomes_audited == [("ok", shop.id), ("error:NOT_FOUND", other.id)]


def test_a_private_address_is_refused_for_a_picture(http_gateway):
    """Without WEBHOOK_ALLOW_PRIVATE the guard refuses plain http and inward addresses."""
    file = (HEADER + "P-1,Inside,wool,100,150,http://127.0.0.1:9/kilim.png\n"
                     "P-2,Metadata,wool,100,150,https://169.254.169.254/latest\n").encode()
    status, report = upload(http_gateway, file=file)
    assert status == 200, report
    assert outcomes(report) == [(2, "P-1", "rejected", [("image", "PICTURE_UNREACHABLE")]),
                                (3, "P-2", "rejected", [("image", "PICTURE_UNREACHABLE")])]
    assert "must be https" in report["rows"][0]["errors"][0]["message"]
    assert "loopback, private or link-local" in report["rows"][1]["errors"][0]["message"]
