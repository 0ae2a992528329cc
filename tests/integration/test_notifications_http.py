"""`docs/webhooks.md`'s HTTP paths on the gateway, over real HTTP with the real services behind it:
webhook endpoints (the secret in the creation answer only), deliveries and their retry, alerts,
limits, suspension; the overview's low-balance list; STAFF refused; bad bodies refused."""
import json

import pytest

from tests.builders import TOKEN, create_org, get, staff, wait_until
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("engine")


def call(base, method, path, body=None, headers=TOKEN):
    status, _, raw = get(base, path, headers=headers, method=method, body=body)
    return status, json.loads(raw) if raw else None


def test_webhooks_over_http(http_gateway, credit_server, start_dispatcher):
    org = create_org(credit_server, "Acme", 10)
    with WebhookReceiver(["status:500", "ok"]) as receiver:
        status, created = call(http_gateway, "POST", "/admin/webhooks", {
            "organizationId": str(org.id), "url": receiver.url, "events": ["credit.adjusted"]})
        assert status == 200, created
        assert created["secret"].startswith("whsec_") and created["id"] == created["endpoint"]["id"]
        status, listed = call(http_gateway, "GET", "/admin/webhooks")
        assert status == 200 and [item["id"] for item in listed["endpoints"]] == [created["id"]]
        assert created["secret"] not in json.dumps(listed)
        start_dispatcher(webhook_retry_schedule_s=(3600,))
        status, _ = call(http_gateway, "POST", "/admin/credits/adjust", {
            "organizationId": str(org.id), "delta": "3", "reason": "top-up"})
        assert status == 200
        receiver.wait_for(lambda got: len(got) == 1)
        path = f"/admin/webhooks/{created['id']}/deliveries"

        def first_delivery():
            return call(http_gateway, "GET", path)[1]["deliveries"][0]

        wait_until(lambda: first_delivery()["attemptLog"])
        delivery = first_delivery()
        assert (delivery["state"], delivery["attempts"], delivery["attemptLog"][0]["statusCode"]
                ) == ("pending", 1, 500)
        # The next attempt is an hour away; the admin sends it now.
        status, retried = call(http_gateway, "POST",
                               f"/admin/webhooks/deliveries/{delivery['id']}/retry", {})
        assert status == 200 and retried["state"] == "pending"
        got = receiver.wait_for(lambda got: len(got) == 2)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
    status, removed = call(http_gateway, "DELETE", f"/admin/webhooks/{created['id']}")
    assert status == 200 and removed["deletedAt"]
    assert call(http_gateway, "GET", "/admin/webhooks")[1]["endpoints"] == []
    status, error = call(http_gateway, "POST", "/admin/webhooks", {
        "url": "ftp://example.com", "events": ["credit.adjusted"]})
    assert (status, error["code"]) == (400, "INVALID_ARGUMENT")
    assert call(http_gateway, "GET", "/admin/webhooks/999/deliveries")[0] == 404


def test_alerts_limits_and_suspension_over_http(http_gateway, credit_server):
    org = create_org(credit_server, "Acme", 10)
    base = f"/admin/organizations/{org.id}"
    status, shown = call(http_gateway, "PUT", base + "/alerts", {"lowBalanceThreshold": "20"})
    assert status == 200 and (shown["lowBalanceThreshold"], shown["lowBalance"]) == ("20", True)
    status, shown = call(http_gateway, "PUT", base + "/limits",
                         {"monthlyCredits": "100", "userDailyCredits": "5"})
    assert status == 200
    assert (shown["monthlyCredits"], shown["userDailyCredits"], shown["spentThisMonth"]) == (
        "100", "5", "0")
    status, overview = call(http_gateway, "GET", "/admin/overview")
    assert status == 200
    assert [(row["organizationId"], row["available"]) for row in overview["lowBalance"]] == [
        (str(org.id), "10")]
    status, shown = call(http_gateway, "POST", base + "/suspend", {"reason": "unpaid"})
    assert status == 200 and (shown["suspended"], shown["suspensionReason"]) == (True, "unpaid")
    status, listed = call(http_gateway, "GET", "/admin/organizations/controls")
    assert status == 200
    assert [(row["organizationName"], row["suspended"]) for row in listed["organizations"]
            if row["organizationId"] == str(org.id)] == [("Acme", True)]
    status, shown = call(http_gateway, "POST", base + "/resume", {})
    assert status == 200 and shown["suspended"] is False
    assert call(http_gateway, "PUT", base + "/limits", {"monthlyCredits": "-1"})[0] == 400
    assert call(http_gateway, "PUT", "/admin/organizations/999/alerts",
                {"lowBalanceThreshold": "1"})[0] == 404
    assert call(http_gateway, "GET", base + "/alerts")[0] == 405
    # STAFF manage none of it; the overview shows STAFF only its own organisation's alert.
    clerk = dict(staff(org.id))
    for method, path, body in (("PUT", base + "/alerts", {"lowBalanceThreshold": "1"}),
                               ("POST", base + "/suspend", {"reason": "x"}),
                               ("GET", "/admin/webhooks", None),
                               ("POST", "/admin/webhooks", {"url": "https://example.com",
                                                            "events": ["render.failed"]})):
        assert call(http_gateway, method, path, body, headers=clerk)[0] == 403, path
    status, overview = call(http_gateway, "GET", "/admin/overview", headers=clerk)
    assert status == 200 and [row["organizationId"] for row in overview["lowBalance"]] == [
        str(org.id)]
    other = create_org(credit_server, "Other", 10)
    status, overview = call(http_gateway, "GET", "/admin/overview",
                            headers=dict(staff(other.id)))
    assert status == 200 and overview["lowBalance"] == []
