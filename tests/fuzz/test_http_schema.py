"""The gateway's HTTP API fuzzed by schemathesis against the OpenAPI document it serves itself
(/admin/openapi.json), with the real services behind it on SQLite and PostgreSQL: whatever the
generated path, query and body, no answer is a 5xx, and every answer has a status code and
content type the document declares. FUZZ_EXAMPLES sets the examples per operation."""
from __future__ import annotations

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from tests.builders import create_org, create_user
from tests.fuzz.test_grpc_bad_input import EXAMPLES
from tests.helpers import ADMIN_TOKEN, GATEWAY_TOKEN

pytestmark = pytest.mark.usefixtures("engine")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture
def gateway_base(credit_server, render_server, render_settings):
    """A gateway (rate limit off, so every case reaches the services) with a little data."""
    from admin_gateway.app import start_gateway

    acme = create_org(credit_server, "Acme", 40)
    create_user(credit_server, acme.id, "ada@example.com")
    settings = dataclasses.replace(render_settings, rate_limit_admin="off",
                                   render_addr=f"127.0.0.1:{render_server.port}",
                                   service_token=GATEWAY_TOKEN)
    gateway = start_gateway(settings, "127.0.0.1:0", "127.0.0.1:0")
    yield f"http://127.0.0.1:{gateway.http.port}"
    gateway.stop()


def test_no_server_errors_for_any_generated_request(gateway_base):
    schema = schemathesis.openapi.from_url(f"{gateway_base}/admin/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8  # every JSON path of the gateway is in the document

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def check(case):
            case.call_and_validate(base_url=gateway_base, checks=CHECKS,
                                   headers={"x-admin-token": ADMIN_TOKEN})

        check()
