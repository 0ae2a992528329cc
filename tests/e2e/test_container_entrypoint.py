"""The container image's commands (`Containerfile`, `carpet_common/entrypoint.py`), run as the
image runs them but outside a container (no container engine runs on the build machine; the
image build itself is not tried here, `docs/operations.md` says so): secrets read from files
through `<NAME>_FILE`, `setup` migrating and seeding PostgreSQL, the three services started by
their one-word commands with mTLS on their ports and a plaintext health-only listener on
HEALTH_ADDR for probes, `healthcheck` as compose runs it, `verify`, and SIGTERM turning a
probe NOT_SERVING before the process exits 0."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc
from tests.conftest import free_port
from tests.e2e.test_operations_guide import SHARED_NAME, tls_channel
from tests.helpers import AUDIT_HMAC_KEY, SERVICE_TOKEN, SERVICE_TOKENS
from tests.pki import make_pki
from tests.processes import ROOT, wait_serving

ADMIN = "ops-container-token-0123456789abc"


def entrypoint(*args, env, **options):
    return [sys.executable, "-m", "carpet_common.entrypoint", *args], \
        dict(env=env, cwd=ROOT, **options)


def run(*args, env):
    command, options = entrypoint(*args, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **options)


def secret_files(directory, **secrets):
    """Each secret in a file of its own, named by `<NAME>_FILE` (how compose and Kubernetes
    mount them)."""
    directory.mkdir(mode=0o700)
    env = {}
    for name, value in secrets.items():
        path = directory / name.lower()
        path.write_text(value + "\n")
        env[f"{name}_FILE"] = str(path)
    return env


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_images_commands_run_the_system(tmp_path, credit_db_url, render_db_url):
    pki = make_pki(tmp_path, {name: (name, f"spiffe://carpet/{name}", SHARED_NAME)
                              for name in ("credit", "render", "admin-gateway", "ada")})
    ports = {name: free_port() for name in ("credit", "render", "gateway", "http",
                                           "credit_health", "render_health", "gateway_health")}
    shared = {key: value for key, value in os.environ.items()
              if key not in ("ADMIN_TOKENS", "SERVICE_TOKENS", "AUDIT_HMAC_KEY")}
    shared.update(secret_files(
        tmp_path / "secrets", CREDIT_DATABASE_URL=credit_db_url,
        RENDER_DATABASE_URL=render_db_url, ADMIN_TOKENS=f"ops:{ADMIN}",
        SERVICE_TOKENS=SERVICE_TOKENS, AUDIT_HMAC_KEY=AUDIT_HMAC_KEY,
        SEED_ADMIN_PASSWORD="first-admin-passw0rd"))
    shared.update({
        "CREDIT_ADDR": f"127.0.0.1:{ports['credit']}",
        "RENDER_ADDR": f"127.0.0.1:{ports['render']}",
        "ADMIN_GRPC_ADDR": f"127.0.0.1:{ports['gateway']}",
        "ADMIN_HTTP_ADDR": f"127.0.0.1:{ports['http']}", "TLS_CLIENT_CA": pki["ca"],
        "TLS_SERVER_NAME": SHARED_NAME, "RENDER_STORAGE_DIR": str(tmp_path / "renders"),
        "LOG_FORMAT": "json", "SEED_ORG_NAME": "Konteyner Halı"})

    # A secret both in the environment and in a file: refused, naming the setting only.
    refused = run("verify", env={**shared, "ADMIN_TOKENS": f"ops:{ADMIN}"})
    assert refused.returncode == 2 and "set ADMIN_TOKENS or ADMIN_TOKENS_FILE, not both" \
        in refused.stderr and ADMIN not in refused.stderr + refused.stdout
    unknown = run("serve", env=shared)
    assert unknown.returncode == 2 and unknown.stderr.startswith("usage: credit | render")

    setup = run("setup", env=shared)
    assert setup.returncode == 0, setup.stderr
    assert run("setup", env=shared).returncode == 0  # again: nothing changes

    processes = {}
    try:
        for name, identity in (("credit", "credit"), ("render", "render"),
                               ("gateway", "admin-gateway")):
            env = {**shared, "TLS_CERT": pki[f"{identity}_cert"],
                   "TLS_KEY": pki[f"{identity}_key"],
                   "HEALTH_ADDR": f"127.0.0.1:{ports[name + '_health']}"}
            if identity in SERVICE_TOKEN:
                token_file = tmp_path / "secrets" / f"{name}_token"
                token_file.write_text(SERVICE_TOKEN[identity])
                env["SERVICE_TOKEN_FILE"] = str(token_file)
            command, options = entrypoint(name, env=env, stderr=subprocess.STDOUT,
                                          stdout=open(tmp_path / f"{name}.log", "w"))  # noqa: SIM115
            processes[name] = subprocess.Popen(command, **options)
            wait_serving(f"127.0.0.1:{ports[name + '_health']}", timeout=60)

        # The health listener is plaintext and serves health alone; the service's own port
        # takes TLS with a client certificate only.
        for name in ("credit", "render", "gateway"):
            checked = run("healthcheck", f"127.0.0.1:{ports[name + '_health']}", env=shared)
            assert (checked.returncode, checked.stdout) == (0, "healthcheck: SERVING\n")
        with grpc.insecure_channel(f"127.0.0.1:{ports['credit_health']}") as probe:
            with pytest.raises(grpc.RpcError) as raised:
                credit_pb2_grpc.CreditServiceStub(probe).GetBalance(
                    credit_pb2.GetBalanceRequest(organization_id=1), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{ports['credit']}") as plaintext:
            with pytest.raises(grpc.RpcError) as raised:
                health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        with tls_channel(pki, "ada")(f"127.0.0.1:{ports['credit']}") as secured:
            assert credit_pb2_grpc.CreditServiceStub(secured).GetBalance(
                credit_pb2.GetBalanceRequest(organization_id=1), timeout=10,
                metadata=(("x-admin-token", ADMIN),)).balance == 100

        # Through the gateway, which reached both services over mTLS with its own identity.
        request = urllib.request.Request(f"http://127.0.0.1:{ports['http']}/admin/overview",
                                         headers={"x-admin-token": ADMIN})
        with urllib.request.urlopen(request, timeout=30) as response:
            overview = json.load(response)
        assert (overview["organizations"], overview["totalRemainingCredit"]) == ("1", "100")
        verified = run("verify", env=shared)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        # SIGTERM (a rollout): the probe says NOT_SERVING, then the process exits 0.
        gateway = processes.pop("gateway")
        gateway.send_signal(signal.SIGTERM)
        deadline, states = time.monotonic() + 30, set()
        while gateway.poll() is None and time.monotonic() < deadline:
            states.add(run("healthcheck", f"127.0.0.1:{ports['gateway_health']}",
                           env=shared).returncode)
        assert gateway.wait(timeout=30) == 0
        assert 1 in states and run("healthcheck", f"127.0.0.1:{ports['gateway_health']}",
                                   env=shared).returncode == 1
        # The service's own lines are JSON (gRPC's C core writes a few plain lines of its own,
        # e.g. the plaintext attempt above).
        log = (tmp_path / "credit.log").read_text()
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any("listening on" in record["message"] for record in records), log
        assert ADMIN not in log and AUDIT_HMAC_KEY not in log
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
