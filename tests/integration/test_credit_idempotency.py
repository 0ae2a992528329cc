"""Idempotency keys: same key + same request = the first result, stored so it survives a
restart; same key + another request = ALREADY_EXISTS / IDEMPOTENCY_KEY_REUSED."""
import concurrent.futures

import grpc
import pytest

from credit_service.app import build_server
from credit_service.verify import verify_credit
from protos.carpet.credit.v1 import account_pb2, credit_pb2
from tests.builders import adjust, balance, create_org, expect_error
from tests.helpers import ADMIN, credit_stubs, service_settings

pytestmark = pytest.mark.usefixtures("engine")


def test_adjust_replay_and_mismatch(credit_server):
    org = create_org(credit_server, "Acme", 10)
    first = adjust(credit_server, org.id, 5, "bonus", key="adj-1")
    replay = adjust(credit_server, org.id, 5, "bonus", key="adj-1")
    assert replay == first
    assert balance(credit_server, org.id).balance == 15
    expect_error(lambda: adjust(credit_server, org.id, 6, "bonus", key="adj-1"),
                 grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    expect_error(lambda: adjust(credit_server, org.id, 5, "other reason", key="adj-1"),
                 grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert balance(credit_server, org.id).balance == 15
    expect_error(lambda: adjust(credit_server, org.id, 5, "bonus", key="k" * 201),
                 grpc.StatusCode.INVALID_ARGUMENT)
    assert verify_credit() == []


def test_a_key_names_one_request_of_one_method(credit_server):
    """The same key for another organisation is another request (never organisation A's
    answer replayed to B); on another method it is that method's own key."""
    acme, other = create_org(credit_server, "Acme", 10), create_org(credit_server, "Other", 10)
    adjust(credit_server, acme.id, 5, "bonus", key="shared-1")
    expect_error(lambda: adjust(credit_server, other.id, 5, "bonus", key="shared-1"),
                 grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    granted = credit_server.credits.GrantCredits(credit_pb2.GrantCreditsRequest(
        organization_id=other.id, amount=5, kind=credit_pb2.GRANT_KIND_PAID, reason="bonus",
        idempotency_key="shared-1"), metadata=ADMIN, timeout=10)
    assert granted.log.organization_id == other.id and granted.log.delta == 5
    assert (balance(credit_server, acme.id).balance,
            balance(credit_server, other.id).balance) == (15, 15)
    assert verify_credit() == []


def test_create_calls_replay(credit_server):
    request = account_pb2.CreateOrganizationRequest(name="Acme", initial_credits=4,
                                                    idempotency_key="org-1")
    first = credit_server.accounts.CreateOrganization(request, metadata=ADMIN, timeout=10)
    assert credit_server.accounts.CreateOrganization(request, metadata=ADMIN,
                                                     timeout=10) == first
    user_request = account_pb2.CreateUserRequest(
        organization_id=first.id, name="Ada", email="ada@example.com",
        role=account_pb2.ROLE_STAFF, idempotency_key="user-1")
    user = credit_server.accounts.CreateUser(user_request, metadata=ADMIN, timeout=10)
    assert credit_server.accounts.CreateUser(user_request, metadata=ADMIN, timeout=10) == user
    user_request.email = "bob@example.com"
    expect_error(lambda: credit_server.accounts.CreateUser(user_request, metadata=ADMIN,
                                                           timeout=10),
                 grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")


def test_replay_survives_a_restart(credit_db, clock):
    running, port = build_server(service_settings(), "127.0.0.1:0", clock=clock)
    stubs = credit_stubs(port)
    org = create_org(stubs, "Acme", 10)
    first = adjust(stubs, org.id, 5, "bonus", key="adj-restart")
    stubs.channel.close()
    running.stop(grace=1)

    running, port = build_server(service_settings(), "127.0.0.1:0", clock=clock)
    stubs = credit_stubs(port)
    try:
        assert adjust(stubs, org.id, 5, "bonus", key="adj-restart") == first
        assert balance(stubs, org.id).balance == 15
    finally:
        stubs.channel.close()
        running.stop(grace=1)


def test_concurrent_calls_with_one_key_apply_once(credit_server):
    org = create_org(credit_server, "Acme", 0)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: adjust(credit_server, org.id, 3, "once", key="same"),
                                range(32)))
    assert len({result.log.id for result in results}) == 1
    assert balance(credit_server, org.id).balance == 3
    logs = credit_server.credits.ListCreditLogs(
        credit_pb2.ListCreditLogsRequest(organization_id=org.id,
                                         kind=credit_pb2.CREDIT_LOG_KIND_ADJUST),
        metadata=ADMIN, timeout=10).logs
    assert len(logs) == 1
    assert verify_credit() == []
