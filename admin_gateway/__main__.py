"""python -m admin_gateway {serve,token}

`token --sub NAME --role ADMIN|STAFF [--org ID] --ttl 15m` prints a short-lived JWT signed with
JWT_SECRET, for grpcurl, curl or the admin page."""
from __future__ import annotations

import logging
import re
import sys

from carpet_common.auth import ROLE_ADMIN, ROLE_STAFF, mint_jwt
from carpet_common.cli import exit_when_unable_to_listen, refuse_plaintext_beyond_loopback, start
from carpet_common.server import catch_stop_signals, run_until_signal

logger = logging.getLogger("admin_gateway")
MAX_TTL_S = 24 * 60 * 60


def parse_ttl(text: str) -> int:
    # The unit is required: a bare "15" read as seconds was a surprise to people expecting
    # minutes.
    match = re.fullmatch(r"(\d+)([smh])", text.strip())
    if not match:
        raise ValueError("ttl needs a unit: like 90s, 15m or 2h")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    if not 0 < seconds <= MAX_TTL_S:
        raise ValueError("ttl must be between 1 s and 24 h")
    return seconds


def _token_arguments(parser) -> None:
    parser.add_argument("--sub", help="the admin's name (the audit actor)")
    parser.add_argument("--role", choices=(ROLE_ADMIN, ROLE_STAFF), default=ROLE_ADMIN)
    parser.add_argument("--org", type=int, help="organisation id (required for STAFF)")
    parser.add_argument("--ttl", default="15m", help="lifetime, e.g. 15m (at most 24h)")


def main(argv: list[str] | None = None) -> int:
    args, settings = start("admin_gateway", ("serve", "token"), argv, _token_arguments)

    if args.command == "token":
        if not args.sub:
            print("token: --sub is required", file=sys.stderr)
            return 2
        if args.role == ROLE_STAFF and args.org is None:
            print("token: a STAFF token needs --org", file=sys.stderr)
            return 2
        if args.org is not None and args.org <= 0:
            print("token: --org must be a positive organisation id", file=sys.stderr)
            return 2
        if not settings.jwt_secret:
            print("token: JWT_SECRET is not set", file=sys.stderr)
            return 2
        try:
            ttl = parse_ttl(args.ttl)
        except ValueError as error:
            print(f"token: {error}", file=sys.stderr)
            return 2
        print(mint_jwt(settings, args.sub, args.role, ttl, args.org))
        return 0

    from admin_gateway.app import start_gateway

    catch_stop_signals()  # before anything answers: a stop asked during start-up is kept
    refuse_plaintext_beyond_loopback(settings, ("ADMIN_GRPC_ADDR", settings.admin_grpc_addr),
                                     ("ADMIN_HTTP_ADDR", settings.admin_http_addr))

    with exit_when_unable_to_listen():
        gateway = start_gateway(settings, settings.admin_grpc_addr, settings.admin_http_addr)
    logger.info("admin gateway listening on %s (gRPC) and http://%s/admin/",
                settings.admin_grpc_addr, settings.admin_http_addr)
    run_until_signal([gateway.grpc], on_stop=gateway.http.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
