"""gRPC over TLS with generated certificates: TLS_CERT/TLS_KEY serve TLS; with TLS_CLIENT_CA the
server requires client certificates (mTLS between services), and the render service's channel
to the credit service presents its own certificate."""
import dataclasses
import datetime
import ipaddress
import pathlib

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from admin_gateway.clients import ServiceClients
from carpet_common.server import ChannelSecurity
from credit_service.app import build_server
from protos.carpet.credit.v1 import credit_pb2, credit_pb2_grpc
from render_service.app import credit_channel
from tests.helpers import service_settings

pytestmark = pytest.mark.usefixtures("engine")


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca=False, dns=None, uri=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    names = []
    if dns:
        names += [x509.DNSName(dns), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if uri:
        names.append(x509.UniformResourceIdentifier(uri))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("carpet test CA", "carpet test CA", ca_key.public_key(), ca_key, ca=True)
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # name -> (CN, URI SAN): the identity is the spiffe://carpet/<name> URI SAN, or the CN
    # when the certificate has no URI SAN.
    identities = {"server": ("server", None), "client": ("client", "spiffe://carpet/render"),
                  "gateway": ("admin-gateway", None),
                  "mallory": ("render", "spiffe://carpet/mallory"),
                  "foreign": ("render", "spiffe://elsewhere/render"),
                  # two replicas of the credit service: the name they share, not localhost
                  "replica_a": ("credit", "spiffe://carpet/credit"),
                  "replica_b": ("credit", "spiffe://carpet/credit")}
    for name, (common_name, uri) in identities.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(common_name, "carpet test CA", key.public_key(), ca_key,
                            dns="credit.internal" if name.startswith("replica") else "localhost",
                            uri=uri)
        files[f"{name}_cert"] = tmp_path / f"{name}.pem"
        files[f"{name}_key"] = tmp_path / f"{name}.key"
        files[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return {key: str(path) for key, path in files.items()}


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
