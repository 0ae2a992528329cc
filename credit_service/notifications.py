"""gRPC servicer of carpet.credit.v1.NotificationService: webhook endpoints and deliveries, the
low-balance alert, spend limits and suspension (`docs/webhooks.md`). Parse, call one domain
function, build the response; every change is an audited, idempotent unit
(credit_service.audited)."""
from __future__ import annotations

import json

from carpet_common.calls import current_principal, who_calls
from carpet_common.convert import timestamp
from carpet_common.errors import InvalidArgument
from credit_service import controls
from credit_service.audited import Change, audited
from credit_service.models import WebhookEndpoint, database
from credit_service.servicer import Clock
from credit_service.webhooks import outbox, signing
from protos.carpet.credit.v1 import notification_pb2, notification_pb2_grpc

MAX_PUBLISHED = 500
MAX_EVENT_DATA = 16 * 1024
# What the render service relays from its outboxes.
RELAYED_EVENT_TYPES = ("render.succeeded", "render.failed", "lead.created")


def endpoint_message(row: WebhookEndpoint) -> notification_pb2.WebhookEndpoint:
    return notification_pb2.WebhookEndpoint(
        id=row.id, organization_id=row.organization_id or 0, url=row.url,
        events=row.events.split(","), created_at=timestamp(row.created_at),
        created_by=row.created_by, deleted_at=timestamp(row.deleted_at))


def delivery_message(view: outbox.DeliveryView) -> notification_pb2.WebhookDelivery:
    row = view.delivery
    return notification_pb2.WebhookDelivery(
        id=row.id, endpoint_id=row.endpoint_id, event_id=view.event.event_id,
        event_type=view.event.type, state=row.state, attempts=row.attempts,
        next_attempt_at=timestamp(row.next_attempt_at if row.state == "pending" else None),
        created_at=timestamp(row.created_at), delivered_at=timestamp(row.delivered_at),
        organization_id=view.event.organization_id,
        attempt_log=[notification_pb2.WebhookAttempt(
            attempted_at=timestamp(attempt.attempted_at), status_code=attempt.status_code,
            latency_ms=attempt.latency_ms, response_excerpt=attempt.response_excerpt,
            error=attempt.error) for attempt in view.attempts])


def controls_message(view: controls.Controls) -> notification_pb2.OrganizationControls:
    return notification_pb2.OrganizationControls(
        organization_id=view.organization_id, organization_name=view.organization_name,
        low_balance_threshold=view.low_balance_threshold, low_balance=view.low_balance,
        monthly_credits=view.monthly_credits, user_daily_credits=view.user_daily_credits,
        spent_this_month=view.spent_this_month, suspended=view.suspended_at is not None,
        suspension_reason=view.suspension_reason, suspended_at=timestamp(view.suspended_at),
        available=view.available)


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, clock: Clock, *, allow_private: bool):
        self._clock = clock
        self._allow_private = allow_private

    # --- webhook endpoints --------------------------------------------------------------

    def CreateWebhookEndpoint(self, request, context):
        def create(change: Change):
            endpoint, secret = outbox.create_endpoint(
                request.organization_id, request.url, request.events,
                allow_private=self._allow_private, actor=current_principal().actor,
                now=self._clock())
            # Stored (and replayed) without its secret, which would then be in the database.
            change.done(notification_pb2.CreatedWebhookEndpoint(
                id=endpoint.id, endpoint=endpoint_message(endpoint)),
                target=f"webhook_endpoint:{endpoint.id}")
            return notification_pb2.CreatedWebhookEndpoint(
                id=endpoint.id, secret=secret, endpoint=endpoint_message(endpoint))

        def replay(stored: bytes):
            """The same key gets the same secret again, derived from the endpoint's salt."""
            created = notification_pb2.CreatedWebhookEndpoint.FromString(stored)
            created.secret = signing.endpoint_secret(outbox.get_endpoint(created.id).secret_salt)
            return created

        return audited(request, create, who=who_calls(), replay=replay,
                       organization_id=request.organization_id or None,
                       target="webhook_endpoint")

    def ListWebhookEndpoints(self, request, context):
        return notification_pb2.ListWebhookEndpointsResponse(endpoints=[
            endpoint_message(row) for row in outbox.list_endpoints(request.organization_id,
                                                                   request.include_deleted)])

    def DeleteWebhookEndpoint(self, request, context):
        def delete(change: Change):
            endpoint = outbox.delete_endpoint(request.id, self._clock())
            return change.done(endpoint_message(endpoint), organization_id=endpoint.organization_id,
                               target=f"webhook_endpoint:{endpoint.id}")

        return audited(request, delete, who=who_calls(), target=f"webhook_endpoint:{request.id}")

    def ListWebhookDeliveries(self, request, context):
        views, next_token = outbox.list_deliveries(request.id, request.page_size,
                                                   request.page_token, request.state)
        return notification_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_message(view) for view in views], next_page_token=next_token)

    def RetryWebhookDelivery(self, request, context):
        def retry(change: Change):
            view = outbox.retry_delivery(request.id, self._clock())
            return change.done(delivery_message(view),
                               organization_id=view.event.organization_id,
                               target=f"webhook_delivery:{request.id}")

        return audited(request, retry, who=who_calls(), target=f"webhook_delivery:{request.id}")

    # --- organisation controls ----------------------------------------------------------

    def _controls_change(self, request, apply):
        """An audited change of one organisation's controls, answering its controls after."""
        target = f"organization:{request.id}"
        def change_controls(change: Change):
            apply()
            return change.done(controls_message(controls.get_controls(request.id,
                                                                      self._clock())),
                               target=target)

        return audited(request, change_controls, who=who_calls(),
                       replay=notification_pb2.OrganizationControls.FromString,
                       organization_id=request.id, target=target)

    def SetLowBalanceAlert(self, request, context):
        return self._controls_change(request, lambda: controls.set_low_balance_threshold(
            request.id, request.low_balance_threshold, self._clock()))

    def SetSpendLimits(self, request, context):
        return self._controls_change(request, lambda: controls.set_spend_limits(
            request.id, request.monthly_credits, request.user_daily_credits))

    def SuspendOrganization(self, request, context):
        return self._controls_change(request, lambda: controls.suspend(
            request.id, request.reason, self._clock()))

    def ResumeOrganization(self, request, context):
        return self._controls_change(request, lambda: controls.resume(request.id))

    def GetOrganizationControls(self, request, context):
        organization_id = current_principal().check_organization(request.id)
        return controls_message(controls.get_controls(organization_id, self._clock()))

    def ListOrganizationControls(self, request, context):
        return notification_pb2.ListOrganizationControlsResponse(organizations=[
            controls_message(view) for view in controls.list_controls(
                self._clock(), low_balance_only=request.low_balance_only)])

    # --- the render service's outbox ----------------------------------------------------

    def PublishRenderEvents(self, request, context):
        if len(request.events) > MAX_PUBLISHED:
            raise InvalidArgument(f"at most {MAX_PUBLISHED} events per call")
        parsed = []
        for event in request.events:
            if event.type == "lead.created" and event.lead_id <= 0:
                raise InvalidArgument("a lead.created event names its lead")
            if event.type not in RELAYED_EVENT_TYPES or event.job_id <= 0:
                raise InvalidArgument("events must be render.succeeded, render.failed or "
                                      "lead.created, about a job")
            try:
                data = json.loads(event.data_json) if len(event.data_json) <= MAX_EVENT_DATA \
                    else None
            except json.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                raise InvalidArgument(f"data_json of job {event.job_id} must be a JSON object "
                                      f"of at most {MAX_EVENT_DATA} bytes")
            parsed.append((event, data))
        now, recorded = self._clock(), 0
        with database.atomic():
            for event, data in parsed:
                recorded += outbox.record_event(
                    event.type, event.organization_id, data, now,
                    event_id=(f"msg_lead_{event.lead_id}" if event.type == "lead.created"
                              else f"msg_render_{event.job_id}"),
                    occurred_at=event.occurred_at.ToDatetime())
        return notification_pb2.PublishRenderEventsResponse(recorded=recorded)
