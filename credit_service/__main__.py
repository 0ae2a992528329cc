"""python -m credit_service {serve,migrate,seed,verify}"""
from __future__ import annotations

import logging
import sys

from carpet_common.cli import (
    exit_when_unable_to_listen,
    open_existing_database,
    refuse_plaintext_beyond_loopback,
    report,
    start,
)
from carpet_common.db import bind_database
from carpet_common.migrate import apply_migrations
from carpet_common.server import catch_stop_signals, run_until_signal, serve_in_processes
from credit_service import audit, migrations
from credit_service.models import database

logger = logging.getLogger("credit_service")


def main(argv: list[str] | None = None) -> int:
    args, settings = start("credit_service", ("serve", "migrate", "seed", "verify"), argv)
    if args.command in ("seed", "verify"):  # these need the migrated database: never create one
        db = open_existing_database(database, settings.credit_database_url)
    else:
        db = bind_database(database, settings.credit_database_url,
                           max_connections=settings.db_max_connections)

    if args.command == "migrate":
        applied = apply_migrations(db, migrations.DIRECTORY)
        print("credit: applied " + ", ".join(applied) if applied else "credit: schema up to date")
        if settings.audit_hmac_key:
            audit.use_key(settings.audit_hmac_key)
            try:
                with db.connection_context():
                    if audit.seal_chain():
                        print("credit: audit chain keyed with AUDIT_HMAC_KEY")
            except audit.ChainBroken as error:
                print(f"credit: {error}; run verify and investigate", file=sys.stderr)
                return 1
        return 0

    if not settings.audit_hmac_key:
        print("configuration error: AUDIT_HMAC_KEY is not set (the audit chain is keyed with "
              "it; make run generates one)", file=sys.stderr)
        return 2
    audit.use_key(settings.audit_hmac_key)

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
            return report(verify_credit(), "all invariants hold")

    refuse_plaintext_beyond_loopback(settings, ("CREDIT_ADDR", settings.credit_addr))
    return serve_in_processes(settings.server_processes, lambda index: serve(settings, index))


def serve(settings, process_index: int) -> int:
    catch_stop_signals()  # before anything answers: a stop asked during start-up is kept
    from carpet_common.metrics import serve_metrics
    from credit_service.app import (
        build_server,
        hold_sweeper,
        record_cleaner,
        register_gauges,
        system_clock,
        webhook_dispatcher,
    )

    # Metrics first: a process never answers calls it could not yet be observed answering.
    if settings.metrics_addr:
        register_gauges()
        serve_metrics(settings.metrics_addr, process_index)
    with exit_when_unable_to_listen():
        running, port = build_server(settings, settings.credit_addr)
    sweeper = hold_sweeper(clock=system_clock)
    cleaner = record_cleaner(settings, clock=system_clock)
    dispatcher = webhook_dispatcher(settings, system_clock)
    sweeper.start()
    cleaner.start()
    dispatcher.start()
    logger.info("credit service listening on %s (port %d, process %d)", settings.credit_addr,
                port, process_index)
    def stop_background() -> None:
        sweeper.stop()
        cleaner.stop()
        dispatcher.stop()

    run_until_signal([running], on_stop=stop_background)
    return 0


if __name__ == "__main__":
    sys.exit(main())
