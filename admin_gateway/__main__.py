"""python -m admin_gateway serve"""
from __future__ import annotations

import argparse
import logging
import sys

from carpet_common.logs import configure_logging
from carpet_common.server import run_until_signal
from carpet_common.settings import SettingsError, load_settings

logger = logging.getLogger("admin_gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin_gateway")
    parser.add_argument("command", choices=("serve",))
    parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)

    from admin_gateway.app import build_server

    running, port = build_server(settings, settings.admin_grpc_addr)
    logger.info("admin gateway listening on %s (port %d)", settings.admin_grpc_addr, port)
    run_until_signal([running])
    return 0


if __name__ == "__main__":
    sys.exit(main())
