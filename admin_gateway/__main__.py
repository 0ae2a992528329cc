"""python -m admin_gateway serve"""
from __future__ import annotations

import logging
import sys

from carpet_common.cli import start
from carpet_common.server import run_until_signal

logger = logging.getLogger("admin_gateway")


def main(argv: list[str] | None = None) -> int:
    _, settings = start("admin_gateway", ("serve",), argv)

    from admin_gateway.app import build_server

    running, port = build_server(settings, settings.admin_grpc_addr)
    logger.info("admin gateway listening on %s (port %d)", settings.admin_grpc_addr, port)
    run_until_signal([running])
    return 0


if __name__ == "__main__":
    sys.exit(main())
