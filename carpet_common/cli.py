"""The start of every process's command line: parse the command, read the settings once
(refusing to start on a bad one), configure logging."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from peewee import Database, DatabaseProxy, OperationalError
from playhouse.db_url import parse as parse_db_url

from carpet_common import tracing
from carpet_common.db import bind_database, engine_name
from carpet_common.logs import configure_logging
from carpet_common.settings import Settings, SettingsError, load_settings


def start(prog: str, commands: Sequence[str], argv: list[str] | None = None,
          add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
          ) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("command", choices=tuple(commands))
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    # What the services write (SQLite databases and their journals, stored pictures, exports)
    # holds password hashes and shoppers' room photos: readable by this user only.
    os.umask(0o077)
    try:
        settings = load_settings()
        tracing.configure(prog)
    except SettingsError as error:
        # The message names the setting, never its value.
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format, process=prog)
    # The GIL's switch interval stays Python's (5 ms). The synchronous server ran with 0.5 ms,
    # so a thread holding a hot row's lock got the GIL back sooner; on the asyncio server the
    # event loop and the worker threads then traded the GIL ten times as often, and a call
    # cost a third more CPU (docs/performance.md, "Serving on asyncio").
    return args, settings


def report(problems: list[str], all_good: str) -> int:
    """Print a verify report: one line per problem, then a summary; the exit code."""
    for problem in problems:
        print(problem)
    print(f"verify: {len(problems)} problem(s)" if problems else f"verify: {all_good}")
    return 1 if problems else 0


def refuse_plaintext_beyond_loopback(settings: Settings, *listeners: tuple[str, str]) -> None:
    """Exit 2 when a listener (`(SETTING, address)`) would serve plaintext beyond this
    machine without ALLOW_PLAINTEXT=1 (see carpet_common.server.check_listen_address)."""
    from carpet_common.server import check_listen_address, tls_files

    try:
        for setting, address in listeners:
            # The gateway's HTTP side has no TLS of its own: beyond loopback it belongs behind
            # a TLS-terminating proxy.
            tls = bool(tls_files(settings)) and setting != "ADMIN_HTTP_ADDR"
            check_listen_address(setting, address, tls=tls,
                                 allow_plaintext=settings.allow_plaintext)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def exit_when_unable_to_listen() -> Iterator[None]:
    """A listening address that cannot be bound (taken, or not this machine's) is said in one
    line and ends the process with exit 2, instead of a traceback."""
    try:
        yield
    except OSError as error:
        print(f"cannot listen: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def open_existing_database(proxy: DatabaseProxy, url: str, *,
                           max_connections: int = 20) -> Database:
    """Bind `proxy` to the database at `url`, for commands that read or change an existing one
    (verify, seed, reconcile): a missing SQLite file or an unreachable PostgreSQL database is
    said plainly (exit 2) and nothing is created."""
    if engine_name(url) == "sqlite":
        path = parse_db_url(url)["database"]
        if not os.path.exists(path):
            print(f"no database at {os.path.abspath(path)}: set the *_DATABASE_URL setting, "
                  f"or run `make migrate` first (run from the project folder)", file=sys.stderr)
            raise SystemExit(2)
    database = bind_database(proxy, url, max_connections=max_connections)
    try:
        database.connect(reuse_if_open=True)
        database.close()
    except OperationalError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        print(f"cannot open the database: {first_line}", file=sys.stderr)
        raise SystemExit(2) from None
    return database
