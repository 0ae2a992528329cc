"""A private CA and certificates made inside a test (never checked in): the deployment's one CA
signs every service's certificate, whose URI SAN spiffe://carpet/<name> (or CN) is its
identity and whose DNS SAN is the name clients verify."""
from __future__ import annotations

import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_NAME = "carpet test CA"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, public_key, signing_key, *, ca=False, dns=None, uri=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(CA_NAME))
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


def make_pki(directory: pathlib.Path,
             identities: dict[str, tuple[str, str | None, str]]) -> dict[str, str]:
    """Files of a CA (`ca`) and, per `name -> (CN, URI SAN or None, DNS SAN)`, a certificate
    and key (`<name>_cert`, `<name>_key`)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(CA_NAME, ca_key.public_key(), ca_key, ca=True)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, (common_name, uri, dns) in identities.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(common_name, key.public_key(), ca_key, dns=dns, uri=uri)
        files[f"{name}_cert"] = directory / f"{name}.pem"
        files[f"{name}_key"] = directory / f"{name}.key"
        files[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return {key: str(path) for key, path in files.items()}
