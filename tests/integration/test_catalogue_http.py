"""The catalogue over the gateway's HTTP API (real HTTP, gateway and services behind it, both
engines): create with a picture and sizes, read, change the fields a PATCH body holds, archive
and restore, export as CSV, STAFF kept to their own catalogue (`docs/catalogue.md`)."""
import base64
import csv
import io
import urllib.request

import pytest
from PIL import Image

from admin_gateway.http import MAX_PICTURE_BODY_BYTES
from tests.builders import TOKEN, call, create_org, staff_token
from tests.fake_image_api import tiny_png
from tests.helpers import bearer

pytestmark = pytest.mark.usefixtures("engine")
PICTURE = base64.b64encode(tiny_png()).decode()


def test_a_shop_manages_its_catalogue_over_http(http_gateway, credit_server):
    shop, other = create_org(credit_server, "Shop", 10), create_org(credit_server, "Other", 10)
    staff = dict(bearer(staff_token(shop.id)))
    status, carpet, _ = call(http_gateway, "/admin/carpets", method="POST", headers=staff,
                             body={"sku": "KLM-001", "name": "Kilim", "material": "wool",
                                   "image": PICTURE,
                                   "sizes": [{"widthCm": 160, "lengthCm": 230, "sku": "M"},
                                             {"widthCm": 80, "lengthCm": 150}]})
    assert status == 200, carpet
    assert (carpet["organizationId"], carpet["sku"], carpet["widthCm"]) == (
        str(shop.id), "KLM-001", 160)
    assert [(size["widthCm"], size["lengthCm"], size["sku"]) for size in carpet["sizes"]] == [
        (160, 230, "M"), (80, 150, "")]
    path = f"/admin/carpets/{carpet['id']}"
    # Another shop's staff: it does not exist.
    other_staff = dict(bearer(staff_token(other.id)))
    assert call(http_gateway, path, headers=other_staff)[0] == 404
    assert call(http_gateway, "/admin/carpets", headers=other_staff)[1]["carpets"] == []

    # Its thumbnail, for its own shop only; a new picture gives a new thumbnail.
    with urllib.request.urlopen(urllib.request.Request(
            http_gateway + path + "/thumbnail", headers=staff), timeout=15) as response:
        first = response.read()
        assert response.headers["Content-Type"] == "image/jpeg" and first[:2] == b"\xff\xd8"
    assert call(http_gateway, path + "/thumbnail", headers=other_staff)[0] == 404
    wider = io.BytesIO()
    Image.new("RGB", (30, 40), (200, 30, 30)).save(wider, format="PNG")
    assert call(http_gateway, path, method="PATCH", headers=staff,
                body={"image": base64.b64encode(wider.getvalue()).decode()})[0] == 200
    with urllib.request.urlopen(urllib.request.Request(
            http_gateway + path + "/thumbnail", headers=staff), timeout=15) as response:
        assert response.read() != first

    # PATCH changes what its body holds, and nothing else.
    status, changed, _ = call(http_gateway, path, method="PATCH", headers=staff,
                              body={"name": "Kilim 2"})
    assert status == 200 and (changed["name"], changed["material"]) == ("Kilim 2", "wool")
    assert [size["id"] for size in changed["sizes"]] == [size["id"] for size in carpet["sizes"]]
    assert call(http_gateway, path, method="PATCH", headers=staff, body={})[0] == 400
    assert call(http_gateway, path, method="PATCH", headers=staff,
                body={"sizes": [{"id": carpet["sizes"][0]["id"], "widthCm": 161,
                                 "lengthCm": 230}]})[0] == 400

    assert call(http_gateway, f"{path}/archive", method="POST", headers=staff)[1][
        "archivedAt"]
    assert call(http_gateway, "/admin/carpets", headers=staff)[1]["carpets"] == []
    listed = call(http_gateway, "/admin/carpets?includeArchived=true", headers=staff)[1]
    assert [row["sku"] for row in listed["carpets"]] == ["KLM-001"]
    restored = call(http_gateway, f"{path}/restore", method="POST", headers=staff)[1]
    assert "archivedAt" not in restored or restored["archivedAt"] is None

    request = urllib.request.Request(http_gateway + "/admin/carpets.csv", headers=staff)
    with urllib.request.urlopen(request, timeout=15) as response:
        rows = list(csv.reader(io.StringIO(response.read().decode("utf-8-sig"))))
    assert rows == [["sku", "name", "material", "width_cm", "length_cm", "image"],
                    ["KLM-001", "Kilim 2", "wool", "160", "230", ""],
                    ["KLM-001", "Kilim 2", "wool", "80", "150", ""]]
    status, body, _ = call(http_gateway, "/admin/carpets?includeArchived=maybe", headers=staff)
    assert (status, body["code"]) == (400, "INVALID_ARGUMENT")


def test_the_shared_catalogue_is_admins_and_bodies_have_their_limit(http_gateway,
                                                                    credit_server):
    shop = create_org(credit_server, "Shop", 10)
    staff = dict(bearer(staff_token(shop.id)))
    status, shared, _ = call(http_gateway, "/admin/carpets", method="POST", headers=TOKEN,
                             body={"sku": "SHARED-1", "name": "Shared", "image": PICTURE,
                                   "widthCm": 120, "lengthCm": 170})
    assert status == 200 and shared["organizationId"] == "0"
    assert call(http_gateway, f"/admin/carpets/{shared['id']}", headers=staff)[0] == 200
    assert call(http_gateway, f"/admin/carpets/{shared['id']}", method="PATCH", headers=staff,
                body={"name": "Mine"})[0] == 403
    assert call(http_gateway, f"/admin/carpets/{shared['id']}/archive", method="POST",
                headers=staff)[0] == 403
    # A picture upload may be large, up to its own limit; other routes keep theirs.
    too_large = b"{" + b" " * (MAX_PICTURE_BODY_BYTES) + b"}"
    status, body, _ = call(http_gateway, "/admin/carpets", method="POST", headers=TOKEN,
                           raw=too_large)
    assert (status, body["code"]) == (413, "TOO_LARGE")
    status, body, _ = call(http_gateway, "/admin/credits/adjust", method="POST", headers=TOKEN,
                           raw=b"{" + b" " * 70_000 + b"}")
    assert (status, body["code"]) == (413, "TOO_LARGE")
