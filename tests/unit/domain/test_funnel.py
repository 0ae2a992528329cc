"""The shop's funnel as plain functions (render_service.funnel): steps counted per carpet and
day, a sale attributed to the carpet a session (or a render) last showed within 7 days and
counted once per order, the report over every day of its range. The widget's and the
backend's calls that feed it: tests/integration/test_shares_and_leads.py."""
import datetime

import pytest

from carpet_common import errors
from render_service import funnel
from render_service.models import Carpet, FunnelSession, RenderJob

SHOP = 4
SESSION = "visit-0001"


@pytest.fixture
def carpets(render_db):
    return [Carpet.create(sku=sku, name=sku, image=b"png", image_content_type="image/png").id
            for sku in ("K1", "K2")]


def test_steps_are_counted_per_carpet_and_day(carpets, clock):
    kilim, runner = carpets
    for step in ("opened", "photo_added", "rendered"):
        assert funnel.record_page_step(SHOP, kilim, step, SESSION, clock())
    funnel.record_page_step(SHOP, runner, "opened", "visit-0002", clock())
    # Shares and leads are counted where they are made: a page cannot report them.
    assert not funnel.record_page_step(SHOP, kilim, "shared", SESSION, clock())
    clock.advance(days=1)
    funnel.record_page_step(SHOP, kilim, "opened", SESSION, clock())
    funnel.record_page_step(SHOP + 1, kilim, "opened", SESSION, clock())  # another shop
    shown = funnel.report(SHOP, 2, clock().date())
    assert [(day.isoformat(), counts.opened, counts.rendered)
            for day, counts in shown.days.items()] == [("2026-11-25", 2, 1),
                                                        ("2026-11-26", 1, 0)]
    assert (shown.carpets[kilim].opened, shown.carpets[runner].opened, shown.total.opened) == (
        2, 1, 3)
    assert shown.total.shared == 0
    for step, session, message in (("bought", SESSION, "type must be one of"),
                                   ("opened", "", "sessionId is required"),
                                   ("opened", "short", "sessionId must be 8 to 64")):
        with pytest.raises(errors.InvalidArgument, match=message):
            funnel.record_page_step(SHOP, kilim, step, session, clock())
    with pytest.raises(errors.InvalidArgument, match="days must be between 1 and 366"):
        funnel.report(SHOP, 367, clock().date())


def test_a_sale_goes_to_the_carpet_last_shown_within_seven_days_once(carpets, clock):
    kilim, runner = carpets
    funnel.record_page_step(SHOP, kilim, "opened", SESSION, clock())
    funnel.record_page_step(SHOP, runner, "opened", SESSION, clock())  # the last one shown
    sale, new = funnel.record_conversion(SHOP, session_id=SESSION, job_id=0, value=1250.5,
                                         order_id=" A-1 ", now=clock())
    assert (sale.carpet_id, sale.value_cents, sale.order_id, new) == (runner, 125050, "A-1",
                                                                      True)
    again, new = funnel.record_conversion(SHOP, session_id=SESSION, job_id=0, value=1,
                                          order_id="A-1", now=clock())
    assert (again.id, again.value_cents, new) == (sale.id, 125050, False)  # the first report
    job = RenderJob.create(organization_id=SHOP, carpet=kilim, mode="preview", cost=1,
                           status="queued", hold_id=1, created_at=clock())
    by_render, _ = funnel.record_conversion(SHOP, session_id="", job_id=job.id, value=10,
                                            order_id="A-2", now=clock())
    assert by_render.carpet_id == kilim
    clock.advance(days=7, seconds=1)
    for session, job_id in ((SESSION, 0), ("", job.id)):
        with pytest.raises(errors.FailedPrecondition) as late:
            funnel.record_conversion(SHOP, session_id=session, job_id=job_id, value=10,
                                     order_id="A-3", now=clock())
        assert late.value.reason == "NOT_ATTRIBUTABLE"
    with pytest.raises(errors.FailedPrecondition):  # another shop's session is not ours
        funnel.record_conversion(SHOP + 1, session_id=SESSION, job_id=0, value=1, order_id="",
                                 now=clock() - datetime.timedelta(days=7))
    shown = funnel.report(SHOP, 30, clock().date())
    assert (shown.total.conversions, shown.total.conversion_cents) == (2, 126050)
    assert funnel.forget_sessions(clock() - funnel.ATTRIBUTION_WINDOW) == 1
    assert FunnelSession.select().count() == 0


@pytest.mark.parametrize("value,message", [
    (-1, "value must be between 0"), (float("nan"), "value must be between 0"),
    (1e10, "value must be between 0"), (1.005, "at most two decimals"),
])
def test_a_sales_value_is_money(value, message):
    with pytest.raises(errors.InvalidArgument, match=message):
        funnel.value_cents(value)


def test_a_sale_names_its_session_or_its_render(render_db, clock):
    for session, job_id in (("", 0), (SESSION, 5)):
        with pytest.raises(errors.InvalidArgument, match="one of them"):
            funnel.record_conversion(SHOP, session_id=session, job_id=job_id, value=1,
                                     order_id="", now=clock())
    with pytest.raises(errors.InvalidArgument, match="orderId is at most 100"):
        funnel.record_conversion(SHOP, session_id=SESSION, job_id=0, value=1,
                                 order_id="x" * 101, now=clock())
