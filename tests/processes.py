"""Real service processes for end-to-end tests: started with `python -m … serve`, stopped with
SIGTERM or killed with SIGKILL, restarted with the same settings."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The service identity each process presents on its outgoing calls.
OWN_SERVICE = {"render_service": "render", "admin_gateway": "admin-gateway"}


def security_env(module: str | None = None) -> dict[str, str]:
    """What every process of a test deployment shares (accepted service tokens, the audit
    key), plus `module`'s own service token."""
    from tests.helpers import AUDIT_HMAC_KEY, SERVICE_TOKEN, SERVICE_TOKENS

    env = {"SERVICE_TOKENS": SERVICE_TOKENS, "AUDIT_HMAC_KEY": AUDIT_HMAC_KEY}
    if module in OWN_SERVICE:
        env["SERVICE_TOKEN"] = SERVICE_TOKEN[OWN_SERVICE[module]]
    return env


def wait_serving(address: str, timeout: float = 20.0, channel_factory=None) -> None:
    """Until the server at `address` answers its health check SERVING. `channel_factory`:
    makes the channel (e.g. TLS) instead of a plaintext one."""
    deadline = time.monotonic() + timeout
    with (channel_factory or grpc.insecure_channel)(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not become SERVING")
            time.sleep(0.1)


def run_cli(module: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, command],
                          env={**os.environ, **security_env(module), **env},
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


ADDRESS_SETTINGS = {"credit_service": "CREDIT_ADDR", "render_service": "RENDER_ADDR",
                    "admin_gateway": "ADMIN_GRPC_ADDR"}


READY_LINE = "Ctrl-C stops everything."


@contextlib.contextmanager
def make_run(directory, env: dict[str, str]) -> Iterator[tuple[dict[str, str], subprocess.Popen]]:
    """`make run`'s launcher started in `directory` (its var/ there), each gRPC process on a
    free port (the HTTP address as `env` gives it); yields (its settings, the launcher) once it
    says it is ready (all three answer), and stops it with Ctrl-C at the end. What `make run`
    generates (tokens, keys, the admin's password) is left for it to generate, and it trusts
    no proxy, as `make run` does. Everything it and its processes print goes to
    `directory`/launcher.log (a pipe nobody reads would fill and stop them)."""
    from tests.conftest import free_port

    env = {key: value for key, value in env.items()
           if key not in ("ADMIN_TOKENS", "SERVICE_TOKENS", "SERVICE_TOKEN", "AUDIT_HMAC_KEY",
                          "JWT_SECRET", "SEED_ADMIN_PASSWORD", "TRUSTED_PROXIES")}
    env.update({variable: f"127.0.0.1:{free_port()}" for variable in ADDRESS_SETTINGS.values()})
    env.setdefault("ADMIN_HTTP_ADDR", f"127.0.0.1:{free_port()}")
    with open(os.path.join(directory, "launcher.log"), "w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "carpet_common.devrun"], env=env,
                                    cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Its own word that all three answer: a process answering this test first may not yet
        # have answered the launcher, which is still starting (Ctrl-C then stops it all).
        deadline = time.monotonic() + 120
        while READY_LINE not in open(os.path.join(directory, "launcher.log")).read():
            assert launcher.poll() is None, "make run stopped while starting"
            assert time.monotonic() < deadline, "make run did not get ready"
            time.sleep(0.1)
        yield env, launcher
    finally:
        if launcher.poll() is None:
            # Ctrl-C, as a person stops it: the launcher stops its three processes (each in a
            # session of its own, so killing the launcher alone would leave them running).
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()


class ServiceProcess:
    def __init__(self, module: str, address: str, env: dict[str, str], log_path: str,
                 channel_factory=None):
        self.module, self.address, self.env, self.log_path = module, address, env, log_path
        self.channel_factory = channel_factory  # how to reach it for health checks (TLS)
        self.process: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen([sys.executable, "-m", self.module, "serve"],
                                        env={**os.environ, **security_env(self.module),
                                             **self.env}, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_serving(self.address, channel_factory=self.channel_factory)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        with open(self.log_path) as handle:
            return handle.read()
