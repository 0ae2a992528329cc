"""docs/operations.md, "A first deployment, step by step", tried as written on PostgreSQL: a
private CA and a certificate per service (identity spiffe://carpet/<name>, one shared DNS name
checked through TLS_SERVER_NAME), two replicas of every process behind `ipv4:` lists, mTLS
everywhere, rate limits in Redis; the first organisation and admin made by `seed`; an
adjustment and a render through it; an admin token rotated out by restarting one replica at a
time with no failed call; a backup restored with pg_restore and the books checked on it."""
import subprocess
import uuid

import grpc
import psycopg2
import pytest

from protos.carpet.admin.v1 import admin_pb2, admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, credit_pb2, credit_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.pki import make_pki
from tests.processes import ServiceProcess, run_cli

OLD = "ops-old-token-0123456789abcdefgh"
NEW = "ops-new-token-abcdefghij012345678"
SHARED_NAME = "carpet.internal"  # every service certificate's DNS name (TLS_SERVER_NAME)


def tls_channel(pki, identity):
    """A channel factory presenting `identity`'s certificate, checking servers by name."""
    with open(pki["ca"], "rb") as ca, open(pki[f"{identity}_key"], "rb") as key, \
            open(pki[f"{identity}_cert"], "rb") as cert:
        credentials = grpc.ssl_channel_credentials(ca.read(), key.read(), cert.read())

    def factory(target):
        return grpc.secure_channel(target, credentials,
                                   options=[("grpc.ssl_target_name_override", SHARED_NAME)])

    return factory


def replicas(module, variable, count, env, pki, identity, tmp_path, **extra):
    processes = []
    for index in range(count):
        address = f"127.0.0.1:{free_port()}"
        processes.append(ServiceProcess(
            module, address, {**env, **extra, variable: address,
                              "TLS_CERT": pki[f"{identity}_cert"],
                              "TLS_KEY": pki[f"{identity}_key"]},
            str(tmp_path / f"{module}-{index}.log"), channel_factory=tls_channel(pki, "ada")))
    return processes


def listing(processes):
    return "ipv4:" + ",".join(process.address for process in processes)


def restore(dump_path, url):
    """pg_restore of a `pg_dump -Fc` into the (empty) database at `url`."""
    subprocess.run(["pg_restore", "--no-owner", "-d", url, dump_path], check=True,
                   capture_output=True)


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_operations_guide_step_by_step(tmp_path, credit_db_url, render_db_url,
                                           pg_databases):
    # 1. One private CA; a certificate per service (and one for the admin's grpcurl).
    pki = make_pki(tmp_path, {
        name: (name, f"spiffe://carpet/{name}", SHARED_NAME)
        for name in ("credit", "render", "admin-gateway", "web", "ada", "mallory")})
    env = {"CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
           "TLS_CLIENT_CA": pki["ca"], "TLS_SERVER_NAME": SHARED_NAME,
           "ADMIN_TOKENS": f"old:{OLD},new:{NEW}", "RENDER_STORAGE_DIR": str(tmp_path / "r"),
           "RATE_LIMIT_STORAGE": "redis://127.0.0.1:6379/13", "RATE_LIMIT_ADMIN": "600/minute",
           "SEED_ORG_NAME": "Halıcı A.Ş.", "SEED_ADMIN_EMAIL": "ada@halici.example",
           "SEED_CREDITS": "50", "SEED_ADMIN_PASSWORD": "first-admin-passw0rd"}

    # 2. Migrate as the schema's owner; the first organisation and its admin by `seed`.
    for module in ("credit_service", "render_service"):
        assert run_cli(module, "migrate", env).returncode == 0
    seeded = run_cli("credit_service", "seed", env)
    assert seeded.returncode == 0 and \
        "created organization, admin user, admin password" in seeded.stdout

    # 3. Two replicas of each process; the others reach them through `ipv4:` lists.
    credits = replicas("credit_service", "CREDIT_ADDR", 2, env, pki, "credit", tmp_path)
    renders = replicas("render_service", "RENDER_ADDR", 2, env, pki, "render", tmp_path,
                       CREDIT_ADDR=listing(credits))
    gateways = replicas("admin_gateway", "ADMIN_GRPC_ADDR", 2, env, pki, "admin-gateway",
                        tmp_path, CREDIT_ADDR=listing(credits), RENDER_ADDR=listing(renders),
                        ADMIN_HTTP_ADDR="")
    for gateway in gateways:
        gateway.env["ADMIN_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
    processes = [*credits, *renders, *gateways]
    try:
        for process in processes:
            process.start()
        admin_channel = tls_channel(pki, "ada")(listing(gateways))
        admin = admin_pb2_grpc.AdminServiceStub(admin_channel)

        def as_admin(token):
            return (("x-admin-token", token),)

        # 4. An adjustment through the gateways (the admin's certificate and token).
        organization = admin.ListOrganizations(account_pb2.ListOrganizationsRequest(),
                                               metadata=as_admin(OLD), timeout=10).organizations[0]
        assert organization.name == "Halıcı A.Ş."
        adjusted = admin.AdjustCredits(credit_pb2.AdjustCreditsRequest(
            organization_id=organization.id, delta=25, reason="first package",
            idempotency_key="guide-1"), metadata=as_admin(OLD), timeout=10)
        assert adjusted.balance.balance == 75

        # 5. A render, submitted by an internal backend (`web`, by its certificate).
        web = render_pb2_grpc.RenderServiceStub(tls_channel(pki, "web")(listing(renders)))
        carpet = web.CreateCarpet(render_pb2.CreateCarpetRequest(
            sku="K-1", name="Kilim", width_cm=120, length_cm=180, image=tiny_png()), timeout=10)
        job = web.SubmitRender(render_pb2.SubmitRenderRequest(
            organization_id=organization.id, carpet_id=carpet.id, mode="preview"), timeout=10)
        final = list(web.WatchRender(render_pb2.WatchRenderRequest(id=job.id), timeout=60))[-1]
        assert final.status == render_pb2.RENDER_STATUS_SUCCESS and final.credits_charged == 1

        # A certificate from the right CA naming a service that may not hold credits.
        mallory = credit_pb2_grpc.CreditServiceStub(tls_channel(pki, "mallory")(
            listing(credits)))
        with pytest.raises(grpc.RpcError) as refused:
            mallory.ReserveCredits(credit_pb2.ReserveCreditsRequest(
                organization_id=organization.id, amount=50, reference="mine"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # A certificate of another CA: the handshake itself is refused.
        (tmp_path / "elsewhere").mkdir()
        stranger = make_pki(tmp_path / "elsewhere", {"render": (
            "render", "spiffe://carpet/render", SHARED_NAME)})
        with pytest.raises(grpc.RpcError) as refused:
            credit_pb2_grpc.CreditServiceStub(tls_channel(
                {**stranger, "ca": pki["ca"]}, "render")(listing(credits))).ReserveCredits(
                credit_pb2.ReserveCreditsRequest(organization_id=organization.id, amount=50,
                                                 reference="mine"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # 6. Rotation: `old` is removed by restarting one replica at a time; the other replica
        # of each kind keeps serving, so a caller with the new token never sees a failure.
        def overview_with(token):
            return admin.GetOverview(admin_pb2.GetOverviewRequest(), metadata=as_admin(token),
                                     timeout=10)

        for process in processes:
            process.stop()
            process.env = {**process.env, "ADMIN_TOKENS": f"new:{NEW}"}
            process.start()
            assert overview_with(NEW).total_remaining_credit == 74
        with pytest.raises(grpc.RpcError) as refused:
            overview_with(OLD)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        admin_channel.close()

        # 7. The books, live and on a restored backup (pg_dump -Fc, then pg_restore).
        for module, command in (("credit_service", "verify"), ("render_service", "verify"),
                                ("ops", "reconcile")):
            checked = run_cli(module, command, env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        restored = {}
        for name, url in (("credit", credit_db_url), ("render", render_db_url)):
            dump = str(tmp_path / f"{name}.dump")
            subprocess.run(["pg_dump", "-Fc", "-f", dump, url], check=True, capture_output=True)
            restored[name] = pg_databases.url(f"restored_{name}_{uuid.uuid4().hex[:6]}")
            restore(dump, restored[name])
        restored_env = {**env, "CREDIT_DATABASE_URL": restored["credit"],
                        "RENDER_DATABASE_URL": restored["render"]}
        for module, command in (("credit_service", "verify"), ("render_service", "verify"),
                                ("ops", "reconcile")):
            checked = run_cli(module, command, restored_env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        with psycopg2.connect(restored["credit"]) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT balance FROM credit_balance WHERE organization_id = %s",
                           (organization.id,))
            assert cursor.fetchone() == (74,)
        connection.close()
    finally:
        for process in reversed(processes):
            process.stop()
