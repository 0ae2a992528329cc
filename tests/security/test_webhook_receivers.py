"""Webhook receivers that misbehave, against a real credit-service process, and the address
guard, block by block.

- A receiver that answers a byte every half second (each read well within the timeout) is cut
  off at WEBHOOK_TIMEOUT for the whole attempt; it used to hold a delivery for minutes.
- One shop's slow receiver holds at most WEBHOOK_ENDPOINT_CONCURRENCY delivery slots, so
  another shop's delivery goes out while the slow one's backlog is still waiting; it once held
  all eight and another shop waited four minutes.
- IPv6 forms of private IPv4 addresses and every IANA special-purpose block are refused."""
import ipaddress
import select
import socket
import threading
import time

import grpc
import pytest

from credit_service.webhooks.targets import TargetRefused, check_url
from protos.carpet.credit.v1 import (
    credit_pb2,
    credit_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)
from tests.helpers import ADMIN
from tests.security.stack import Deployment
from tests.webhook_receiver import WebhookReceiver

TRICKLE_EVERY_S = 0.5


class TricklingReceiver:
    """Accepts, reads the request, then sends one byte of a never-ending answer every
    TRICKLE_EVERY_S; counts the connections it holds at once and those the sender ended."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hooks"
        self._lock = threading.Lock()
        self.open = self.most_open = self.ended_by_sender = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client):
        with self._lock:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        try:
            client.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100_000
            for byte in answer:
                # Between bytes, notice at once when the sender hangs up.
                readable, _, _ = select.select([client], [], [], TRICKLE_EVERY_S)
                if self._stop.is_set():
                    return
                if readable and not client.recv(1):
                    raise ConnectionResetError
                client.sendall(bytes([byte]))
        except OSError:
            with self._lock:
                self.ended_by_sender += 1
        finally:
            client.close()
            with self._lock:
                self.open -= 1

    def close(self):
        self._stop.set()
        self._listener.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    running = Deployment(tmp_path_factory.mktemp("webhooks"), WEBHOOK_ALLOW_PRIVATE="1",
                         WEBHOOK_TIMEOUT="2s", WEBHOOK_ENDPOINT_CONCURRENCY="2",
                         WEBHOOK_CONCURRENCY="8", WEBHOOK_RETRY_SCHEDULE="1h",
                         modules=("credit_service",)).start()
    yield running
    running.stop()


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_a_trickling_receiver_holds_two_slots_for_one_attempt_each(deployment):
    channel = deployment.channel("CREDIT_ADDR")
    notifications = notification_pb2_grpc.NotificationServiceStub(channel)
    credits = credit_pb2_grpc.CreditServiceStub(channel)
    slow_shop, other_shop = deployment.organization("Slow", 0), deployment.organization("Fast", 0)
    trickling = TricklingReceiver()
    try:
        with WebhookReceiver(["ok"]) as fast:
            slow_endpoint, fast_endpoint = (notifications.CreateWebhookEndpoint(
                notification_pb2.CreateWebhookEndpointRequest(
                    organization_id=shop.id, url=url, events=["credit.adjusted"]),
                metadata=ADMIN, timeout=10) for shop, url in ((slow_shop, trickling.url),
                                                              (other_shop, fast.url)))
            for _ in range(10):  # the slow shop's backlog first
                credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
                    organization_id=slow_shop.id, delta=1, reason="top-up"), metadata=ADMIN,
                    timeout=10)
            wait_until(lambda: trickling.open == 2)
            credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
                organization_id=other_shop.id, delta=1, reason="top-up"), metadata=ADMIN,
                timeout=10)
            fast.wait_for(lambda received: len(received) == 1)

            def attempted():
                return [delivery for delivery in notifications.ListWebhookDeliveries(
                    notification_pb2.ListWebhookDeliveriesRequest(id=slow_endpoint.id),
                    metadata=ADMIN, timeout=10).deliveries if delivery.attempt_log]

            # The other shop was served while most of the slow shop's deliveries had not even
            # been tried: two at a time, each cut off at the attempt's deadline.
            assert len(attempted()) < 10
            wait_until(lambda: len(attempted()) >= 4)
            assert trickling.most_open == 2
            assert trickling.ended_by_sender >= 4
            for delivery in attempted()[:4]:
                assert delivery.attempt_log[0].error == "no complete answer within 2 s"
            assert fast_endpoint.id
    finally:
        trickling.close()


# One address from every special-purpose block, and IPv6 forms of private IPv4 addresses.
REFUSED = [
    "0.0.0.1", "10.1.2.3", "100.64.0.1", "127.0.0.1", "169.254.169.254", "172.16.0.1",
    "192.0.0.8", "192.0.0.170", "192.0.2.1", "192.31.196.1", "192.52.193.1", "192.88.99.1",
    "192.168.1.1", "192.175.48.1", "198.18.0.1", "198.51.100.1", "203.0.113.1", "224.0.0.1",
    "240.0.0.1", "255.255.255.255",
    "::", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::7f00:1",
    "64:ff9b::a00:1", "64:ff9b:1::1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "100::1",
    "2001::1", "2001:2::1", "2001:20::1", "2001:db8::1", "2620:4f:8000::1", "3fff::1",
    "5f00::1", "fc00::1", "fd12::1", "fe80::1", "fec0::1", "ff02::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_addresses_are_refused(address):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused):
        check_url(f"https://{host}/hooks", allow_private=False)


def test_public_addresses_and_their_ipv6_forms_pass():
    for address in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"):
        host = f"[{address}]" if ":" in address else address
        assert check_url(f"https://{host}/hooks", allow_private=False).hostname == \
            str(ipaddress.ip_address(address))


def test_the_credit_service_refuses_ipv6_forms_of_loopback(tmp_path):
    running = Deployment(tmp_path, modules=("credit_service",)).start()
    try:
        notifications = notification_pb2_grpc.NotificationServiceStub(
            running.channel("CREDIT_ADDR"))
        for address in ("[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "192.0.0.8"):
            with pytest.raises(grpc.RpcError) as refused:
                notifications.CreateWebhookEndpoint(
                    notification_pb2.CreateWebhookEndpointRequest(
                        url=f"https://{address}/hooks", events=["credit.adjusted"]),
                    metadata=ADMIN, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, address
    finally:
        running.stop()
