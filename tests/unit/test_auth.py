"""Authenticator: admin tokens in constant time, JWTs with algorithms fixed by configuration
(HS256 secret, RS256/ES256 keys by kid from a JWKS file that is re-read on rotation)."""
import dataclasses
import json
import os
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from carpet_common.auth import ADMIN, ADMIN_STAFF, Authenticator, Identity, Principal, admit
from carpet_common.errors import PermissionDenied, Unauthenticated
from carpet_common.settings import load_settings

TOKEN = "token-for-unit-tests-0123456789"


def claims(**overrides):
    values = {"sub": "dana", "role": "ADMIN", "exp": int(time.time()) + 300,
              "iat": int(time.time()),
              "aud": "carpet-admin", "iss": "carpet"}
    values.update(overrides)
    return values


@pytest.fixture
def keys(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"

    def write(*entries):
        document = {"keys": []}
        for kid, key in entries:
            algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            jwk["kid"] = kid
            document["keys"].append(jwk)
        path.write_text(json.dumps(document))
        stat = os.stat(path)
        os.utime(path, (stat.st_atime, stat.st_mtime + 1))  # a visible change for the reload

    write(("rsa-1", rsa_key), ("ec-1", ec_key))
    return rsa_key, ec_key, path, write


def authenticator(**env):
    return Authenticator(load_settings({"ADMIN_TOKENS": f"ops:{TOKEN}", **env}))


def test_admin_token_names_the_actor():
    principal = authenticator().authenticate({"x-admin-token": TOKEN})
    assert principal == Principal(actor="ops", role="ADMIN")
    with pytest.raises(Unauthenticated):
        authenticator().authenticate({"x-admin-token": TOKEN[:-1]})
    with pytest.raises(Unauthenticated):
        authenticator().authenticate({})


def test_rs256_and_es256_by_kid(keys):
    rsa_key, ec_key, path, _ = keys
    auth = authenticator(JWT_JWKS_FILE=str(path))
    rs = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(sub="eve"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert auth.authenticate({"authorization": f"Bearer {rs}"}).actor == "dana"
    assert auth.authenticate({"authorization": f"Bearer {es}"}).actor == "eve"


def test_unknown_kid_and_rotation(keys):
    rsa_key, _, path, write = keys
    auth = authenticator(JWT_JWKS_FILE=str(path))
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), new_key, algorithm="RS256", headers={"kid": "rsa-2"})
    with pytest.raises(Unauthenticated, match="unknown key"):
        auth.authenticate({"authorization": f"Bearer {token}"})
    write(("rsa-1", rsa_key), ("rsa-2", new_key))  # rotate in without a restart
    assert auth.authenticate({"authorization": f"Bearer {token}"}).actor == "dana"
    write(("rsa-2", new_key))  # rotate the old key out
    old = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {old}"})


def test_hs_rs_confusion_is_refused(keys):
    rsa_key, _, path, _ = keys
    auth = authenticator(JWT_JWKS_FILE=str(path), JWT_SECRET="s" * 40)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # Forge: HS256 "signed" with the public key, naming the RSA kid.
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    signature = jwt.utils.base64url_encode(
        hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest())
    forged = (header + b"." + payload + b"." + signature).decode()
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {forged}"})


def test_alg_none_is_refused():
    auth = authenticator(JWT_SECRET="s" * 40)
    token = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {token}"})


def test_jwt_refused_when_no_key_is_configured():
    token = jwt.encode(claims(), "s" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        authenticator().authenticate({"authorization": f"Bearer {token}"})


def test_staff_needs_an_organisation_and_is_scoped():
    auth = authenticator(JWT_SECRET="s" * 40)
    no_org = jwt.encode(claims(role="STAFF"), "s" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {no_org}"})
    staff = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(role="STAFF", org=7), "s" * 40, algorithm="HS256")})
    assert staff.check_organization(0) == 7
    assert staff.check_organization(7) == 7
    with pytest.raises(PermissionDenied):
        staff.check_organization(8)
    with pytest.raises(PermissionDenied):
        admit(Identity(person=staff), ADMIN)
    assert admit(Identity(person=staff), ADMIN_STAFF) == staff
    assert dataclasses.replace(staff, role="ADMIN").check_organization(8) == 8


@pytest.mark.parametrize("org", [0, -3, False, True, "7", 7.0])
def test_org_must_be_a_positive_integer(org):
    auth = authenticator(JWT_SECRET="s" * 40)
    token = jwt.encode(claims(role="STAFF", org=org), "s" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {token}"})


def test_iat_is_required_and_a_lifetime_over_a_day_is_refused():
    auth = authenticator(JWT_SECRET="s" * 40)
    now = int(time.time())
    without_iat = {key: value for key, value in claims().items() if key != "iat"}
    for bad in (without_iat, claims(iat=now, exp=now + 24 * 3600 + 1)):
        with pytest.raises(Unauthenticated):
            auth.authenticate({"authorization": "Bearer " + jwt.encode(bad, "s" * 40,
                                                                       algorithm="HS256")})
    day = jwt.encode(claims(iat=now, exp=now + 24 * 3600), "s" * 40, algorithm="HS256")
    assert auth.authenticate({"authorization": f"Bearer {day}"}).actor == "dana"


def test_staff_never_gets_all_organisations_and_admin_jwts_carry_no_scope():
    auth = authenticator(JWT_SECRET="s" * 40)
    staff = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(role="STAFF", org=7), "s" * 40, algorithm="HS256")})
    assert staff.check_organization(0) == 7 and staff.sees(7) and not staff.sees(8)
    admin = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(org=7), "s" * 40, algorithm="HS256")})
    assert admin.check_organization(0) == 0 and admin.sees(8)


def test_service_identities():
    from carpet_common.auth import ROLE_SERVICE, services

    token = "w" * 40
    auth = authenticator(SERVICE_TOKENS=f"web:{token}", ADMIN_TOKENS=f"ops:{TOKEN}")
    web = auth.identify({"x-service-token": token})
    assert (web.person, web.service) == (None, "web")
    with pytest.raises(Unauthenticated):
        auth.identify({"x-service-token": "x" * 40})
    with pytest.raises(Unauthenticated):
        auth.identify({})
    # A person relayed by a service acts as the person where persons are admitted, and the
    # service acts where only services are.
    both = auth.identify({"x-service-token": token, "x-admin-token": TOKEN})
    assert admit(both, ADMIN) == Principal("ops", "ADMIN", via="web")
    assert admit(both, services("web")) == Principal("web", ROLE_SERVICE)
    with pytest.raises(PermissionDenied):
        admit(web, ADMIN)
    # A bad person credential is never ignored because a service token came with it.
    with pytest.raises(Unauthenticated):
        auth.identify({"x-service-token": token, "x-admin-token": "nope" * 8})
    # Certificates: the spiffe://carpet/<name> URI SAN, else the CN.
    from carpet_common.auth import certificate_identity

    assert certificate_identity({"x509_common_name": [b"render"],
                                 "x509_subject_alternative_name": [
                                     b"localhost", b"spiffe://carpet/admin-gateway"]}) == \
        "admin-gateway"
    assert certificate_identity({"x509_common_name": [b"render"],
                                 "x509_subject_alternative_name": [b"localhost"]}) == "render"
    with pytest.raises(Unauthenticated):
        certificate_identity({"x509_common_name": [b"render"],
                              "x509_subject_alternative_name": [b"spiffe://other/render"]})
    assert certificate_identity({}) is None


def test_a_certificate_naming_two_services_names_none():
    from carpet_common.auth import certificate_identity

    with pytest.raises(Unauthenticated):
        certificate_identity({"x509_common_name": [b"render"],
                              "x509_subject_alternative_name": [
                                  b"spiffe://carpet/render", b"spiffe://carpet/credit"]})


def test_only_a_service_is_a_service():
    assert [Principal("x", role).is_service for role in ("SERVICE", "ADMIN", "STAFF")] == [
        True, False, False]


@pytest.mark.parametrize("org, accepted", [(2**63 - 1, True), (2**63, False)])
def test_an_organisation_id_is_an_int64(org, accepted):
    auth = authenticator(JWT_SECRET="s" * 40)
    token = jwt.encode(claims(role="STAFF", org=org), "s" * 40, algorithm="HS256")
    if accepted:
        assert auth.authenticate({"authorization": f"Bearer {token}"}).organization_id == org
    else:
        with pytest.raises(Unauthenticated):
            auth.authenticate({"authorization": f"Bearer {token}"})


def test_minted_tokens_carry_their_lifetime_and_scope():
    from carpet_common.auth import MAX_JWT_LIFETIME_S, mint_jwt

    settings = load_settings({"JWT_SECRET": "s" * 40})
    for ttl in (1, 60, MAX_JWT_LIFETIME_S):
        minted = jwt.decode(mint_jwt(settings, "dana", "STAFF", ttl, 5), "s" * 40,
                            algorithms=["HS256"], audience="carpet-admin")
        assert (minted["exp"] - minted["iat"], minted["org"], minted["sub"]) == (ttl, 5, "dana")
    admin = jwt.decode(mint_jwt(settings, "dana", "ADMIN", 60), "s" * 40,
                       algorithms=["HS256"], audience="carpet-admin")
    assert "org" not in admin
    for ttl in (0, MAX_JWT_LIFETIME_S + 1):
        with pytest.raises(ValueError):
            mint_jwt(settings, "dana", "ADMIN", ttl)


def test_certificates_with_two_or_empty_common_names_name_no_service():
    from carpet_common.auth import certificate_identity

    for names in ([b"render", b"credit"], [b""]):
        with pytest.raises(Unauthenticated):
            certificate_identity({"x509_common_name": names})


def test_an_identity_is_named_by_its_person_else_its_service():
    assert [Identity(service="web").actor, Identity().actor,
            Identity(person=Principal("dana", "ADMIN"), service="web").actor] == [
        "web", "anonymous", "dana"]


def test_only_staff_jwts_are_scoped_and_a_kid_without_jwks_uses_the_secret():
    auth = authenticator(JWT_SECRET="s" * 40)
    admin = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(org=7), "s" * 40, algorithm="HS256", headers={"kid": "any"})})
    assert (admin.role, admin.organization_id) == ("ADMIN", None)


def test_a_session_id_must_be_a_string():
    auth = authenticator(JWT_SECRET="s" * 40)
    token = jwt.encode(claims(sid=123), "s" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {token}"})


def test_rules_combine_every_part():
    from carpet_common.auth import Rule

    combined = Rule(admin=True, services=frozenset({"web"})) | Rule(
        staff=True, services=frozenset({"web", "cron"}), public=True)
    assert combined == Rule(admin=True, staff=True, services=frozenset({"web", "cron"}),
                            public=True)
    assert (Rule(public=True) | Rule()).public and not (Rule() | Rule()).public


def test_a_denial_names_the_caller_and_its_role():
    from carpet_common.auth import services

    staff = Principal("dana", "STAFF", organization_id=3)
    for identity, said in ((Identity(person=staff), "dana (STAFF) may not call this"),
                           (Identity(service="web"), "web (SERVICE) may not call this")):
        with pytest.raises(PermissionDenied) as denied:
            admit(identity, services("cron"))
        assert str(denied.value) == said
    assert (Identity(service="web").role, Identity().role) == ("SERVICE", "")


def test_staff_of_a_large_organisation_id_sees_its_own():
    staff = Principal("dana", "STAFF", organization_id=100_000)
    assert staff.sees(100_000) and not staff.sees(100_001)


def test_jwt_claims_that_are_not_whole_numbers_or_name_a_user():
    auth = authenticator(JWT_SECRET="s" * 40)
    now = int(time.time())
    for bad in (claims(iat=float(now)), claims(exp=float(now + 60))):
        with pytest.raises(Unauthenticated):
            auth.authenticate({"authorization": "Bearer " + jwt.encode(bad, "s" * 40,
                                                                       algorithm="HS256")})
    person = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(uid=5, sid="session-1"), "s" * 40, algorithm="HS256")})
    assert (person.user_id, person.session_id) == (5, "session-1")


def test_minted_access_tokens_name_their_user_and_session():
    from carpet_common.auth import mint_jwt

    settings = load_settings({"JWT_SECRET": "s" * 40})
    minted = jwt.decode(mint_jwt(settings, "dana", "STAFF", 60, 5, user_id=9,
                                 session_id="session-1"),
                        "s" * 40, algorithms=["HS256"], audience="carpet-admin")
    assert (minted["uid"], minted["sid"]) == (9, "session-1")
    with pytest.raises(ValueError):
        mint_jwt(settings, "dana", "ADMIN", -1)


def test_a_key_without_kid_does_not_hide_the_keys_after_it(keys, tmp_path):
    rsa_key, _, _, _ = keys
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    path = tmp_path / "first-without-kid.json"
    path.write_text(json.dumps({"keys": [dict(jwk), {**jwk, "kid": "rsa-1"}]}))
    auth = authenticator(JWT_JWKS_FILE=str(path))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert auth.authenticate({"authorization": f"Bearer {token}"}).actor == "dana"


def test_staff_sees_neither_a_smaller_nor_a_larger_organisation():
    staff = Principal("dana", "STAFF", organization_id=100_000)
    own = int("100000")  # equal, not the same object
    assert staff.sees(own) and not staff.sees(99_999) and not staff.sees(100_001)


def test_only_a_bearer_scheme_with_a_credential_is_read_as_a_jwt():
    auth = authenticator(JWT_SECRET="s" * 40)
    for header in ("Basic YWxhZGRpbjpvcGVu", "Bearer   ", "Zebra abc"):
        with pytest.raises(Unauthenticated) as refused:
            auth.authenticate({"authorization": header})
        assert str(refused.value) == "missing credentials: send x-admin-token or a Bearer JWT"
    with pytest.raises(Unauthenticated) as malformed:
        auth.authenticate({"authorization": "Bearer not-a-jwt"})
    assert str(malformed.value) == "malformed JWT"


def test_a_jwt_admin_is_admitted_as_an_admin_and_organisation_1_is_an_organisation():
    auth = authenticator(JWT_SECRET="s" * 40)
    admin = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(), "s" * 40, algorithm="HS256")})
    assert admit(Identity(person=admin), ADMIN) == admin
    first = auth.authenticate({"authorization": "Bearer " + jwt.encode(
        claims(role="STAFF", org=1), "s" * 40, algorithm="HS256")})
    assert first.organization_id == 1


def test_certificates_that_name_no_single_plain_service():
    from carpet_common.auth import certificate_identity

    for context in ({"x509_pem_cert": [b"-----BEGIN CERTIFICATE-----"]},
                    {"x509_common_name": [b"render"],
                     "x509_subject_alternative_name": [b"spiffe://carpet/render/extra"]}):
        with pytest.raises(Unauthenticated):
            certificate_identity(context)
