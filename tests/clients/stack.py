"""A real deployment for the client packages' tests: credit and render services (two render
workers, the local renderer) on fresh SQLite files, an organisation with credit and one
without, a carpet. `python -m tests.clients.stack` starts it, prints what a client needs as one
JSON line, then obeys lines on stdin (`stop render`, `start render`, `release crowd N`) until
stdin closes, and stops everything; the Node tests drive it that way, the Python tests import
it. `--no-workers`: no render worker runs, so every submission waits until `release crowd N`
(once N streams are open on the render process) cancels the crowd organisation's renders."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request

import grpc

from protos.carpet.credit.v1 import account_pb2, account_pb2_grpc
from protos.carpet.render.v1 import render_pb2, render_pb2_grpc
from tests.conftest import free_port
from tests.fake_image_api import tiny_png
from tests.helpers import ADMIN, SERVICE_TOKEN, identified_channel
from tests.processes import ServiceProcess, run_cli


class ClientStack:
    def __init__(self, directory: str, workers: bool = True):
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
        self.metrics_addr = f"127.0.0.1:{free_port()}"
        render_env = {**self.env, "METRICS_ADDR": self.metrics_addr}
        if not workers:
            render_env["RENDER_WORKERS"] = "0"
        self.render = ServiceProcess("render_service", self.env["RENDER_ADDR"], render_env,
                                     os.path.join(directory, "render.log"))
        self.config: dict = {}

    def start(self) -> dict:
        self.credit.start()
        self.render.start()
        with grpc.insecure_channel(self.env["CREDIT_ADDR"]) as channel:
            accounts = account_pb2_grpc.AccountServiceStub(channel)
            paying, broke, crowd = (accounts.CreateOrganization(
                account_pb2.CreateOrganizationRequest(name=name, initial_credits=credits),
                metadata=ADMIN, timeout=10)
                for name, credits in (("Client Test", 50), ("Client Broke", 0),
                                      ("Client Crowd", 1000)))
        with identified_channel(self.env["RENDER_ADDR"], "web") as channel:
            carpet = render_pb2_grpc.RenderServiceStub(channel).CreateCarpet(
                render_pb2.CreateCarpetRequest(sku="CLIENT-1", name="Client kilim",
                                               width_cm=120, length_cm=180, image=tiny_png()),
                timeout=10)
        self.config = {"render_addr": self.env["RENDER_ADDR"],
                       "credit_addr": self.env["CREDIT_ADDR"],
                       "service_token": SERVICE_TOKEN["web"], "organization_id": paying.id,
                       "broke_organization_id": broke.id, "crowd_organization_id": crowd.id,
                       "carpet_id": carpet.id}
        return self.config

    def release_crowd(self, count: int) -> None:
        """Once `count` streams are open on the render process, cancel every render of the
        crowd organisation: each waiting client hears its job end."""
        self.wait_for_streams(count)
        with identified_channel(self.env["RENDER_ADDR"], "web") as channel:
            renders = render_pb2_grpc.RenderServiceStub(channel)
            listed = renders.ListRenders(render_pb2.ListRendersRequest(
                organization_id=self.config["crowd_organization_id"], page_size=count,
                status=render_pb2.RENDER_STATUS_QUEUED), timeout=30)
            for job in listed.renders:
                renders.CancelRender(render_pb2.CancelRenderRequest(id=job.id), timeout=30)

    def wait_for_streams(self, count: int, timeout_s: float = 300) -> None:
        """Until `count` long streams are open on the render process (its /metrics says so)."""
        deadline = time.monotonic() + timeout_s
        while (waiting := self._open_streams()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {waiting} of {count} waits open")
            time.sleep(0.2)

    def _open_streams(self) -> float:
        with urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith("carpet_grpc_long_streams_open "):
                    return float(line.split()[1])
        raise AssertionError("the render process reports no open streams")

    def stop(self) -> None:
        self.render.stop()
        self.credit.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="carpet-client-stack-") as directory:
        stack = ClientStack(directory, workers="--no-workers" not in sys.argv)
        try:
            print(json.dumps(stack.start()), flush=True)
            for line in sys.stdin:
                command = line.strip()
                if command == "stop render":
                    stack.render.kill()
                elif command == "start render":
                    stack.render.start()
                elif command.startswith("release crowd "):
                    stack.release_crowd(int(command.rsplit(" ", 1)[1]))
                print(json.dumps({"done": command}), flush=True)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
