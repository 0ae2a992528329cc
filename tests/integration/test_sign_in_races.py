"""Sign-in under concurrency, on real servers on SQLite and PostgreSQL: one refresh token used by
many callers at once lets exactly one through and ends the session; wrong passwords sent at
once for one account are refused with exactly five 401s before the lockout answers."""
import threading

import grpc
import pytest

from protos.carpet.credit.v1 import account_pb2, auth_pb2, auth_pb2_grpc
from tests.builders import create_org
from tests.helpers import ADMIN, identified_channel

pytestmark = pytest.mark.usefixtures("engine")
THREADS = 12
PASSWORD = "race-condition-2026"


def all_at_once(call, count):
    """Runs `call(i)` on `count` threads released together; returns the status codes."""
    barrier, codes, lock = threading.Barrier(count), [], threading.Lock()

    def run(index):
        barrier.wait()
        try:
            call(index)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return codes


@pytest.fixture
def sign_in(credit_server):
    """AuthService as the admin gateway calls it, with one user who has a password."""
    organization = create_org(credit_server, "Racers", 0)
    credit_server.accounts.CreateUser(account_pb2.CreateUserRequest(
        organization_id=organization.id, name="Racer", email="racer@example.com",
        role=account_pb2.ROLE_STAFF, password=PASSWORD), metadata=ADMIN, timeout=30)
    channel = identified_channel(credit_server.port, "admin-gateway")
    yield auth_pb2_grpc.AuthServiceStub(channel)
    channel.close()


def test_one_refresh_token_used_at_once_lets_one_through_and_ends_the_session(sign_in):
    session = sign_in.Login(auth_pb2.LoginRequest(email="racer@example.com", password=PASSWORD,
                                                  client_ip="192.0.2.10"), timeout=30)
    winners = []

    def refresh(_index):
        winners.append(sign_in.Refresh(auth_pb2.RefreshRequest(
            refresh_token=session.refresh_token), timeout=30))

    codes = all_at_once(refresh, THREADS)
    assert sorted(code.name for code in codes) == \
        ["OK"] + ["UNAUTHENTICATED"] * (THREADS - 1)
    # The losers presented a spent token: the whole session ended, the winner's pair with it.
    with pytest.raises(grpc.RpcError) as ended:
        sign_in.Refresh(auth_pb2.RefreshRequest(refresh_token=winners[0].refresh_token),
                        timeout=30)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    revoked = sign_in.ListRevokedSessions(auth_pb2.ListRevokedSessionsRequest(), timeout=10)
    assert len(revoked.session_ids) == 1


def test_wrong_passwords_at_once_meet_the_lockout_after_exactly_five(sign_in):
    def wrong(index):
        sign_in.Login(auth_pb2.LoginRequest(email="racer@example.com",
                                            password=f"wrong-password-{index:02d}",
                                            client_ip=f"198.51.100.{index + 1}"), timeout=60)

    codes = all_at_once(wrong, THREADS)
    assert sorted(code.name for code in codes) == \
        ["RESOURCE_EXHAUSTED"] * (THREADS - 5) + ["UNAUTHENTICATED"] * 5
