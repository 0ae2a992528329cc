"""The real grpcurl binary against the running gateway (all three processes): listing through
reflection, and GetOverview with and without a token."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import free_port
from tests.helpers import SERVICE_TOKEN
from tests.processes import ServiceProcess, run_cli

TOKEN = "grpcurl-admin-token-0123456789ab"
GRPCURL = os.path.join(os.path.dirname(sys.executable), "grpcurl")


def grpcurl(*args):
    return subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def running_system(tmp_path, credit_db_url, render_db_url):
    env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
           "ADMIN_TOKENS": f"ops:{TOKEN}", "RENDER_STORAGE_DIR": str(tmp_path / "renders"),
           "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "RENDER_ADDR": f"127.0.0.1:{free_port()}",
           "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}", "TRUSTED_PROXIES": "127.0.0.1",
           "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
    assert run_cli("credit_service", "seed", env).returncode == 0
    processes = [ServiceProcess(module, env[variable], env, str(tmp_path / f"{module}.log"))
                 for module, variable in (("credit_service", "CREDIT_ADDR"),
                                          ("render_service", "RENDER_ADDR"),
                                          ("admin_gateway", "ADMIN_GRPC_ADDR"))]
    for process in processes:
        process.start()
    yield env
    for process in reversed(processes):
        process.stop()


@pytest.mark.usefixtures("engine")
def test_grpcurl_lists_and_calls_the_gateway(running_system):
    address = running_system["ADMIN_GRPC_ADDR"]
    listed = grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["carpet.admin.v1.AdminService", "grpc.health.v1.Health",
                                     "grpc.reflection.v1alpha.ServerReflection"]

    refused = grpcurl(address, "carpet.admin.v1.AdminService/GetOverview")
    assert refused.returncode != 0
    assert "Code: Unauthenticated" in refused.stderr

    answered = grpcurl("-H", f"x-admin-token: {TOKEN}", address,
                       "carpet.admin.v1.AdminService/GetOverview")
    assert answered.returncode == 0, answered.stderr
    overview = json.loads(answered.stdout)  # grpcurl prints the proto field names
    # After `seed`: one organisation, its admin user and its 100 credits.
    assert (overview["organizations"], overview["total_users"],
            overview["total_remaining_credit"]) == ("1", "1", "100"), overview

    audit = grpcurl("-H", f"x-admin-token: {TOKEN}", "-d",
                    '{"action": "/carpet.admin.v1.AdminService/GetOverview"}', address,
                    "carpet.admin.v1.AdminService/ListAuditLogs")
    rows = json.loads(audit.stdout)["audit_logs"]
    assert [(row["outcome"], row["peer"]) for row in rows] == [
        ("denied:UNAUTHENTICATED", "127.0.0.1")]


@pytest.mark.usefixtures("engine")
def test_anonymous_attacks_are_refused_and_audited(running_system):
    """The attacks of an anonymous grpcurl on the services' own ports: holding and capturing an
    organisation's credits, reading every user, listing, cancelling, downloading and
    submitting renders. Each is refused with UNAUTHENTICATED, the money is where it was, and
    every refusal is in the audit log; the same calls with the right identity work."""
    credit, render = running_system["CREDIT_ADDR"], running_system["RENDER_ADDR"]
    attacks = [
        (credit, "carpet.credit.v1.CreditService/ReserveCredits",
         '{"organization_id": 1, "amount": 50, "reference": "mine"}'),
        (credit, "carpet.credit.v1.CreditService/CaptureHold", '{"hold_id": 1}'),
        (credit, "carpet.credit.v1.AccountService/BatchGetUsers", '{"ids": [1]}'),
        (render, "carpet.render.v1.RenderService/ListRenders", "{}"),
        (render, "carpet.render.v1.RenderService/CancelRender", '{"id": 1}'),
        (render, "carpet.render.v1.RenderService/GetRenderOutput", '{"id": 1}'),
        (render, "carpet.render.v1.RenderService/SubmitRender",
         '{"organization_id": 1, "carpet_id": 1, "mode": "preview"}'),
    ]
    for address, method, body in attacks:
        refused = grpcurl("-d", body, address, method)
        assert refused.returncode != 0 and "Code: Unauthenticated" in refused.stderr, method

    admin = ("-H", f"x-admin-token: {TOKEN}")
    balance = grpcurl(*admin, "-d", '{"organization_id": 1}', credit,
                      "carpet.credit.v1.CreditService/GetBalance")
    assert json.loads(balance.stdout)["balance"] == "100", balance.stderr
    assert "held" not in json.loads(balance.stdout)  # nothing was held
    audit = grpcurl(*admin, "-d", '{"page_size": 100}', credit,
                    "carpet.credit.v1.AuditService/ListAuditLogs")
    denied = {(row["action"], row["outcome"]) for row in json.loads(audit.stdout)["audit_logs"]
              if row["actor"] == "anonymous"}
    # The first refusals of a caller are written one by one, the rest summarised later.
    assert len(denied) >= 5 and all(outcome == "denied:UNAUTHENTICATED"
                                    for _, outcome in denied), denied
    assert ("/carpet.credit.v1.CreditService/ReserveCredits", "denied:UNAUTHENTICATED") in denied

    # A known service on a method that is not its own: PERMISSION_DENIED.
    web = ("-H", f"x-service-token: {SERVICE_TOKEN['web']}")
    wrong = grpcurl(*web, "-d", '{"organization_id": 1, "amount": 50, "reference": "mine"}',
                    credit, "carpet.credit.v1.CreditService/ReserveCredits")
    assert "Code: PermissionDenied" in wrong.stderr
    # An internal backend's call, as the README shows it.
    listed = grpcurl(*web, render, "carpet.render.v1.RenderService/ListRenders")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {}, listed.stderr
