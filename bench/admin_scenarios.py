"""The admin scenarios' environment: a render database of its own grown to 1,000 and then to
1,000,000 jobs, a render service on it (no workers) and the admin gateway in front of it and
of the bench's credit service. The gateway is driven over gRPC with the admin token."""
from __future__ import annotations

import datetime
import os
import time

from bench.environment import RESULTS_DIR, ServerProcess, free_address, fresh_database_url, run_cli
from bench.history import HISTORY_START, grow_history

HISTORY_ORGANIZATIONS = 50
HISTORY_USERS = 20


def _add_users(credit_url: str, organizations: list[int]) -> int:
    """Users of the first organisations, for the gateway's one batched user look-up per page;
    returns the first user id (ids are consecutive)."""
    from carpet_common.db import bind_database
    from credit_service import models

    database = bind_database(models.database, credit_url)
    with database.connection_context(), database.atomic():
        models.User.insert_many([
            {"organization": organizations[i % len(organizations)], "name": f"Bench user {i}",
             "email": f"bench-{i}@example.com", "role": "STAFF", "created_at": models.utcnow()}
            for i in range(HISTORY_USERS)]).execute()
        first = models.User.select(models.User.id).order_by(models.User.id).first().id
    if hasattr(database, "close_all"):
        database.close_all()
    return first


def _stamp(moment: datetime.datetime) -> str:
    return moment.isoformat() + "Z"


class AdminBench:
    def __init__(self, base_url: str | None, credit_env: dict, credit_address: str,
                 organizations: list[int]):
        from carpet_common.db import bind_database
        from render_service import models

        self._render_env = {**credit_env, "CREDIT_ADDR": credit_address,
                            "RENDER_DATABASE_URL": fresh_database_url(base_url, "admin_render"),
                            "RENDER_WORKERS": "0",
                            "RENDER_STORAGE_DIR": os.path.join(RESULTS_DIR, "renders")}
        migrated = run_cli("render_service", "migrate", self._render_env)
        if migrated.returncode != 0:
            raise RuntimeError(migrated.stderr)
        self._organizations = organizations[:HISTORY_ORGANIZATIONS]
        self._first_user = _add_users(credit_env["CREDIT_DATABASE_URL"], self._organizations)
        self._database = bind_database(models.database, self._render_env["RENDER_DATABASE_URL"])
        self._carpet = self._create_carpet()
        render_address, admin_address = free_address(), free_address()
        self._servers = [ServerProcess("render_service",
                                       {**self._render_env, "RENDER_ADDR": render_address},
                                       render_address)]
        self.http_address = free_address()
        self.gateway = ServerProcess("admin_gateway", {
            **credit_env, "CREDIT_ADDR": credit_address, "RENDER_ADDR": render_address,
            "ADMIN_GRPC_ADDR": admin_address, "ADMIN_HTTP_ADDR": self.http_address,
            "RATE_LIMIT_ADMIN": "off"}, admin_address)
        self._servers.append(self.gateway)
        self.address = admin_address

    @property
    def server_pids(self) -> dict[str, int]:
        return {server.module: server.pid for server in self._servers}

    def _create_carpet(self) -> int:
        from render_service import models
        from tests.fake_image_api import tiny_png

        with self._database.connection_context():
            return models.Carpet.create(sku="HISTORY-1", name="History kilim", image=tiny_png(),
                                        image_content_type="image/png").id

    def grow(self, total: int) -> dict:
        """Grow the history to `total` jobs; returns the workloads' config for this size."""
        grow_history(self._database, total, first_org=min(self._organizations),
                     orgs=len(self._organizations), first_user=self._first_user,
                     users=HISTORY_USERS, carpet=self._carpet)
        middle = HISTORY_START + datetime.timedelta(seconds=total // 2)
        return {"admin_address": self.address, "deep_page_token": self._middle_token(),
                "history_first_day": HISTORY_START.date().isoformat(),
                # 1,000 jobs, one a second: all of them at 1k, a slice of the middle at 1M.
                "export_window": (_stamp(middle - datetime.timedelta(seconds=500)),
                                  _stamp(middle + datetime.timedelta(seconds=500)))
                if total > 1000 else (_stamp(HISTORY_START),
                                      _stamp(HISTORY_START + datetime.timedelta(seconds=1000)))}

    def _middle_token(self) -> str:
        from carpet_common.paging import encode_token
        from render_service import models

        job = models.RenderJob
        with self._database.connection_context():
            count = job.select().count()
            middle = (job.select(job.id, job.created_at)
                      .order_by(job.created_at.desc(), job.id.desc())
                      .offset(count // 2).limit(1).get())  # once, to find the spot
        return encode_token(middle.created_at, middle.id)

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        if hasattr(self._database, "close_all"):
            self._database.close_all()

    def export_everything(self, admin_token: str) -> dict:
        """One CSV export of the whole history over HTTP, read as it streams, with the gateway
        process's resident memory sampled: before, and the highest seen while streaming."""
        import urllib.request

        before = self.gateway.rss_kb()
        peak, rows, started = before, 0, time.monotonic()
        request = urllib.request.Request(f"http://{self.http_address}/admin/renders.csv",
                                         headers={"x-admin-token": admin_token})
        with urllib.request.urlopen(request, timeout=3600) as response:
            while chunk := response.read(1 << 20):
                rows += chunk.count(b"\n")
                peak = max(peak, self.gateway.rss_kb())
        return {"rows": rows - 1, "seconds": round(time.monotonic() - started, 1),
                "gateway_rss_mb_before": round(before / 1024, 1),
                "gateway_rss_mb_peak": round(peak / 1024, 1)}
