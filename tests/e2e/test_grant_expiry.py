"""Grant expiry with two credit-service processes on one PostgreSQL database (`docs/data-rules.md`):
both sweepers see the grant come due, exactly one `expire` row is written, seconds after its
`expiresAt`, and `verify` holds."""
import datetime
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protos.carpet.credit.v1 import credit_pb2
from tests.builders import create_org
from tests.e2e.test_webhook_processes import Stubs, credit_process
from tests.helpers import ADMIN
from tests.processes import run_cli

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_replicas_expire_a_grant_once(tmp_path, credit_db_url):
    replicas = [credit_process(tmp_path, credit_db_url, f"credit-{i}").start() for i in range(2)]
    try:
        stubs = [Stubs(replica.address) for replica in replicas]
        org = create_org(stubs[0], "Acme", 5)
        expires = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + \
            datetime.timedelta(seconds=3)
        stamp = Timestamp()
        stamp.FromDatetime(expires)
        granted = stubs[1].credits.GrantCredits(credit_pb2.GrantCreditsRequest(
            organization_id=org.id, amount=20, kind=credit_pb2.GRANT_KIND_PROMOTIONAL,
            expires_at=stamp, reason="promotion"), metadata=ADMIN, timeout=10)

        def expired():
            return list(stubs[0].credits.ListCreditLogs(credit_pb2.ListCreditLogsRequest(
                organization_id=org.id, kind=credit_pb2.CREDIT_LOG_KIND_EXPIRE),
                metadata=ADMIN, timeout=10).logs)

        deadline = time.monotonic() + 60
        while not expired() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(11)  # two more rounds of both sweepers
        (row,) = expired()
        assert (row.delta, row.grant_id, row.balance_after) == (-20, granted.grant.id, 5)
        lag = row.created_at.ToDatetime() - expires
        assert datetime.timedelta(0) <= lag < datetime.timedelta(seconds=30), lag
        shown = stubs[1].credits.GetBalance(credit_pb2.GetBalanceRequest(
            organization_id=org.id), metadata=ADMIN, timeout=10)
        assert (shown.balance, [grant.remaining for grant in shown.grants]) == (5, [5])
        for replica_stubs in stubs:
            replica_stubs.channel.close()
    except grpc.RpcError as error:
        raise AssertionError(f"{error.code()}: {error.details()}") from None
    finally:
        for replica in replicas:
            replica.stop()
    result = run_cli("credit_service", "verify", {"CREDIT_DATABASE_URL": credit_db_url})
    assert result.returncode == 0, result.stdout + result.stderr
