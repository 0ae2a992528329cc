"""Webhooks with real service processes and kill -9 (`docs/webhooks.md`): an attempt cut off by a
killed credit service is sent again after restart with the same webhook-id; two credit-service
replicas on one PostgreSQL database, one of them killed mid-run, deliver every event, and never
send one event twice at the same time."""
import threading
import time
from itertools import pairwise

import grpc
import pytest
from standardwebhooks import Webhook

from protos.carpet.credit.v1 import (
    account_pb2_grpc,
    credit_pb2,
    credit_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
)
from tests.builders import create_org
from tests.conftest import free_port
from tests.helpers import ADMIN, ADMIN_TOKEN
from tests.processes import ServiceProcess
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.timeout(300)


def credit_process(tmp_path, credit_db_url, name="credit"):
    port = free_port()
    return ServiceProcess("credit_service", f"127.0.0.1:{port}", {
        "CREDIT_DATABASE_URL": credit_db_url, "CREDIT_ADDR": f"127.0.0.1:{port}",
        "ADMIN_TOKENS": f"alice:{ADMIN_TOKEN}", "WEBHOOK_ALLOW_PRIVATE": "1",
        "WEBHOOK_TIMEOUT": "2s", "WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s,1s,1s,1s,1s,1s",
    }, str(tmp_path / f"{name}.log"))


class Stubs:
    def __init__(self, address):
        self.channel = grpc.insecure_channel(address)
        self.accounts = account_pb2_grpc.AccountServiceStub(self.channel)
        self.credits = credit_pb2_grpc.CreditServiceStub(self.channel)
        self.notifications = notification_pb2_grpc.NotificationServiceStub(self.channel)


def add_endpoint(stubs, url):
    return stubs.notifications.CreateWebhookEndpoint(
        notification_pb2.CreateWebhookEndpointRequest(url=url, events=["credit.adjusted"]),
        metadata=ADMIN, timeout=10)


def adjust(stubs, organization_id, key):
    return stubs.credits.AdjustCredits(credit_pb2.AdjustCreditsRequest(
        organization_id=organization_id, delta=1, reason="webhook test", idempotency_key=key),
        metadata=ADMIN, timeout=10)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_an_attempt_cut_off_by_kill_9_is_sent_again_after_restart(tmp_path, credit_db_url):
    service = credit_process(tmp_path, credit_db_url).start()
    try:
        stubs = Stubs(service.address)
        org = create_org(stubs, "Acme", 10)
        # The first attempt reaches a receiver that holds it without answering: the service
        # is killed while the attempt is in flight, before any outcome is recorded.
        with WebhookReceiver(["hang", "ok"]) as receiver:
            created = add_endpoint(stubs, receiver.url)
            adjust(stubs, org.id, "cut-1")
            receiver.wait_for(lambda got: len(got) == 1)
            service.kill()
            stubs.channel.close()
            service.start()
            got = receiver.wait_for(lambda got: len(got) == 2, timeout=60)
        assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]
        event = Webhook(created.secret).verify(got[1].body, got[1].headers)
        assert event["data"]["delta"] == 1
        stubs = Stubs(service.address)
        (delivery,) = stubs.notifications.ListWebhookDeliveries(
            notification_pb2.ListWebhookDeliveriesRequest(id=created.id), metadata=ADMIN,
            timeout=10).deliveries
        # The cut attempt left no outcome; the one after restart is recorded as delivered.
        assert (delivery.state, [a.status_code for a in delivery.attempt_log]) == (
            "delivered", [200])
        stubs.channel.close()
    finally:
        service.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_replicas_deliver_every_event_once_at_a_time(tmp_path, credit_db_url):
    replicas = [credit_process(tmp_path, credit_db_url, f"credit-{i}").start() for i in range(2)]
    try:
        stubs = [Stubs(replica.address) for replica in replicas]
        org = create_org(stubs[0], "Acme", 10)
        with WebhookReceiver(fail_every=4) as receiver:  # every 4th attempt answers 503
            created = add_endpoint(stubs[0], receiver.url)
            keys = [f"event-{i}" for i in range(60)]
            acknowledged = []

            def load(replica_stubs, share):
                for key in share:
                    try:
                        adjust(replica_stubs, org.id, key)
                        acknowledged.append(key)
                    except grpc.RpcError:
                        pass  # the killed replica's calls fail; the other's go through

            threads = [threading.Thread(target=load, args=(stubs[i], keys[i::2]))
                       for i in range(2)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            replicas[0].kill()  # mid-run, with deliveries in its hands
            for thread in threads:
                thread.join(60)
            replicas[0].start()

            def settled(got):
                # Every acknowledged change delivered, and every event seen so far delivered
                # too: a change committed while its replica was killed (so never acknowledged)
                # may still be between a refused attempt and its retry.
                ok = {r.headers["webhook-id"] for r in got if r.status == 200}
                return len(ok) >= len(acknowledged) and ok == {
                    r.headers["webhook-id"] for r in got}

            delivered = receiver.wait_for(settled, timeout=120)
        by_id: dict[str, list] = {}
        for request in delivered:
            Webhook(created.secret).verify(request.body, request.headers)
            by_id.setdefault(request.headers["webhook-id"], []).append(request)
        reasons = {request.event["data"]["creditLogId"] for request in delivered}
        assert len(reasons) == len(by_id) >= len(acknowledged)  # one id per adjustment
        for requests in by_id.values():
            assert any(request.status == 200 for request in requests)
            # Attempts of one event come one after another, never two at once: a retry is
            # scheduled at least a second after the attempt before it was answered.
            arrivals = sorted(request.arrived for request in requests)
            assert all(later - earlier >= 0.5 for earlier, later in pairwise(arrivals))
        for replica_stubs in stubs:
            replica_stubs.channel.close()
    finally:
        for replica in replicas:
            replica.stop()
