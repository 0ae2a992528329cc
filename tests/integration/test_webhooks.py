"""Webhooks through the real services on both engines (`docs/webhooks.md`): endpoints with a secret
shown once, deliveries signed per Standard Webhooks and verified here with the reference
library (`standardwebhooks`, not the project's code), retries with the same webhook-id on the
service's clock, a receiver that never answers or is not there at all, manual retry, render
events relayed from the render service's outbox, and two delivery workers that never send one
delivery twice."""
import functools

import grpc
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from protos.carpet.credit.v1 import audit_pb2, notification_pb2
from tests import builders
from tests.builders import (
    add_endpoint,
    create_carpet,
    create_org,
    deliveries,
    submit,
    wait_final,
    wait_until,
)
from tests.helpers import ADMIN
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.usefixtures("engine")


top_up = functools.partial(builders.adjust, reason="top-up")


def verified(secret, received):
    """What a receiver's Standard Webhooks library makes of the request (raises if forged)."""
    return Webhook(secret).verify(received.body, received.headers)


def test_the_secret_is_shown_once_and_signs_every_delivery(credit_server, start_dispatcher):
    org = create_org(credit_server, "Acme", 10)
    with WebhookReceiver() as receiver:
        created = add_endpoint(credit_server, receiver.url, ["credit.adjusted"], key="hook-1")
        assert created.secret.startswith("whsec_") and created.id == created.endpoint.id
        # A retry of the same call (its answer lost) gets the same endpoint and secret; a list
        # never shows it.
        assert add_endpoint(credit_server, receiver.url, ["credit.adjusted"],
                            key="hook-1") == created
        listed = credit_server.notifications.ListWebhookEndpoints(
            notification_pb2.ListWebhookEndpointsRequest(), metadata=ADMIN, timeout=10)
        assert [endpoint.id for endpoint in listed.endpoints] == [created.id]
        assert created.secret not in str(listed)
        start_dispatcher()
        log = top_up(credit_server, org.id, 5).log
        (request,) = receiver.wait_for(lambda got: len(got) == 1)
    event = verified(created.secret, request)
    assert event["type"] == "credit.adjusted" and event["timestamp"].endswith("Z")
    assert event["data"] == {"organizationId": org.id, "creditLogId": log.id, "delta": 5,
                             "balanceAfter": 15, "reason": "top-up", "actor": "alice",
                             "grantId": log.grant_id}  # credit added is a grant
    assert request.headers["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):  # another endpoint's secret does not verify it
        verified(add_endpoint(credit_server, "http://127.0.0.1:9/x").secret, request)


def test_failed_attempts_are_retried_with_the_same_id(credit_server, start_dispatcher, clock):
    org = create_org(credit_server, "Acme", 10)
    with WebhookReceiver(["status:500", "status:503", "ok"]) as receiver:
        created = add_endpoint(credit_server, receiver.url, ["credit.adjusted"])
        start_dispatcher()
        top_up(credit_server, org.id, 5)

        def recorded(count):  # the attempt is written after the receiver answered it
            wait_until(lambda: len(deliveries(credit_server, created.id)[0].attempt_log)
                       == count)

        recorded(1)
        clock.advance(seconds=4)  # the first retry waits 5 s of the service's clock
        (delivery,) = deliveries(credit_server, created.id)
        assert (delivery.state, delivery.attempts) == ("pending", 1)
        clock.advance(seconds=1)
        recorded(2)
        clock.advance(seconds=60)
        recorded(3)
        got = receiver.events()
    assert len({request.headers["webhook-id"] for request in got}) == 1
    assert len({request.body for request in got}) == 1
    for request in got:
        verified(created.secret, request)
    (delivery,) = deliveries(credit_server, created.id)
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert [attempt.status_code for attempt in delivery.attempt_log] == [500, 503, 200]
    assert delivery.attempt_log[2].response_excerpt == "ok"


def test_a_receiver_that_is_never_there_loses_nothing(credit_server, start_dispatcher, clock):
    """Connection refused on every attempt: the changes go through, every event keeps its
    delivery, attempts follow the schedule and then stop; a manual retry tries once more."""
    org = create_org(credit_server, "Acme", 10)
    created = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["credit.adjusted"])
    start_dispatcher(webhook_retry_schedule_s=(5, 5))
    logs = [top_up(credit_server, org.id, delta).log for delta in (1, 2, 3)]
    assert [log.balance_after for log in logs] == [11, 13, 16]

    def attempts():  # as recorded: each attempt's row is written with its next state
        return sorted((len(delivery.attempt_log), delivery.state)
                      for delivery in deliveries(credit_server, created.id))

    for expected in (1, 2, 3):
        wait_until(lambda expected=expected: attempts() == [
            (expected, "pending" if expected < 3 else "failed")] * 3)
        clock.advance(seconds=5)
    (first, *_) = deliveries(credit_server, created.id)
    assert first.attempt_log[0].status_code == 0
    assert first.attempt_log[0].error == "connection failed: ConnectionRefusedError"
    retried = credit_server.notifications.RetryWebhookDelivery(
        notification_pb2.RetryWebhookDeliveryRequest(id=first.id), metadata=ADMIN, timeout=10)
    assert retried.state == "pending"
    wait_until(lambda: attempts() == [(3, "failed"), (3, "failed"), (4, "failed")])


def test_a_receiver_that_never_answers_times_out(credit_server, start_dispatcher, clock):
    org = create_org(credit_server, "Acme", 10)
    with WebhookReceiver(["hang"]) as receiver:
        created = add_endpoint(credit_server, receiver.url, ["credit.adjusted"])
        start_dispatcher(webhook_timeout_s=1)
        top_up(credit_server, org.id, 1)
        wait_until(lambda: deliveries(credit_server, created.id)[0].attempts == 1
                   and deliveries(credit_server, created.id)[0].attempt_log)
    (delivery,) = deliveries(credit_server, created.id)
    assert delivery.state == "pending"
    assert delivery.attempt_log[0].error == "no complete answer within 1 s"


def test_render_events_come_from_the_render_service(credit_server, render_server,
                                                   start_workers, start_dispatcher):
    org = create_org(credit_server, "Acme", 3)
    carpet = create_carpet(render_server)
    with WebhookReceiver() as receiver:
        created = add_endpoint(credit_server, receiver.url, ["render.succeeded", "render.failed"],
                               organization_id=org.id)
        start_dispatcher()
        start_workers()
        done, _ = wait_final(render_server, submit(render_server, org.id, carpet.id).id)
        with pytest.raises(grpc.RpcError):  # 4 credits, 2 left: kept as a failed job
            submit(render_server, org.id, carpet.id, mode="hd")
        got = receiver.wait_for(lambda got: len(got) == 2)
    events = sorted((verified(created.secret, request) for request in got),
                    key=lambda event: event["data"]["renderId"])
    assert [event["type"] for event in events] == ["render.succeeded", "render.failed"]
    succeeded, failed = (event["data"] for event in events)
    assert (succeeded["renderId"], succeeded["status"], succeeded["creditsCharged"],
            succeeded["renderer"], succeeded["organizationId"]) == (
        done.id, "success", 1, "local", org.id)
    assert (failed["status"], failed["errorText"], failed["mode"]) == (
        "failed", "insufficient credits", "hd")
    assert sorted(request.headers["webhook-id"] for request in got) == sorted(
        f"msg_render_{event['data']['renderId']}" for event in events)


def test_publishing_a_render_event_twice_records_it_once(credit_server):
    org = create_org(credit_server, "Acme", 3)
    created = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["render.succeeded"])
    event = notification_pb2.RenderEvent(job_id=7, type="render.succeeded",
                                         organization_id=org.id, data_json='{"renderId": 7}')
    request = notification_pb2.PublishRenderEventsRequest(events=[event])
    assert credit_server.notifications.PublishRenderEvents(request, timeout=10).recorded == 1
    assert credit_server.notifications.PublishRenderEvents(request, timeout=10).recorded == 0
    assert len(deliveries(credit_server, created.id)) == 1
    with pytest.raises(grpc.RpcError) as refused:  # only the render service publishes
        credit_server.anonymous.notifications.PublishRenderEvents(request, metadata=ADMIN,
                                                                  timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_endpoints_are_checked_and_removed(credit_server):
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for url, events in (("ftp://example.com/x", ["credit.adjusted"]),
                        ("https://user:pw@example.com/x", ["credit.adjusted"]),
                        ("https://example.com/x", []),
                        ("https://example.com/x", ["credit.spent"])):
        with pytest.raises(grpc.RpcError) as refused:
            add_endpoint(credit_server, url, events)
        assert refused.value.code() == invalid, url
    with pytest.raises(grpc.RpcError) as refused:
        add_endpoint(credit_server, "https://example.com/x", organization_id=999)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    created = add_endpoint(credit_server, "https://example.com/x")
    removed = credit_server.notifications.DeleteWebhookEndpoint(
        notification_pb2.DeleteWebhookEndpointRequest(id=created.id), metadata=ADMIN,
        timeout=10)
    assert removed.HasField("deleted_at")
    assert not credit_server.notifications.ListWebhookEndpoints(
        notification_pb2.ListWebhookEndpointsRequest(), metadata=ADMIN, timeout=10).endpoints
    audited = credit_server.audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(),
                                                metadata=ADMIN, timeout=10).audit_logs
    actions = [(row.action.rsplit("/", 1)[1], row.outcome) for row in audited]
    assert ("DeleteWebhookEndpoint", "ok") in actions
    assert ("CreateWebhookEndpoint", "ok") in actions
    assert ("CreateWebhookEndpoint", "error:INVALID_ARGUMENT") in actions
    assert all(created.secret not in row.details for row in audited)


def test_two_delivery_workers_never_send_one_delivery_twice(credit_server, start_dispatcher):
    org = create_org(credit_server, "Acme", 1000)
    with WebhookReceiver() as receiver:
        add_endpoint(credit_server, receiver.url, ["credit.adjusted"])
        start_dispatcher(webhook_concurrency=4)
        start_dispatcher(webhook_concurrency=4)
        for _ in range(40):
            top_up(credit_server, org.id, 1)
        got = receiver.wait_for(lambda got: len(got) >= 40)
        wait_until(lambda: len(receiver.events()) == 40, timeout=2, strict=False)
    ids = [request.headers["webhook-id"] for request in receiver.events()]
    assert len(ids) == 40 and len(set(ids)) == 40, len(got)


def test_render_job_json_data_is_an_object(credit_server):
    bad = notification_pb2.PublishRenderEventsRequest(events=[notification_pb2.RenderEvent(
        job_id=1, type="render.succeeded", organization_id=1, data_json="[1]")])
    with pytest.raises(grpc.RpcError) as refused:
        credit_server.notifications.PublishRenderEvents(bad, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_event_nobody_wants_is_not_kept(credit_server):
    from credit_service.models import WebhookEvent, database

    org = create_org(credit_server, "Acme", 10)
    add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["render.failed"])
    top_up(credit_server, org.id, 5)  # credit.adjusted: no endpoint wants it
    with database.connection_context():
        assert WebhookEvent.select().count() == 0


def test_finished_deliveries_are_forgotten_after_their_retention(credit_server,
                                                                  start_dispatcher, clock):
    """WEBHOOK_DELIVERY_RETENTION: a delivery that ended (delivered, failed, canceled) and is
    older than the retention goes, with its attempts; one still pending stays, and so does its
    event until no delivery needs it."""
    import datetime

    from credit_service.models import WebhookAttempt, WebhookDelivery, WebhookEvent, database
    from credit_service.webhooks import outbox

    org = create_org(credit_server, "Acme", 10)
    with WebhookReceiver(["ok"]) as receiver:
        answered = add_endpoint(credit_server, receiver.url, ["credit.adjusted"])
        absent = add_endpoint(credit_server, "http://127.0.0.1:9/hooks", ["credit.adjusted"])
        start_dispatcher(webhook_retry_schedule_s=(3600,))
        top_up(credit_server, org.id, 5)
        wait_until(lambda: [d.state for d in deliveries(credit_server, answered.id)]
                   == ["delivered"]
                   and [len(d.attempt_log) for d in deliveries(credit_server, absent.id)] == [1])
    with database.connection_context():
        assert outbox.forget_finished(clock()) == 0  # nothing older than the retention
        assert outbox.forget_finished(clock() + datetime.timedelta(seconds=1)) == 1
        (kept,) = WebhookDelivery.select()
        assert (kept.endpoint_id, kept.state) == (absent.id, "pending")
        assert [attempt.delivery_id for attempt in WebhookAttempt.select()] == [kept.id]
        assert WebhookEvent.select().count() == 1  # the pending delivery still needs it
    credit_server.notifications.DeleteWebhookEndpoint(
        notification_pb2.DeleteWebhookEndpointRequest(id=absent.id), metadata=ADMIN, timeout=10)
    with database.connection_context():
        assert outbox.forget_finished(clock() + datetime.timedelta(seconds=1)) == 1  # canceled
        assert (WebhookDelivery.select().count(), WebhookAttempt.select().count(),
                WebhookEvent.select().count()) == (0, 0, 0)
