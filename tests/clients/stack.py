"""A real deployment for the client packages' tests: credit and render services (two render
workers, the local renderer) on fresh SQLite files, an organisation with credit and one
without, a carpet. `python -m tests.clients.stack` starts it, prints what a client needs as one
JSON line, then obeys lines on stdin (`stop render`, `start render`) until stdin closes, and
stops everything; the Node tests drive it that way, the Python tests import it."""
from __future__ import annotations

import json
import os
import sys
import tempfile

import grpc

from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, SERVICE_TOKEN, identified_channel
from tests.processes import ServiceProcess, run_cli


class ClientStack:
    def __init__(self, directory: str):
        self.env = {"CREDIT_DATABASE_URL": f"sqlite:///{directory}/credit.db",
                    "RENDER_DATABASE_URL": f"sqlite:///{directory}/render.db",
                    "RENDER_STORAGE_DIR": os.path.join(directory, "renders"),
                    "ADMIN_TOKENS": f"tester:{ADMIN[0][1]}", "RATE_LIMIT_RENDER": "off",
                    "CREDIT_ADDR": f"127.0.0.1:{free_port()}",
                    "RENDER_ADDR": f"127.0.0.1:{free_port()}"}
        for module in ("credit_service", "render_service"):
            migrated = run_cli(module, "migrate", self.env)
            assert migrated.returncode == 0, migrated.stderr
        self.credit = ServiceProcess("credit_service", self.env["CREDIT_ADDR"], self.env,
                                     os.path.join(directory, "credit.log"))
        self.render = ServiceProcess("render_service", self.env["RENDER_ADDR"], self.env,
                                     os.path.join(directory, "render.log"))

    def start(self) -> dict:
        self.credit.start()
        self.render.start()
        with grpc.insecure_channel(self.env["CREDIT_ADDR"]) as channel:
            accounts = account_pb2_grpc.AccountServiceStub(channel)
            paying, broke = (accounts.CreateOrganization(account_pb2.CreateOrganizationRequest(
                name=name, initial_credits=credits), metadata=ADMIN, timeout=10)
                for name, credits in (("Client Test", 50), ("Client Broke", 0)))
        with identified_channel(self.env["RENDER_ADDR"], "web") as channel:
            carpet = render_pb2_grpc.RenderServiceStub(channel).CreateCarpet(
                render_pb2.CreateCarpetRequest(sku="CLIENT-1", name="Client kilim",
                                               width_cm=120, length_cm=180, image=tiny_png()),
                timeout=10)
        return {"render_addr": self.env["RENDER_ADDR"], "credit_addr": self.env["CREDIT_ADDR"],
                "service_token": SERVICE_TOKEN["web"], "organization_id": paying.id,
                "broke_organization_id": broke.id, "carpet_id": carpet.id}

    def stop(self) -> None:
        self.render.stop()
        self.credit.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="carpet-client-stack-") as directory:
        stack = ClientStack(directory)
        try:
            print(json.dumps(stack.start()), flush=True)
            for line in sys.stdin:
                command = line.strip()
                if command == "stop render":
                    stack.render.kill()
                elif command == "start render":
                    stack.render.start()
                print(json.dumps({"done": command}), flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
