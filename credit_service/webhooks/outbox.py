"""Endpoints, the event outbox and deliveries, in the credit database.

`record_event` runs inside the caller's transaction (the adjustment, the threshold crossing,
the suspension…): the event and one delivery per subscribed endpoint are committed with the
change or not at all. The dispatcher (webhooks.dispatcher) claims due deliveries with a lease,
sends them and records each attempt here.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from peewee import IntegrityError, fn

from carpet_common import sources
from carpet_common.db import Statement, require_transaction, tuples
from carpet_common.errors import FailedPrecondition, InvalidArgument, NotFound
from carpet_common.paging import Page, paginate
from credit_service.models import (
    DELIVERY_STATES,
    WEBHOOK_EVENT_TYPES,
    Organization,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    database,
)
from credit_service.webhooks import signing
from credit_service.webhooks.targets import Outcome, TargetRefused, check_url

MAX_ENDPOINTS = 100


def _iso(moment: datetime.datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def event_body(event_type: str, data: dict, occurred_at: datetime.datetime) -> str:
    """The JSON every endpoint receives, byte for byte on every attempt."""
    return json.dumps({"type": event_type, "timestamp": _iso(occurred_at), "data": data},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def record_event(event_type: str, organization_id: int, data: dict, now: datetime.datetime,
                 *, event_id: str | None = None,
                 occurred_at: datetime.datetime | None = None) -> bool:
    """Inside the caller's transaction: the event and its deliveries, due now. False when no
    endpoint wants it (nothing is written), or when an event with this id was recorded before
    (a relayed event published twice)."""
    require_transaction(database)
    if event_type not in WEBHOOK_EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    subscribed = [endpoint.id for endpoint in
                  WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.events)
                  .where(WebhookEndpoint.deleted_at.is_null()
                         & (WebhookEndpoint.organization_id.is_null()
                            | (WebhookEndpoint.organization_id == organization_id)))
                  if event_type in endpoint.events.split(",")]
    if not subscribed:
        return False  # nobody listens: nothing to keep (an endpoint added later starts afresh)
    event_id = event_id or f"msg_{sources.unique_hex()}"
    body = event_body(event_type, {"organizationId": organization_id, **data},
                      occurred_at or now)
    try:
        with database.atomic():  # a savepoint: a duplicate rolls back only this insert
            event = WebhookEvent.create(event_id=event_id, type=event_type,
                                        organization_id=organization_id, body=body,
                                        created_at=now)
    except IntegrityError:
        if WebhookEvent.select().where(WebhookEvent.event_id == event_id).exists():
            return False
        raise
    WebhookDelivery.insert_many(
        [{"event": event.id, "endpoint": endpoint_id, "next_attempt_at": now,
          "created_at": now} for endpoint_id in subscribed]).execute()
    return True


# --- endpoints -------------------------------------------------------------------------------

def _clean_events(events) -> str:
    chosen = sorted({event.strip() for event in events if event.strip()})
    unknown = [event for event in chosen if event not in WEBHOOK_EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidArgument("events must name at least one of " + ", ".join(
            WEBHOOK_EVENT_TYPES) + (f" (unknown: {', '.join(unknown)[:200]})" if unknown else ""))
    return ",".join(chosen)


def create_endpoint(organization_id: int, url: str, events, *, allow_private: bool, actor: str,
                    now: datetime.datetime) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its secret (derived from a fresh salt; shown this once)."""
    try:
        check_url(url.strip(), allow_private)
    except TargetRefused as refused:
        raise InvalidArgument(str(refused)) from None
    chosen = _clean_events(events)
    if organization_id and not Organization.select().where(
            Organization.id == organization_id).exists():
        raise NotFound(f"organisation {organization_id} not found")
    live = WebhookEndpoint.select().where(WebhookEndpoint.deleted_at.is_null()).count()
    if live >= MAX_ENDPOINTS:
        raise FailedPrecondition(f"at most {MAX_ENDPOINTS} webhook endpoints")
    endpoint = WebhookEndpoint.create(organization_id=organization_id or None, url=url.strip(),
                                      events=chosen, secret_salt=signing.new_salt(),
                                      created_by=actor, created_at=now)
    return endpoint, signing.endpoint_secret(endpoint.secret_salt)


def list_endpoints(organization_id: int = 0, include_deleted: bool = False
                   ) -> list[WebhookEndpoint]:
    query = WebhookEndpoint.select().order_by(WebhookEndpoint.id.desc())
    if organization_id:
        query = query.where(WebhookEndpoint.organization_id.is_null()
                            | (WebhookEndpoint.organization_id == organization_id))
    if not include_deleted:
        query = query.where(WebhookEndpoint.deleted_at.is_null())
    return list(query)


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def delete_endpoint(endpoint_id: int, now: datetime.datetime) -> WebhookEndpoint:
    """Soft: the endpoint and its delivery log stay readable; pending deliveries are canceled."""
    endpoint = get_endpoint(endpoint_id)
    if endpoint.deleted_at is None:
        (WebhookEndpoint.update(deleted_at=now)
         .where((WebhookEndpoint.id == endpoint_id) & WebhookEndpoint.deleted_at.is_null())
         .execute())
        (WebhookDelivery.update(state="canceled", lease_token=None, lease_until=None)
         .where((WebhookDelivery.endpoint == endpoint_id) & (WebhookDelivery.state == "pending"))
         .execute())
    return get_endpoint(endpoint_id)


# --- deliveries ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


def _views(rows: list[WebhookDelivery]) -> list[DeliveryView]:
    ids = [row.id for row in rows]
    attempts: dict[int, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in ids}
    if ids:
        for attempt in (WebhookAttempt.select().where(WebhookAttempt.delivery.in_(ids))
                        .order_by(WebhookAttempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    return [DeliveryView(row, row.event, attempts[row.id]) for row in rows]


def list_deliveries(endpoint_id: int, page_size: int, page_token: str, state: str = ""
                    ) -> tuple[list[DeliveryView], str]:
    get_endpoint(endpoint_id)
    query = (WebhookDelivery.select(WebhookDelivery, WebhookEvent)
             .join(WebhookEvent).where(WebhookDelivery.endpoint == endpoint_id))
    if state:
        if state not in DELIVERY_STATES:
            raise InvalidArgument("state must be one of " + ", ".join(DELIVERY_STATES))
        query = query.where(WebhookDelivery.state == state)
    page: Page = paginate(query, WebhookDelivery.created_at, WebhookDelivery.id, page_size,
                          page_token)
    return _views(page.rows), page.next_page_token


def get_delivery(delivery_id: int) -> DeliveryView:
    row = (WebhookDelivery.select(WebhookDelivery, WebhookEvent).join(WebhookEvent)
           .where(WebhookDelivery.id == delivery_id).first())
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return _views([row])[0]


def retry_delivery(delivery_id: int, now: datetime.datetime) -> DeliveryView:
    """Due now, with the same event id; after its schedule ran out it gets one more attempt.
    A delivery being sent right now, or to a removed endpoint, is left as it is."""
    view = get_delivery(delivery_id)
    if view.delivery.state == "canceled":
        raise FailedPrecondition("the endpoint of this delivery was removed")
    (WebhookDelivery.update(state="pending", next_attempt_at=now)
     .where((WebhookDelivery.id == delivery_id) & (WebhookDelivery.state != "canceled")
            & (WebhookDelivery.lease_token.is_null()))
     .execute())
    return get_delivery(delivery_id)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    lease_token: str
    attempt: int  # 1 for the first
    url: str
    secret_salt: str
    event_id: str
    body: str


# Due deliveries, at most `per_endpoint` leased per endpoint at any time (counting what every
# replica holds), so one slow receiver cannot take every slot and hold up other shops'
# deliveries. The lease conditions are repeated outside the sub-query: on PostgreSQL a replica
# that waited for another's claim of the same row re-checks them on the row as it now is, and
# skips it. The candidates are the oldest CLAIM_WINDOW due deliveries, so a backlog costs the
# same to look through at any size.
CLAIM_WINDOW = 1000
_CLAIM = Statement("""
    UPDATE webhook_delivery SET lease_token = {token}, lease_until = {lease_until},
                                attempts = attempts + 1
    WHERE id IN (
        SELECT due.id FROM (
            SELECT oldest.id, oldest.endpoint_id, oldest.next_attempt_at,
                   ROW_NUMBER() OVER (PARTITION BY oldest.endpoint_id
                                      ORDER BY oldest.next_attempt_at, oldest.id) AS place
            FROM (SELECT id, endpoint_id, next_attempt_at FROM webhook_delivery
                  WHERE state = 'pending' AND next_attempt_at <= {now}
                    AND (lease_until IS NULL OR lease_until < {now})
                  ORDER BY next_attempt_at LIMIT {window}) AS oldest) AS due
        LEFT JOIN (SELECT endpoint_id, COUNT(*) AS leased FROM webhook_delivery
                   WHERE state = 'pending' AND lease_until >= {now}
                   GROUP BY endpoint_id) AS busy ON busy.endpoint_id = due.endpoint_id
        WHERE due.place + COALESCE(busy.leased, 0) <= {per_endpoint}
        ORDER BY due.next_attempt_at LIMIT {limit})
      AND state = 'pending' AND (lease_until IS NULL OR lease_until < {now})
    RETURNING id""")


def claim_due(limit: int, now: datetime.datetime, lease: datetime.timedelta,
              per_endpoint: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries to this sender, at most `per_endpoint` in flight per
    endpoint. A lease that lapsed (its sender was killed) makes the delivery claimable again,
    so nothing is lost; while it holds, no other replica sends the same delivery."""
    if limit <= 0:
        return []
    token = sources.token_hex(16)
    with database.atomic():
        ids = [row.id for row in _CLAIM.rows(database, token=token, lease_until=now + lease,
                                             now=now, window=CLAIM_WINDOW,
                                             per_endpoint=per_endpoint, limit=limit)]
    if not ids:
        return []
    rows = tuples(WebhookDelivery.select(WebhookDelivery.id, WebhookDelivery.attempts,
                                         WebhookEndpoint.url, WebhookEndpoint.secret_salt,
                                         WebhookEvent.event_id, WebhookEvent.body)
                  .join(WebhookEndpoint).switch(WebhookDelivery).join(WebhookEvent)
                  .where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id))
    return [Claimed(delivery_id, token, attempts, url, salt, event_id, body)
            for delivery_id, attempts, url, salt, event_id, body in rows]


def record_attempt(claimed: Claimed, outcome: Outcome, schedule: tuple[int, ...],
                   now: datetime.datetime) -> str:
    """The attempt's row and the delivery's next state, in one transaction; returns the state.
    Only the holder of the lease moves the delivery."""
    with database.atomic():
        WebhookAttempt.create(delivery=claimed.delivery_id, attempted_at=now,
                              status_code=outcome.status_code, latency_ms=outcome.latency_ms,
                              response_excerpt=outcome.excerpt, error=outcome.error[:500])
        owned = ((WebhookDelivery.id == claimed.delivery_id)
                 & (WebhookDelivery.lease_token == claimed.lease_token))
        changes: dict[str, Any]
        if outcome.delivered:
            changes = {"state": "delivered", "delivered_at": now}
        elif claimed.attempt <= len(schedule):
            wait = datetime.timedelta(seconds=schedule[claimed.attempt - 1])
            changes = {"next_attempt_at": now + wait}
        else:
            changes = {"state": "failed"}
        (WebhookDelivery.update(lease_token=None, lease_until=None, **changes)
         .where(owned & (WebhookDelivery.state == "pending")).execute())
    return changes.get("state", "pending")


FORGET_BATCH = 1000


def forget_finished(before: datetime.datetime, batch: int = FORGET_BATCH) -> int:
    """Deletes finished deliveries (delivered, failed, canceled) created before `before`, with
    their attempts, then events older than that left without any delivery; a batch at a time,
    each one transaction. Replicas may run it at once: a row is deleted once. How many
    deliveries went."""
    finished = WebhookDelivery.state.in_(("delivered", "failed", "canceled"))
    forgotten = 0
    while True:
        with database.atomic():
            ids = [row.id for row in WebhookDelivery.select(WebhookDelivery.id)
                   .where(finished & (WebhookDelivery.created_at < before))
                   .order_by(WebhookDelivery.id).limit(batch)]
            if not ids:
                break
            WebhookAttempt.delete().where(WebhookAttempt.delivery.in_(ids)).execute()
            forgotten += (WebhookDelivery.delete()
                          .where(WebhookDelivery.id.in_(ids) & finished).execute())
    with database.atomic():
        delivered = WebhookDelivery.select(WebhookDelivery.id).where(
            WebhookDelivery.event == WebhookEvent.id)
        (WebhookEvent.delete()
         .where((WebhookEvent.created_at < before) & ~fn.EXISTS(delivered)).execute())
    return forgotten
