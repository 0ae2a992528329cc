"""The webhook scenarios' surroundings: a steady trickle of adjustments (each a
`credit.adjusted` event), with or without an endpoint subscribed to every event at a receiver
that accepts connections and never answers, so that with it the credit service's delivery
workers sit in timeouts while the hot paths are measured."""
from __future__ import annotations

import contextlib
import socket
import threading

import grpc

from protos.carpet.credit.v1 import (
    credit_pb2,
    credit_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)

EVENTS = ["render.succeeded", "render.failed", "credit.adjusted", "credit.low_balance",
          "credit.spend_limit_reached", "organization.suspended"]
ADJUSTMENTS_PER_S = 10


class DeadReceiver:
    """Accepts every connection and holds it without reading or answering."""

    def __init__(self):
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(512)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/hooks"

    def _accept(self) -> None:
        self._socket.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in self._held:
            connection.close()
        self._socket.close()


@contextlib.contextmanager
def event_trickle(config: dict, *, dead_webhook: bool):
    """While the block runs: ADJUSTMENTS_PER_S adjustments (each an event), and with
    `dead_webhook` an endpoint for every event at a receiver that never answers. The scenarios
    run once each way, so the only difference between the two is the webhook."""
    receiver = DeadReceiver() if dead_webhook else None
    admin = (("x-admin-token", config["admin_token"]),)
    channel = grpc.insecure_channel(config["address"])  # as the admin (the token below)
    notifications = notification_pb2_grpc.NotificationServiceStub(channel)
    credits = credit_pb2_grpc.CreditServiceStub(channel)
    endpoint = notifications.CreateWebhookEndpoint(
        notification_pb2.CreateWebhookEndpointRequest(url=receiver.url, events=EVENTS),
        metadata=admin, timeout=10) if receiver else None
    stop = threading.Event()
    organization = config["spread_organizations"][0]

    def adjust() -> None:
        while not stop.wait(1 / ADJUSTMENTS_PER_S):
            credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
                organization_id=organization, delta=1, reason="bench event"),
                metadata=admin, timeout=10)

    adjuster = threading.Thread(target=adjust, daemon=True)
    adjuster.start()
    try:
        yield
    finally:
        stop.set()
        adjuster.join(10)
        if endpoint is not None:
            notifications.DeleteWebhookEndpoint(
                notification_pb2.DeleteWebhookEndpointRequest(id=endpoint.id), metadata=admin,
                timeout=10)
        channel.close()
        if receiver is not None:
            receiver.close()
