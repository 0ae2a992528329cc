"""The console's render detail of a render on a measured floor, in a real Chromium against the
real services (both engines): the floor's size, each carpet's size and fit in the reader's
language, and the floor and the carpets outlined over the room picture
(`docs/render-api.md`, "A measured floor")."""
import re

import pytest
from playwright.sync_api import expect

from protos.carpet.render.v1 import render_pb2
from tests.builders import create_org
from tests.e2e.test_admin_page import (
    browser,  # noqa: F401 - the fixture
    open_screen,
    signed_in_boss,
)
from tests.integration.test_measured_floor_api import (
    jpeg,
    line_floor,
    spot,
    submit_on_floor,
    two_carpets,
)

pytestmark = pytest.mark.usefixtures("engine")


def test_the_render_detail_shows_the_floor_and_its_carpets(browser, http_gateway,  # noqa: F811
                                                           credit_server, render_server):
    shop = create_org(credit_server, "Shop", 20)
    room, runner = two_carpets(render_server, shop.id)
    submit_on_floor(render_server, shop.id, [spot(room.sizes[0].id, 100, 150),
                                             spot(runner.sizes[0].id, 125, 265, 90)])
    page = signed_in_boss(browser, http_gateway, credit_server, shop.id)
    for language, words in (("en", ("Measured floor", "200 × 300 cm", "Carpet 2 (80 × 150 cm)",
                                     "sticks out of the measure (negative: by how much): 50 cm "
                                     "to the left edge, 0 cm to the right, 225 cm to the far "
                                     "edge, -5 cm to the near edge")),
                            ("tr", ("Ölçülen zemin", "200 × 300 cm", "Halı 1 (100 × 150 cm)",
                                    "ölçünün içinde: sol kenara 50 cm, sağa 50 cm, uzak kenara "
                                    "75 cm, yakın kenara 75 cm"))):
        page.click(f".lang[data-lang={language}]")
        open_screen(page, "renders")
        page.click("#renders tbody button")
        fields = page.locator("#render-detail-fields")
        expect(fields.locator(f"dt:has-text('{words[0]}') + dd")).to_have_text(words[1])
        expect(fields.locator(f"dt:has-text('{words[2]}') + dd")).to_have_text(words[3])
        # The floor dashed and both carpets, over the room picture.
        expect(page.locator("#render-room svg.outlines polygon.floor")).to_have_count(1)
        expect(page.locator("#render-room svg.outlines polygon.carpet")).to_have_count(2)
        page.keyboard.press("Escape")
        expect(page.locator("#render-detail")).to_be_hidden()
    page.close()


def test_a_floor_measured_by_a_line_shows_its_length_and_no_fit(browser, http_gateway,  # noqa: F811
                                                                credit_server, render_server):
    shop = create_org(credit_server, "Shop", 20)
    room, _ = two_carpets(render_server, shop.id)
    render_server.renders.SubmitRender(render_pb2.SubmitRenderRequest(
        organization_id=shop.id, mode="preview", room_image=jpeg(640, 480), floor=line_floor(),
        carpets=[spot(room.sizes[0].id, 50.0, -100.0, 20.0)]), timeout=30)
    page = signed_in_boss(browser, http_gateway, credit_server, shop.id)
    for language, words in (("en", ("measured by a line of 190 cm",
                                    "placed by its real size (a line gives the floor's scale, "
                                    "not its edges)")),
                            ("tr", ("190 cm'lik bir çizgiyle ölçüldü",
                                    "gerçek boyutuyla yerleştirildi (çizgi zeminin ölçeğini "
                                    "verir, kenarlarını değil)"))):
        page.click(f".lang[data-lang={language}]")
        open_screen(page, "renders")
        page.click("#renders tbody button")
        fields = page.locator("#render-detail-fields dd")
        expect(fields.filter(has_text=words[0])).to_have_count(1)
        expect(fields.filter(has_text=words[1])).to_have_count(1)
        # The line drawn over the room picture: the floor's outline has its two points.
        expect(page.locator("#render-room svg.outlines polygon.floor")).to_have_attribute(
            "points", re.compile(r"^[\d.]+,[\d.]+ [\d.]+,[\d.]+$"))
        expect(page.locator("#render-room svg.outlines polygon.carpet")).to_have_count(1)
        page.keyboard.press("Escape")
    page.close()
