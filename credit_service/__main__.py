"""python -m credit_service {serve,migrate,seed,verify}"""
from __future__ import annotations

import argparse
import logging
import sys

from carpet_common.db import bind_database
from carpet_common.logs import configure_logging
from carpet_common.migrate import apply_migrations
from carpet_common.server import run_until_signal
from carpet_common.settings import SettingsError, load_settings
from credit_service import migrations
from credit_service.models import database

logger = logging.getLogger("credit_service")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m credit_service")
    parser.add_argument("command", choices=("serve", "migrate", "seed", "verify"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format)
    db = bind_database(database, settings.credit_database_url,
                       max_connections=settings.db_max_connections)

    if args.command == "migrate":
        applied = apply_migrations(db, migrations.DIRECTORY)
        print("credit: applied " + ", ".join(applied) if applied else "credit: schema up to date")
        return 0

    if args.command == "seed":
        from credit_service.seed import seed

        with db.connection_context():
            result = seed(settings)
        print(f"seed: organisation {result.organization_id}, admin user {result.admin_user_id}; "
              + ("created " + ", ".join(result.created) if result.created else "nothing to do"))
        return 0

    if args.command == "verify":
        from credit_service.verify import verify_credit

        with db.connection_context():
            problems = verify_credit()
        for problem in problems:
            print(problem)
        print(f"verify: {len(problems)} problem(s)" if problems else "verify: all invariants hold")
        return 1 if problems else 0

    from credit_service.app import HoldSweeper, build_server, system_clock

    running, port = build_server(settings, settings.credit_addr)
    sweeper = HoldSweeper(clock=system_clock)
    sweeper.start()
    logger.info("credit service listening on %s (port %d)", settings.credit_addr, port)
    run_until_signal([running], on_stop=sweeper.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
