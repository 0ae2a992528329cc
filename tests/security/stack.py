"""A real deployment for the attack tests: the three processes (`python -m … serve`) with
`make run`'s kind of settings (service tokens, an admin token, HS256 sign-in), on SQLite files or
on PostgreSQL databases, each test module its own; extra settings per module."""
from __future__ import annotations

import os
import time

import grpc
import jwt

from protos.carpet.admin.v1 import admin_pb2_grpc
from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, ADMIN_TOKEN, JWT_SECRET, identified_channel
from tests.processes import ServiceProcess, run_cli

ADDRESSES = {"credit_service": "CREDIT_ADDR", "render_service": "RENDER_ADDR",
             "admin_gateway": "ADMIN_GRPC_ADDR"}


def staff_jwt(organization_id: int, subject: str = "mallory", **claims) -> str:
    """A STAFF access token minted now (its clock starts inside the test)."""
    now = int(time.time())
    return jwt.encode({"sub": subject, "role": "STAFF", "org": organization_id, "iat": now,
                       "exp": now + 600, "aud": "carpet-admin", "iss": "carpet", **claims},
                      JWT_SECRET, algorithm="HS256")


class Deployment:
    def __init__(self, directory, database_urls: dict[str, str] | None = None,
                 modules=tuple(ADDRESSES), **settings: str):
        urls = database_urls or {"credit": f"sqlite:///{directory}/credit.db",
                                 "render": f"sqlite:///{directory}/render.db"}
        self.env = {"CREDIT_DATABASE_URL": urls["credit"],
                    "RENDER_DATABASE_URL": urls["render"],
                    "RENDER_STORAGE_DIR": os.path.join(str(directory), "renders"),
                    "ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}", "JWT_SECRET": JWT_SECRET,
                    "CREDIT_ADDR": f"127.0.0.1:{free_port()}",
                    "RENDER_ADDR": f"127.0.0.1:{free_port()}",
                    "ADMIN_GRPC_ADDR": f"127.0.0.1:{free_port()}",
                    "ADMIN_HTTP_ADDR": f"127.0.0.1:{free_port()}", **settings}
        for module in ("credit_service", "render_service"):
            migrated = run_cli(module, "migrate", self.env)
            assert migrated.returncode == 0, migrated.stderr
        self.processes = {module: ServiceProcess(module, self.env[ADDRESSES[module]], self.env,
                                                 os.path.join(str(directory), f"{module}.log"))
                          for module in modules}
        self._channels: list[grpc.Channel] = []

    def start(self) -> Deployment:
        for process in self.processes.values():
            process.start()
        return self

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        for process in reversed(list(self.processes.values())):
            process.stop()

    @property
    def http(self) -> str:
        return f"http://{self.env['ADMIN_HTTP_ADDR']}"

    def channel(self, variable: str, service: str | None = None) -> grpc.Channel:
        address = self.env[variable]
        channel = identified_channel(address, service) if service else grpc.insecure_channel(
            address)
        self._channels.append(channel)
        return channel

    def accounts(self):
        return account_pb2_grpc.AccountServiceStub(self.channel("CREDIT_ADDR"))

    def renders(self, service: str | None = "web"):
        return render_pb2_grpc.RenderServiceStub(self.channel("RENDER_ADDR", service))

    def admin(self):
        return admin_pb2_grpc.AdminServiceStub(self.channel("ADMIN_GRPC_ADDR"))

    def organization(self, name: str, credits: int):
        return self.accounts().CreateOrganization(account_pb2.CreateOrganizationRequest(
            name=name, initial_credits=credits), metadata=ADMIN, timeout=10)

    def user(self, organization_id: int, email: str, name: str = "Somebody"):
        return self.accounts().CreateUser(account_pb2.CreateUserRequest(
            organization_id=organization_id, email=email, name=name,
            role=account_pb2.ROLE_STAFF), metadata=ADMIN, timeout=10)

    def carpet(self, sku: str = "K-1"):
        return self.renders().CreateCarpet(render_pb2.CreateCarpetRequest(
            sku=sku, name=sku, width_cm=100, length_cm=150, image=tiny_png()), timeout=10)


def peak_memory_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")

