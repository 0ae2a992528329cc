"""python -m render_service {serve,migrate,seed,verify}"""
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
from render_service import migrations
from render_service.models import database

logger = logging.getLogger("render_service")


def main(argv: list[str] | None = None) -> int:
    args, settings = start("render_service", ("serve", "migrate", "seed", "verify"), argv)
    if args.command in ("seed", "verify"):  # these need the migrated database: never create one
        db = open_existing_database(database, settings.render_database_url)
    else:
        db = bind_database(database, settings.render_database_url,
                           max_connections=settings.db_max_connections)

    if args.command == "migrate":
        applied = apply_migrations(db, migrations.DIRECTORY)
        print("render: applied " + ", ".join(applied) if applied else "render: schema up to date")
        return 0

    if args.command == "seed":
        from render_service.demo import seed_demo_catalogue
        from render_service.models import utcnow

        with db.connection_context():
            carpets = seed_demo_catalogue(utcnow())
        print("seed: demo carpets " + ", ".join(f"{c.id} {c.sku}" for c in carpets) if carpets
              else "seed: the catalogue has carpets already")
        return 0

    if args.command == "verify":
        from render_service.verify import count_problems

        with db.connection_context():
            return report(list(count_problems()), "render invariants hold "
                          "(charges across both databases: python -m ops reconcile)")

    refuse_plaintext_beyond_loopback(settings, ("RENDER_ADDR", settings.render_addr))
    return serve_in_processes(settings.server_processes, lambda index: serve(settings, index))


def serve(settings, process_index: int) -> int:
    catch_stop_signals()  # before anything answers: a stop asked during start-up is kept
    from carpet_common.metrics import serve_metrics
    from render_service.app import build_server, build_workers, credit_channel, register_gauges
    from render_service.credit_client import CreditClient

    if settings.metrics_addr:
        register_gauges()
        serve_metrics(settings.metrics_addr, process_index)
    channel = credit_channel(settings)
    with exit_when_unable_to_listen():
        running, port = build_server(settings, settings.render_addr, channel=channel)
    workers = build_workers(settings, credit=CreditClient(channel))
    workers.start()
    logger.info("render service listening on %s (port %d, process %d), %d workers",
                settings.render_addr, port, process_index, settings.render_workers)
    run_until_signal([running], on_stop=workers.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
