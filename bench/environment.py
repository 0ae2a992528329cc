"""Bench environment: a fresh database, bulk-loaded organisations, real server processes."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse, urlunparse

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def fresh_database_url(base_url: str | None, name: str) -> str:
    """A new empty database: a file under bench/results for SQLite, or a database next to
    BENCH_DATABASE_URL's (dropped and created again) for PostgreSQL."""
    if not base_url:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        path = os.path.join(RESULTS_DIR, f"{name}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return f"sqlite:///{path}"
    import psycopg2

    database = f"carpet_bench_{name}"
    connection = psycopg2.connect(base_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        connection.close()
    return bench_database_url(base_url, name)


def bench_database_url(base_url: str, name: str) -> str:
    """The URL of the bench's PostgreSQL database `name`, next to BENCH_DATABASE_URL's."""
    return urlunparse(urlparse(base_url)._replace(path=f"/carpet_bench_{name}"))


def wait_serving(address: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError(f"{address} did not start")


# The service identity each process presents on its outgoing calls (docs/security.md).
OWN_SERVICE = {"render_service": "render", "admin_gateway": "admin-gateway",
               "bench.chain": "render"}


def security_env() -> dict[str, str]:
    """Service tokens (`render`, `admin-gateway`, and `web`, the clients' internal backend) and
    the audit key, made anew for each run."""
    tokens = {name: secrets.token_urlsafe(32) for name in ("render", "admin-gateway", "web")}
    return {"SERVICE_TOKENS": ",".join(f"{name}:{token}" for name, token in tokens.items()),
            "AUDIT_HMAC_KEY": secrets.token_urlsafe(43)}


def service_tokens(env: dict[str, str]) -> dict[str, str]:
    return dict(item.split(":", 1) for item in env["SERVICE_TOKENS"].split(","))


def channel_as(config: dict, address: str, service: str) -> grpc.Channel:
    """A client channel presenting `service`'s token (config["service_tokens"])."""
    from carpet_common.server import service_channel

    return service_channel(address, service_token=config["service_tokens"][service])


class ServerProcess:
    """`python -m <module> serve` with the given settings; stopped with SIGTERM."""

    def __init__(self, module: str, env: dict[str, str], address: str):
        if module in OWN_SERVICE:
            env = {**env, "SERVICE_TOKEN": service_tokens(env)[OWN_SERVICE[module]]}
        self.module, self.address = module, address
        self.log_path = os.path.join(RESULTS_DIR, f"{module}.log")
        os.makedirs(RESULTS_DIR, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen([sys.executable, "-m", module, "serve"],
                                         env={**os.environ, **env}, cwd=ROOT,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        wait_serving(address)

    @property
    def pid(self) -> int:
        return self._process.pid

    def rss_kb(self) -> int:
        """The process's resident memory (Linux /proc), in kB."""
        with open(f"/proc/{self._process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()


def run_cli(module: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, command], env={**os.environ, **env},
                          cwd=ROOT, capture_output=True, text=True, check=False)


def admin_token() -> str:
    return secrets.token_urlsafe(32)
