"""`make run`: migrate, seed and start the three processes on SQLite; Ctrl-C stops them all.

A local admin token is generated once into var/admin_token (git-ignored) and reused, so the
admin page and grpcurl keep working across runs. Settings already in the environment win.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from carpet_common.settings import SettingsError, load_settings

TOKEN_FILE = os.path.join("var", "admin_token")
LOCAL_ADMIN_NAME = "local-admin"
PROCESSES = (("credit service", "credit_service"), ("render service", "render_service"),
             ("admin gateway", "admin_gateway"))
STOP_TIMEOUT_S = 30  # the render service finishes the jobs in hand first


def local_admin_token() -> str:
    if os.path.exists(TOKEN_FILE):
        with open(TOKEN_FILE) as handle:
            token = handle.read().strip()
        if len(token) >= 24:
            return token
    os.makedirs("var", exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    return token


def _run_step(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, *args], env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {result.returncode}")


def main() -> int:
    env = dict(os.environ)
    token = None
    if not env.get("ADMIN_TOKENS"):
        token = local_admin_token()
        env["ADMIN_TOKENS"] = f"{LOCAL_ADMIN_NAME}:{token}"
    # The gateway passes each admin's IP on in x-forwarded-for; on one machine the services
    # believe it from loopback (set TRUSTED_PROXIES yourself in any other set-up).
    env.setdefault("TRUSTED_PROXIES", "127.0.0.1")
    try:
        settings = load_settings(env)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2

    _run_step(["-m", "credit_service", "migrate"], env)
    _run_step(["-m", "render_service", "migrate"], env)
    _run_step(["-m", "credit_service", "seed"], env)

    children = []
    for _label, module in PROCESSES:
        # Own process group: the terminal's Ctrl-C reaches us, and we stop them in order.
        children.append(subprocess.Popen([sys.executable, "-m", module, "serve"], env=env,
                                         start_new_session=True))
    print()
    print(f"credit service   grpc  {settings.credit_addr}")
    print(f"render service   grpc  {settings.render_addr}")
    print(f"admin gateway    grpc  {settings.admin_grpc_addr}")
    print(f"admin gateway    http  http://{settings.admin_http_addr}/admin/")
    if token:
        print(f"admin token      {token}   (actor {LOCAL_ADMIN_NAME}; kept in {TOKEN_FILE})")
    print("Ctrl-C stops everything.", flush=True)

    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    # Stop in dependency order, each before the next: the gateway first (no new admin calls),
    # then the render service (its workers finish the jobs in hand and capture or release their
    # holds, which needs the credit service), the credit service last.
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print("all processes stopped")
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
