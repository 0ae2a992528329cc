"""People sign in as themselves (`docs/security.md`), through real processes over HTTP and gRPC, on
SQLite and PostgreSQL: login, refresh rotation and reuse, logout, password changes, deactivation
(live access tokens refused within the ended-sessions interval), lockout and its recovery, the
same answer for unknown and wrong, STAFF scoped to its organisation, audit rows naming the
person, and no password or token in any log line."""
from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request

import grpc
import pytest
from playhouse.db_url import connect

from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.helpers import JWT_SECRET
from tests.processes import ServiceProcess, run_cli

pytestmark = pytest.mark.usefixtures("engine")

ADMIN_EMAIL = "admin@example.com"
SEED_PASSWORD = "seeded-Admin-passw0rd"
AUTOMATION_TOKEN = "automation-token-0123456789abcdef"
REVOCATION_DEADLINE_S = 60  # "within a minute" (docs/security.md)


class Deployment:
    """The three processes on fresh databases, sessions re-read every second."""

    def __init__(self, tmp_path, credit_db_url, render_db_url):
        self.credit_db_url = credit_db_url
        self.env = {
            "CREDIT_DATABASE_URL": credit_db_url, "RENDER_DATABASE_URL": render_db_url,
            "RENDER_STORAGE_DIR": str(tmp_path / "renders"), "JWT_SECRET": JWT_SECRET,
            "ADMIN_TOKENS": f"automation:{AUTOMATION_TOKEN}",
            "SEED_ADMIN_PASSWORD": SEED_PASSWORD, "SESSION_CHECK_INTERVAL": "1s",
            # The test plays several clients by their X-Forwarded-For address.
            "TRUSTED_PROXIES": "127.0.0.1", "RATE_LIMIT_ADMIN": "off",
            "CREDIT_ADDR": f"127.0.0.1:{free_port()}", "RENDER_ADDR": f"127.0.0.1:{free_port()}",
            "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
        self.base = f"http://{self.env['ADMIN_HTTP_ADDR']}"
        self.processes = [ServiceProcess(module, self.env[variable], self.env,
                                         str(tmp_path / f"{module}.log"))
                          for module, variable in (("credit_service", "CREDIT_ADDR"),
                                                   ("render_service", "RENDER_ADDR"),
                                                   ("admin_gateway", "ADMIN_GRPC_ADDR"))]

    def start(self) -> Deployment:
        seeded = run_cli("credit_service", "seed", self.env)
        assert seeded.returncode == 0, seeded.stderr
        for process in self.processes:
            process.start()
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "".join(process.log() for process in self.processes)

    def http(self, path, body=None, *, token=None, ip="192.0.2.1", method=None):
        headers = {"Content-Type": "application/json", "X-Forwarded-For": ip}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method or ("POST" if data else "GET"))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read()), dict(error.headers)

    def login(self, email, password, ip="192.0.2.1"):
        return self.http("/auth/login", {"email": email, "password": password}, ip=ip)

    def signed_in(self, email, password, ip="192.0.2.1") -> dict:
        status, body, _ = self.login(email, password, ip)
        assert status == 200, body
        return body

    def render_call(self, token, organization_id=0):
        """ListRenders on the render service itself, as the person of `token`."""
        with grpc.insecure_channel(self.env["RENDER_ADDR"]) as channel:
            try:
                render_pb2_grpc.RenderServiceStub(channel).ListRenders(
                    render_pb2.ListRendersRequest(organization_id=organization_id),
                    metadata=(("authorization", f"Bearer {token}"),), timeout=10)
                return grpc.StatusCode.OK
            except grpc.RpcError as error:
                return error.code()

    def credit_call(self, token):
        with grpc.insecure_channel(self.env["CREDIT_ADDR"]) as channel:
            try:
                account_pb2_grpc.AccountServiceStub(channel).ListUsers(
                    account_pb2.ListUsersRequest(),
                    metadata=(("authorization", f"Bearer {token}"),), timeout=10)
                return grpc.StatusCode.OK
            except grpc.RpcError as error:
                return error.code()

    def sql(self, statement, *params):
        database = connect(self.credit_db_url)
        try:
            return database.execute_sql(statement.replace("?", database.param), params
                                        ).fetchall() if statement.lstrip().upper().startswith(
                "SELECT") else database.execute_sql(statement.replace("?", database.param),
                                                    params)
        finally:
            database.close()


@pytest.fixture
def deployment(tmp_path, credit_db_url, render_db_url):
    running = Deployment(tmp_path, credit_db_url, render_db_url).start()
    yield running
    running.stop()


def wait_refused(check, what: str) -> float:
    """Seconds until `check()` says UNAUTHENTICATED (fails after the promised minute)."""
    started = time.monotonic()
    while time.monotonic() - started < REVOCATION_DEADLINE_S:
        if check() in (401, grpc.StatusCode.UNAUTHENTICATED):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} still accepted after {REVOCATION_DEADLINE_S} s")


def overview_status(deployment, token):
    return deployment.http("/admin/overview", token=token)[0]


def test_sign_in_refresh_rotation_reuse_and_logout(deployment):
    session = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)
    assert set(session) == {"accessToken", "refreshToken", "expiresIn", "user"}
    assert session["expiresIn"] == 900  # ACCESS_TOKEN_TTL's default, 15 minutes
    assert (session["user"]["email"], session["user"]["role"], session["user"]["active"]) == (
        ADMIN_EMAIL, "ROLE_ADMIN", True)
    access = session["accessToken"]
    # The access token works on every port: the gateway over HTTP, each service over gRPC.
    assert overview_status(deployment, access) == 200
    assert deployment.render_call(access) == grpc.StatusCode.OK
    assert deployment.credit_call(access) == grpc.StatusCode.OK

    # An audited change names the person: the user's email and id.
    status, adjusted, _ = deployment.http("/admin/credits/adjust", {
        "organizationId": session["user"]["organizationId"], "delta": "5",
        "reason": "signed-in top-up"}, token=access)
    assert status == 200, adjusted
    status, audit, _ = deployment.http("/admin/audit?action=/carpet.credit.v1.CreditService/"
                                       "AdjustCredits", token=access)
    assert status == 200
    assert [(row["actor"], row["actorUserId"], row["outcome"]) for row in audit["auditLogs"]] \
        == [(ADMIN_EMAIL, session["user"]["id"], "ok")]
    assert '"relayed_by": "admin-gateway"' in audit["auditLogs"][0]["details"]
    assert adjusted["log"]["actor"] == ADMIN_EMAIL

    # Refresh: a new pair; the old refresh token is spent.
    status, second, headers = deployment.http("/auth/refresh",
                                              {"refreshToken": session["refreshToken"]})
    assert status == 200 and second["refreshToken"] != session["refreshToken"]
    assert headers["Cache-Control"] == "no-store"
    status, third, _ = deployment.http("/auth/refresh", {"refreshToken": second["refreshToken"]})
    assert status == 200
    # The spent first token again: 401, and the whole session is revoked — the newest refresh
    # token of that line and its access tokens too.
    status, body, _ = deployment.http("/auth/refresh", {"refreshToken": session["refreshToken"]})
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    status, _, _ = deployment.http("/auth/refresh", {"refreshToken": third["refreshToken"]})
    assert status == 401
    wait_refused(lambda: overview_status(deployment, third["accessToken"]),
                 "an access token of the revoked session")
    wait_refused(lambda: deployment.render_call(third["accessToken"]),
                 "the revoked session on the render service")

    # Logout ends another session; the first sign-in's rows are in the audit log.
    other = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)
    status, _, _ = deployment.http("/auth/logout", {"refreshToken": other["refreshToken"]})
    assert status == 200
    assert deployment.http("/auth/refresh", {"refreshToken": other["refreshToken"]})[0] == 401
    wait_refused(lambda: overview_status(deployment, other["accessToken"]),
                 "an access token after logout")
    fresh = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)["accessToken"]
    status, rows, _ = deployment.http("/admin/audit?actor=" + ADMIN_EMAIL, token=fresh)
    outcomes = {(row["action"].rsplit("/", 1)[1], row["outcome"]) for row in rows["auditLogs"]}
    assert {("Login", "ok"), ("Refresh", "denied:UNAUTHENTICATED"),
            ("Logout", "ok")} <= outcomes
    # Tokens keep their names for automation.
    assert deployment.http("/admin/overview", token=None)[0] == 401
    assert logs_hold_no_secret(deployment, [SEED_PASSWORD, session["refreshToken"],
                                            session["accessToken"], second["refreshToken"]])


def logs_hold_no_secret(deployment, secrets) -> bool:
    logs = deployment.logs()
    assert logs  # the processes did log (requests, sign-ins)
    leaked = [secret[:6] + "…" for secret in secrets if secret in logs]
    assert not leaked, f"secrets in the logs: {leaked}"
    return True


def create_staff(deployment, admin_access, organization_name, email, password):
    status, organization, _ = deployment.http("/admin/organizations", {
        "name": organization_name, "initialCredits": "7"}, token=admin_access)
    assert status == 200, organization
    status, user, _ = deployment.http("/admin/users", {
        "organizationId": organization["id"], "name": "Staff", "email": email,
        "role": "ROLE_STAFF", "password": password}, token=admin_access)
    assert status == 200, user
    return organization, user


def test_staff_signs_in_and_sees_only_its_organisation(deployment):
    admin = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)
    organization, user = create_staff(deployment, admin["accessToken"], "Halı Evi",
                                      "İSMAİL@Firma.com.tr", "kilim-desen-2026")
    # The email in its normal form, and as typed for display.
    assert (user["email"], user["displayEmail"], user["hasPassword"]) == (
        "ismail@firma.com.tr", "İSMAİL@Firma.com.tr", True)
    status, body, _ = deployment.http("/admin/users", {
        "organizationId": organization["id"], "name": "Twin", "email": "ismail@firma.com.tr",
        "role": "ROLE_STAFF"}, token=admin["accessToken"])
    assert (status, body["code"]) == (409, "ALREADY_EXISTS")

    staff = deployment.signed_in("ismail@FİRMA.com.tr", "kilim-desen-2026")
    assert (staff["user"]["role"], staff["user"]["organizationId"]) == (
        "ROLE_STAFF", organization["id"])
    status, users, _ = deployment.http("/admin/users", token=staff["accessToken"])
    assert status == 200
    assert {row["organizationId"] for row in users["users"]} == {organization["id"]}
    status, overview, _ = deployment.http("/admin/overview", token=staff["accessToken"])
    assert (status, overview["organizations"], overview["totalRemainingCredit"]) == (
        200, "1", "7")
    status, body, _ = deployment.http("/admin/credits/adjust", {
        "organizationId": organization["id"], "delta": "5", "reason": "x"},
        token=staff["accessToken"])
    assert (status, body["code"]) == (403, "PERMISSION_DENIED")
    seeded_org = int(admin["user"]["organizationId"])
    assert deployment.render_call(staff["accessToken"], seeded_org) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert deployment.render_call(staff["accessToken"]) == grpc.StatusCode.OK


def test_deactivation_password_set_and_change_end_sessions(deployment):
    admin = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)["accessToken"]
    _, user = create_staff(deployment, admin, "Kilim Ltd", "ayse@kilim.com.tr",
                           "dokuma-tezgahi-42")
    staff = deployment.signed_in("ayse@kilim.com.tr", "dokuma-tezgahi-42")

    status, body, _ = deployment.http(f"/admin/users/{user['id']}/deactivate", {},
                                      token=admin)
    assert (status, body["active"]) == (200, False)
    # Its live access token stops on every port within the interval (1 s here, 15 s by
    # default), its refresh token at once, and it cannot sign in again.
    waited = wait_refused(lambda: overview_status(deployment, staff["accessToken"]),
                          "a deactivated user's access token")
    assert waited < REVOCATION_DEADLINE_S
    wait_refused(lambda: deployment.render_call(staff["accessToken"]),
                 "a deactivated user's token on the render service")
    wait_refused(lambda: deployment.credit_call(staff["accessToken"]),
                 "a deactivated user's token on the credit service")
    assert deployment.http("/auth/refresh", {"refreshToken": staff["refreshToken"]})[0] == 401
    status, body, _ = deployment.login("ayse@kilim.com.tr", "dokuma-tezgahi-42")
    assert (status, body["code"]) == (403, "USER_DEACTIVATED")
    status, body, _ = deployment.http(f"/admin/users/{user['id']}/activate", {}, token=admin)
    assert (status, body["active"]) == (200, True)
    first = deployment.signed_in("ayse@kilim.com.tr", "dokuma-tezgahi-42")
    second = deployment.signed_in("ayse@kilim.com.tr", "dokuma-tezgahi-42")

    # Changing one's own password ends one's other sessions, not this one.
    status, body, _ = deployment.http("/auth/password", {
        "currentPassword": "wrong-password-here", "newPassword": "yeni-desen-sifre-9"},
        token=first["accessToken"])
    assert (status, body["code"]) == (403, "WRONG_PASSWORD")
    status, body, _ = deployment.http("/auth/password", {
        "currentPassword": "dokuma-tezgahi-42", "newPassword": "short"},
        token=first["accessToken"])
    assert (status, body["code"]) == (400, "WEAK_PASSWORD")
    status, body, _ = deployment.http("/auth/password", {
        "currentPassword": "dokuma-tezgahi-42", "newPassword": "yeni-desen-sifre-9"},
        token=first["accessToken"])
    assert (status, body) == (200, {"sessionsEnded": 1})
    assert deployment.http("/auth/refresh", {"refreshToken": second["refreshToken"]})[0] == 401
    wait_refused(lambda: overview_status(deployment, second["accessToken"]),
                 "another session after a password change")
    assert overview_status(deployment, first["accessToken"]) == 200
    assert deployment.login("ayse@kilim.com.tr", "dokuma-tezgahi-42")[0] == 401

    # An admin sets a password: every session of the user ends.
    for weak in ("kısa", "password1234", "ayse@kilim.com.tr"):
        status, body, _ = deployment.http(f"/admin/users/{user['id']}/password",
                                          {"password": weak}, token=admin)
        assert (status, body["code"]) == (400, "WEAK_PASSWORD"), weak
    status, body, _ = deployment.http(f"/admin/users/{user['id']}/password",
                                      {"password": "admin-set-it-2026"}, token=admin)
    assert status == 200 and body["id"] == user["id"]
    assert deployment.http("/auth/refresh", {"refreshToken": first["refreshToken"]})[0] == 401
    wait_refused(lambda: overview_status(deployment, first["accessToken"]),
                 "a session after an admin set the password")
    deployment.signed_in("ayse@kilim.com.tr", "admin-set-it-2026")
    # A staff member may not do what only admins do.
    staff_again = deployment.signed_in("ayse@kilim.com.tr", "admin-set-it-2026")
    status, _, _ = deployment.http(f"/admin/users/{user['id']}/deactivate", {},
                                   token=staff_again["accessToken"])
    assert status == 403
    assert logs_hold_no_secret(deployment, ["dokuma-tezgahi-42", "yeni-desen-sifre-9",
                                            "admin-set-it-2026", staff["refreshToken"]])


def test_lockout_per_account_and_per_address_then_recovery(deployment):
    # Five wrong passwords for one account (from different addresses): the sixth attempt is
    # refused with 429 and Retry-After, even with the right password.
    for attempt in range(5):
        status, body, _ = deployment.login(ADMIN_EMAIL, f"wrong-password-{attempt:02d}",
                                           ip=f"198.51.100.{attempt + 1}")
        assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    status, body, headers = deployment.login(ADMIN_EMAIL, SEED_PASSWORD, ip="198.51.100.99")
    assert (status, body["code"]) == (429, "TOO_MANY_SIGN_IN_FAILURES")
    assert 1 <= int(headers["Retry-After"]) <= 15 * 60
    # An unknown account locks the same way (a lockout says nothing about existence).
    for attempt in range(5):
        assert deployment.login("nobody@example.com", "whatever-password",
                                ip=f"198.51.100.{attempt + 1}")[0] == 401
    assert deployment.login("nobody@example.com", "whatever-password",
                            ip="198.51.100.98")[0] == 429
    # Per address: five failures from one address over several accounts lock that address.
    for attempt in range(5):
        assert deployment.login(f"guess{attempt}@example.com", "whatever-password",
                                ip="203.0.113.7")[0] == 401
    status, body, headers = deployment.login("someone@example.com", "whatever-password",
                                             ip="203.0.113.7")
    assert status == 429 and int(headers["Retry-After"]) >= 1

    # Hammering a locked account adds no audit rows: a lockout is written once per window.
    for _ in range(3):
        assert deployment.login(ADMIN_EMAIL, SEED_PASSWORD, ip="198.51.100.99")[0] == 429

    # Both kinds of refusal are audited, without the password.
    rows = audit_rows(deployment, AUTOMATION_TOKEN, "/carpet.credit.v1.AuthService/Login")
    outcomes = [row["outcome"] for row in rows]
    assert outcomes.count("denied:UNAUTHENTICATED") == 15
    assert outcomes.count("denied:RESOURCE_EXHAUSTED") == 3
    assert all("wrong-password" not in row["details"] and "whatever" not in row["details"]
               for row in rows)
    assert {row["peer"] for row in rows} >= {"198.51.100.1", "203.0.113.7"}

    # After the window (the failure rows moved 16 minutes back), the account recovers.
    deployment.sql("UPDATE login_failure SET created_at = ?", "2000-01-01 00:00:00")
    deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD, ip="198.51.100.99")
    assert deployment.login("someone@example.com", "whatever-password",
                            ip="203.0.113.7")[0] == 401


def test_a_good_sign_in_does_not_clear_the_addresss_failures(deployment):
    """Four failures from one address, a right password from it, one more failure: the fifth
    failure locks the address, the right password in between notwithstanding (it clears only
    its own account's count)."""
    for attempt in range(4):
        assert deployment.login(f"guess{attempt}@example.com", "whatever-password",
                                ip="192.0.2.50")[0] == 401
    deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD, ip="192.0.2.50")
    assert deployment.login("guess4@example.com", "whatever-password", ip="192.0.2.50")[0] == 401
    assert deployment.login("guess5@example.com", "whatever-password", ip="192.0.2.50")[0] == 429
    assert deployment.login(ADMIN_EMAIL, SEED_PASSWORD, ip="192.0.2.50")[0] == 429
    assert deployment.login(ADMIN_EMAIL, SEED_PASSWORD, ip="192.0.2.51")[0] == 200


def audit_rows(deployment, token, action):
    request = urllib.request.Request(
        f"{deployment.base}/admin/audit?action={action}&pageSize=500",
        headers={"x-admin-token": token})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["auditLogs"]


def test_unknown_email_and_wrong_password_look_the_same(deployment):
    """Same status, same body, and the same time within noise: the password hash is checked
    either way (against a dummy hash for an unknown email)."""
    admin = deployment.signed_in(ADMIN_EMAIL, SEED_PASSWORD)
    emails = [f"member{index}@example.com" for index in range(4)]
    for index, email in enumerate(emails):
        status, _, _ = deployment.http("/admin/users", {
            "organizationId": admin["user"]["organizationId"], "name": f"M{index}",
            "email": email, "role": "ROLE_STAFF", "password": f"member-password-{index}"},
            token=admin["accessToken"])
        assert status == 200
    unknown, wrong, bodies = [], [], set()
    for round_ in range(4):  # 4 failures per account: under the lockout
        for index, email in enumerate(emails):
            for target, address in ((wrong, email), (unknown, f"ghost{round_}{index}@ex.com")):
                started = time.perf_counter()
                status, body, _ = deployment.login(address, "not-the-password",
                                                   ip=f"10.{round_}.{index}.{len(target)}")
                target.append(time.perf_counter() - started)
                bodies.add((status, json.dumps(body, sort_keys=True)))
    assert bodies == {(401, json.dumps({"code": "UNAUTHENTICATED",
                                        "message": "email or password is wrong"},
                                       sort_keys=True))}
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (statistics.median(unknown), statistics.median(wrong))


class JwksServer:
    """An outside identity provider's JWKS endpoint on loopback, whose keys the test rotates."""

    def __init__(self):
        import http.server
        import threading

        self.document = {"keys": []}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, *keys):
        """`keys`: (kid, private key) pairs; their public halves are served."""
        from jwt.algorithms import RSAAlgorithm

        self.document = {"keys": [{**json.loads(RSAAlgorithm.to_jwk(key.public_key())),
                                   "kid": kid, "use": "sig", "alg": "RS256"}
                                  for kid, key in keys]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def provider_token(key, kid, email, **claims):
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": "idp-user-1", "email": email, "email_verified": True,
                       "iat": now, "exp": now + 300, "aud": "carpet-admin", "iss": "carpet",
                       **claims}, key, algorithm="RS256", headers={"kid": kid})


def test_an_outside_identity_provider_signs_people_in(tmp_path, credit_db_url, render_db_url):
    from cryptography.hazmat.primitives.asymmetric import rsa

    first, second, stranger = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                               for _ in range(3))
    provider = JwksServer()
    provider.publish(("key-1", first))
    deployment = Deployment(tmp_path, credit_db_url, render_db_url)
    deployment.env["JWT_JWKS_URL"] = provider.url
    try:
        deployment.start()
        status, session, _ = deployment.http(
            "/auth/login", {"idToken": provider_token(first, "key-1", "ADMIN@example.com")})
        assert status == 200, session
        assert session["user"]["email"] == ADMIN_EMAIL
        assert overview_status(deployment, session["accessToken"]) == 200
        # The session is ours: it refreshes and ends like any other.
        status, _, _ = deployment.http("/auth/refresh",
                                       {"refreshToken": session["refreshToken"]})
        assert status == 200

        refusals = {
            "unknown email": provider_token(first, "key-1", "nobody@example.com"),
            "unverified email": provider_token(first, "key-1", ADMIN_EMAIL,
                                               email_verified=False),
            "another audience": provider_token(first, "key-1", ADMIN_EMAIL, aud="elsewhere"),
            "a key it does not publish": provider_token(stranger, "key-1", ADMIN_EMAIL),
            "an unknown kid": provider_token(stranger, "key-9", ADMIN_EMAIL),
        }
        for what, token in refusals.items():
            status, body, _ = deployment.http("/auth/login", {"idToken": token})
            assert (status, body["code"]) == (401, "UNAUTHENTICATED"), what

        # The provider rotates its keys: a token of the new key is accepted once the keys are
        # fetched again (an unknown kid triggers that, at most every few seconds).
        provider.publish(("key-2", second))
        rotated = provider_token(second, "key-2", ADMIN_EMAIL)
        deadline = time.monotonic() + 30
        while (status := deployment.http("/auth/login", {"idToken": rotated})[0]) != 200:
            assert time.monotonic() < deadline, f"the rotated key is not used: {status}"
            time.sleep(0.5)
    finally:
        deployment.stop()
        provider.close()
