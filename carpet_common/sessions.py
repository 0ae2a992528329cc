"""Which sign-in sessions have ended, as every process that checks access tokens sees it.

An access token is a JWT: it is checked without asking anyone, so ending its session (logout,
a reused refresh token, a password change, deactivation) cannot reach it by itself. Each process
keeps the ids of ended sessions (those whose access tokens may still be unexpired) and refreshes
them every SESSION_CHECK_INTERVAL (default 15 s), so such a token stops working everywhere within
that interval plus one round trip: well within the minute docs/security.md promises. The
credit service reads its own table; the render service and the gateway ask it
(AuthService.ListRevokedSessions). When a refresh fails the previous list stays in force and
the failure is logged.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import grpc

from carpet_common.periodic import Periodic

logger = logging.getLogger(__name__)


class RevokedSessions:
    def __init__(self, load: Callable[[], Iterable[str]], interval_s: float):
        self._load = load
        self._ids: frozenset[str] = frozenset()
        self._periodic = Periodic("revoked-sessions", interval_s, self.refresh)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids

    def refresh(self) -> None:
        self._ids = frozenset(self._load())

    def start(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the credit service may start after us; next round
            logger.warning("ended sessions not loaded yet; retrying every round")
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


def revoked_sessions_via(channel: grpc.Channel, interval_s: float) -> RevokedSessions:
    """The ended sessions as the credit service, reached through `channel`, lists them."""
    from protos.carpet.credit.v1 import auth_pb2, auth_pb2_grpc

    stub = auth_pb2_grpc.AuthServiceStub(channel)

    def load() -> list[str]:
        return list(stub.ListRevokedSessions(auth_pb2.ListRevokedSessionsRequest(),
                                             timeout=5).session_ids)

    return RevokedSessions(load, interval_s)
