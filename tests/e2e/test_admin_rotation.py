"""Admin token rotation with real processes: two ADMIN_TOKENS valid at once, then the old one
removed by a restart (of the gateway and the credit service, which checks tokens again)."""
import grpc
import pytest

from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from tests.conftest import free_port
from tests.processes import ServiceProcess, run_cli

OLD = "old-admin-token-0123456789abcdef"
NEW = "new-admin-token-fedcba9876543210"


def overview(address, token):
    with grpc.insecure_channel(address) as channel:
        try:
            admin_pb2_grpc.AdminServiceStub(channel).GetOverview(
                admin_pb2.GetOverviewRequest(), metadata=(("x-admin-token", token),), timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


@pytest.mark.usefixtures("engine")
def test_rotation_by_restart(tmp_path, credit_db_url, render_db_url):
    env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
           "ADMIN_TOKENS": f"old:{OLD},new:{NEW}", "RENDER_STORAGE_DIR": str(tmp_path / "r"),
           "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "RENDER_ADDR": f"127.0.0.1:{free_port()}",
           "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}",
           "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
    assert run_cli("credit_service", "seed", env).returncode == 0
    processes = {module: ServiceProcess(module, env[variable], env, str(tmp_path / module))
                 for module, variable in (("credit_service", "CREDIT_ADDR"),
                                          ("render_service", "RENDER_ADDR"),
                                          ("admin_gateway", "ADMIN_GRPC_ADDR"))}
    try:
        for process in processes.values():
            process.start()
        gateway = env["ADMIN_GRPC_ADDR"]
        assert (overview(gateway, OLD), overview(gateway, NEW)) == (grpc.StatusCode.OK,) * 2
        # During the rotation, /metrics says which names are still in use (reads count too).
        import urllib.request

        from tests.helpers import SERVICE_TOKEN

        # Read as a service (a scraper), so the admin tokens' counts are the calls' alone.
        scrape = urllib.request.Request(f"http://{env['ADMIN_HTTP_ADDR']}/metrics",
                                        headers={"x-service-token": SERVICE_TOKEN["web"]})
        with urllib.request.urlopen(scrape, timeout=10) as page:
            metrics = page.read().decode()
        for name in ("old", "new"):
            assert (f'carpet_credential_uses_total{{kind="admin-token",name="{name}"}} 1.0'
                    in metrics), metrics[-2000:]
            assert (f'carpet_credential_last_used_timestamp_seconds{{kind="admin-token",'
                    f'name="{name}"}}') in metrics
        assert OLD not in metrics and NEW not in metrics
        for module in ("admin_gateway", "credit_service"):
            processes[module].stop()
            processes[module].env = {**env, "ADMIN_TOKENS": f"new:{NEW}"}
            processes[module].start()
        assert overview(gateway, OLD) == grpc.StatusCode.UNAUTHENTICATED
        assert overview(gateway, NEW) == grpc.StatusCode.OK
    finally:
        for process in processes.values():
            process.stop()
