"""A flood of refused calls from one IPv6 subscriber, each from a new address of its /64,
against the real gateway behind a trusted proxy (TRUSTED_PROXIES=127.0.0.1, which passes each
client's address on): the refusals are audited as one caller's, a few rows and a summary,
instead of one row per address (2,599 calls once made 2,633 rows)."""
import urllib.error
import urllib.request

import pytest

from carpet_common.denials import WRITTEN_PER_WINDOW
from protos.carpet.credit.v1 import audit_pb2, audit_pb2_grpc
from tests.helpers import ADMIN
from tests.security.stack import Deployment

FLOOD = 300


@pytest.fixture
def deployment(tmp_path):
    running = Deployment(tmp_path, TRUSTED_PROXIES="127.0.0.1", RATE_LIMIT_ADMIN="off").start()
    yield running
    running.stop()


def test_a_slash_64_is_one_caller_for_the_refusal_summary(deployment):
    for index in range(FLOOD):
        request = urllib.request.Request(
            f"{deployment.http}/admin/overview",
            headers={"X-Forwarded-For": f"2001:db8:1:2::{index + 1:x}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    audit = audit_pb2_grpc.AuditServiceStub(deployment.channel("CREDIT_ADDR"))
    rows = audit.ListAuditLogs(audit_pb2.ListAuditLogsRequest(page_size=500), metadata=ADMIN,
                               timeout=10).audit_logs
    flood_rows = [row for row in rows if row.peer.startswith("2001:db8:1:2:")]
    # The first few one by one; the rest wait for the window's one summary row.
    assert len(flood_rows) == WRITTEN_PER_WINDOW
    assert {row.outcome for row in flood_rows} == {"denied:UNAUTHENTICATED"}
