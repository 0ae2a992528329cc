"""gRPC over TLS with generated certificates: TLS_CERT/TLS_KEY serve TLS; with TLS_CLIENT_CA the
server requires client certificates (mTLS between services), and the render service's channel
to the credit service presents its own certificate."""
import dataclasses
import pathlib

import grpc
import pytest

from admin_gateway.clients import ServiceClients
from carpet_common.server import ChannelSecurity
from credit_service.app import build_server
from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc
from render_service.app import credit_channel
from tests.helpers import service_settings
from tests.pki import make_pki

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def pki(tmp_path):
    # name -> (CN, URI SAN, DNS SAN): the identity is the spiffe://carpet/<name> URI SAN, or
    # the CN when the certificate has no URI SAN.
    return make_pki(tmp_path, {
        "server": ("server", None, "localhost"),
        "client": ("client", "spiffe://carpet/render", "localhost"),
        "gateway": ("admin-gateway", None, "localhost"),
        "mallory": ("render", "spiffe://carpet/mallory", "localhost"),
        "foreign": ("render", "spiffe://elsewhere/render", "localhost"),
        # two replicas of the credit service: the name they share, not localhost
        "replica_a": ("credit", "spiffe://carpet/credit", "credit.internal"),
        "replica_b": ("credit", "spiffe://carpet/credit", "credit.internal"),
    })


def balance_over(channel):
    return credit_pb2_grpc.CreditServiceStub(channel).GetBalance(
        credit_pb2.GetBalanceRequest(organization_id=1), timeout=5)


def test_mutual_tls(credit_db, pki):
    settings = service_settings(tls_cert=pki["server_cert"], tls_key=pki["server_key"],
                                tls_client_ca=pki["ca"])
    running, port = build_server(settings, "127.0.0.1:0")
    address = f"localhost:{port}"
    ca = pathlib.Path(pki["ca"]).read_bytes()
    try:
        with grpc.insecure_channel(address) as plaintext:
            with pytest.raises(grpc.RpcError) as raised:
                balance_over(plaintext)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as no_client_cert:
            with pytest.raises(grpc.RpcError) as raised:
                balance_over(no_client_cert)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        # The render service's channel: its own certificate, the shared CA.
        render_settings = dataclasses.replace(
            settings, credit_addr=address, tls_cert=pki["client_cert"],
            tls_key=pki["client_key"])
        with credit_channel(render_settings) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                balance_over(channel)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # reached the service
        # The gateway's clients: the same settings, the same mTLS; its certificate names it by
        # its CN. It may read a balance, but not hold credits (only `render` may).
        clients = ServiceClients(address, address, ChannelSecurity(
            roots=pki["ca"], cert=pki["gateway_cert"], key=pki["gateway_key"]))
        try:
            with pytest.raises(grpc.RpcError) as raised:
                clients.credits.GetBalance(credit_pb2.GetBalanceRequest(organization_id=1))
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as raised:
                clients.credits.ReserveCredits(credit_pb2.ReserveCreditsRequest(
                    organization_id=1, amount=1, reference="r"), timeout=5)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            clients.close()
        # Certificates from the right CA with the wrong identity: a URI SAN naming another
        # service wins over a CN of `render`; another trust domain names no service here.
        for name, code in (("mallory", grpc.StatusCode.PERMISSION_DENIED),
                           ("foreign", grpc.StatusCode.UNAUTHENTICATED)):
            wrong = dataclasses.replace(settings, credit_addr=address,
                                        tls_cert=pki[f"{name}_cert"],
                                        tls_key=pki[f"{name}_key"])
            with credit_channel(wrong) as channel:
                with pytest.raises(grpc.RpcError) as raised:
                    credit_pb2_grpc.CreditServiceStub(channel).ReserveCredits(
                        credit_pb2.ReserveCreditsRequest(organization_id=1, amount=1,
                                                         reference="r"), timeout=5)
                assert raised.value.code() == code, name
    finally:
        running.stop(grace=1)


@pytest.mark.parametrize("mutual", [True, False], ids=["mTLS", "TLS only"])
def test_a_list_of_replicas_is_verified_against_the_shared_name(credit_db, pki, caplog,
                                                                mutual):
    """CREDIT_ADDR naming two replicas (`ipv4:a,b`): each replica's certificate is checked
    against TLS_SERVER_NAME, not the literal target. Under mTLS the render service's
    certificate is its identity; with TLS only (TLS_CA, no client CA) its service token is.
    Without TLS_SERVER_NAME the handshake fails, and the reason is logged once."""
    import logging

    from carpet_common.server import service_channel
    from tests.helpers import SERVICE_TOKEN

    replicas = [build_server(service_settings(
        tls_cert=pki[f"replica_{name}_cert"], tls_key=pki[f"replica_{name}_key"],
        tls_client_ca=pki["ca"] if mutual else None), "127.0.0.1:0") for name in ("a", "b")]
    ports = [port for _, port in replicas]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    client = dict(tls_cert=pki["client_cert"], tls_key=pki["client_key"]) if mutual else {}
    render = service_settings(credit_addr=target, tls_ca=pki["ca"],
                              service_token=None if mutual else SERVICE_TOKEN["render"],
                              tls_server_name="credit.internal", **client)
    try:
        for address in [target, *(f"127.0.0.1:{port}" for port in ports)]:
            with credit_channel(dataclasses.replace(render, credit_addr=address)) as channel:
                for _ in range(4):
                    with pytest.raises(grpc.RpcError) as raised:
                        balance_over(channel)
                    # NOT_FOUND: organisation 1 does not exist, so the call reached the
                    # service, authenticated as `render`.
                    assert raised.value.code() == grpc.StatusCode.NOT_FOUND, address
        caplog.set_level(logging.ERROR, logger="carpet_common.server")
        unverified = dataclasses.replace(render, tls_server_name=None)
        with credit_channel(unverified) as channel:
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as raised:
                    balance_over(channel)
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        logged = [record.getMessage() for record in caplog.records
                  if record.getMessage().startswith(f"cannot reach {target}")]
        assert len(logged) == 1, logged  # once per target, not once per call
        # Plaintext to a TLS replica: refused by the transport.
        with service_channel(f"127.0.0.1:{ports[0]}") as plaintext:
            with pytest.raises(grpc.RpcError) as raised:
                balance_over(plaintext)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for running, _ in replicas:
            running.stop(grace=1)
