"""`make run`: migrate, seed and start the three processes on SQLite; Ctrl-C stops them all.

Everything the closed boundary needs is generated once into var/ (git-ignored, mode 0600) and
reused, so the admin page, grpcurl and an internal backend keep working across runs: the admin
token, the seeded admin's password, the service tokens (`render`, `admin-gateway`, and `web` for
an internal backend), the JWT secret that signs sign-in tokens and the audit chain's key. The
processes serve plaintext on loopback and prove who they are to each other with those service
tokens. Settings already in the environment win.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from carpet_common.settings import SettingsError, load_settings, parse_admin_tokens

VAR = "var"
LOCAL_ADMIN_NAME = "local-admin"
# (label, module, the service name it presents on its outgoing calls)
PROCESSES = (("credit service", "credit_service", None),
             ("render service", "render_service", "render"),
             ("admin gateway", "admin_gateway", "admin-gateway"))
SERVICES = ("render", "admin-gateway", "web")  # `web`: an internal backend (RENDER_CLIENTS)
STOP_TIMEOUT_S = 30  # the render service finishes the jobs in hand first


def kept_secret(name: str, min_length: int = 32, random_bytes: int = 32) -> str:
    """A random secret kept in var/<name> (0600), made on first use."""
    path = os.path.join(VAR, name)
    if os.path.exists(path):
        with open(path) as handle:
            value = handle.read().strip()
        if len(value) >= min_length:
            return value
    os.makedirs(VAR, exist_ok=True)
    value = secrets.token_urlsafe(random_bytes)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


def local_admin_token() -> str:
    return kept_secret("admin_token", 24)


def _service_tokens() -> dict[str, str]:
    tokens = {name: kept_secret(f"{name.replace('-', '_')}_token") for name in SERVICES}
    # One file with every accepted token, as SERVICE_TOKENS reads it (handy for scripts).
    path = os.path.join(VAR, "service_tokens")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(",".join(f"{name}:{token}" for name, token in tokens.items()) + "\n")
    return tokens


def _write_demo_room() -> None:
    """var/demo_room.jpg: a room photo for the README's render examples."""
    path = os.path.join(VAR, "demo_room.jpg")
    if not os.path.exists(path):
        from render_service.demo import room_photo

        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(room_photo())


def _run_step(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, *args], env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {result.returncode}")


def main() -> int:
    os.umask(0o077)  # var/ and everything in it: this user's only (the services do the same)
    env = dict(os.environ)
    token = None
    if not env.get("ADMIN_TOKENS"):
        token = local_admin_token()
        env["ADMIN_TOKENS"] = f"{LOCAL_ADMIN_NAME}:{token}"
    if not env.get("SERVICE_TOKENS"):
        env["SERVICE_TOKENS"] = ",".join(f"{name}:{value}"
                                         for name, value in _service_tokens().items())
    if not env.get("AUDIT_HMAC_KEY"):
        env["AUDIT_HMAC_KEY"] = kept_secret("audit_hmac_key", 43)
    if not env.get("JWT_SECRET") and not env.get("JWT_JWKS_FILE"):
        env["JWT_SECRET"] = kept_secret("jwt_secret", 43)  # signs the sign-in access tokens
    password = None
    if not env.get("SEED_ADMIN_PASSWORD"):
        # 16 random characters (96 bits): no common password, and seed sets it only while the admin
        # has none, so a password changed since is kept.
        password = env["SEED_ADMIN_PASSWORD"] = kept_secret("admin_password", 16, 12)
    # No TRUSTED_PROXIES: any program on this machine reaches the ports over loopback, so a
    # forwarded address from loopback proves nothing. The services believe the gateway's
    # forwarded address because of its service identity (carpet_common.calls).
    try:
        settings = load_settings(env)
        service_tokens = parse_admin_tokens(env["SERVICE_TOKENS"], "SERVICE_TOKENS", 32)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2

    _run_step(["-m", "credit_service", "migrate"], env)
    _run_step(["-m", "render_service", "migrate"], env)
    _run_step(["-m", "credit_service", "seed"], env)
    _run_step(["-m", "render_service", "seed"], env)  # a demo catalogue, when it is empty
    _write_demo_room()

    children = []
    addresses = (settings.credit_addr, settings.render_addr, settings.admin_grpc_addr)
    for (label, module, service), address in zip(PROCESSES, addresses, strict=True):
        own = {"SERVICE_TOKEN": service_tokens[service]} if service in service_tokens else {}
        # Own process group: the terminal's Ctrl-C reaches us, and we stop them in order.
        children.append(subprocess.Popen([sys.executable, "-m", module, "serve"],
                                         env={**env, **own}, start_new_session=True))
        # Each answers before the next starts: the next one's first calls find it up.
        try:
            started = _answers(address, children[-1])
        except KeyboardInterrupt:  # Ctrl-C while starting: stop what started
            started = False
        if not started:
            print(f"the {label} did not start", file=sys.stderr)
            _stop(children)
            return 1
    print()
    print(f"credit service   grpc  {settings.credit_addr}")
    print(f"render service   grpc  {settings.render_addr}")
    print(f"admin gateway    grpc  {settings.admin_grpc_addr}")
    print(f"admin gateway    http  http://{settings.admin_http_addr}/admin/")
    if password:
        print(f"admin sign-in    {settings.seed_admin_email} / {password}   (kept in "
              f"var/admin_password; changed passwords are not reset)")
    if token:
        print(f"admin token      {token}   (actor {LOCAL_ADMIN_NAME}; kept in var/admin_token)")
    if "web" in service_tokens:
        print(f"web token        {service_tokens['web']}   (an internal backend's "
              f"x-service-token; kept in var/web_token)")
    print("Ctrl-C stops everything.", flush=True)

    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    _stop(children)
    print("all processes stopped")
    return 0 if stopping else 1


def _answers(address: str, child: subprocess.Popen[bytes], timeout_s: float = 60) -> bool:
    """Whether the process serving `address` answers its health check SERVING (grpc's own
    health service needs no identity) before it exits or `timeout_s` passes."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    # Tried again every 0.1 s while it is not up yet (gRPC's own backoff waits a second and
    # more between attempts to connect).
    quick_retries = [("grpc.initial_reconnect_backoff_ms", 100),
                     ("grpc.min_reconnect_backoff_ms", 100),
                     ("grpc.max_reconnect_backoff_ms", 100)]
    with grpc.insecure_channel(address, options=quick_retries) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while child.poll() is None and time.monotonic() < deadline:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.1)
    return False


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """In dependency order, each before the next: the gateway first (no new admin calls), then
    the render service (its workers finish the jobs in hand and capture or release their holds,
    which needs the credit service), the credit service last."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    sys.exit(main())
