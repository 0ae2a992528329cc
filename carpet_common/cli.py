"""The start of every process's command line: parse the command, read the settings once
(refusing to start on a bad one), configure logging."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from carpet_common.logs import configure_logging
from carpet_common.settings import Settings, SettingsError, load_settings


def start(prog: str, commands: Sequence[str], argv: list[str] | None = None,
          add_arguments=None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("command", choices=tuple(commands))
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        # The message names the setting, never its value.
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format)
    return args, settings


def report(problems: list[str], all_good: str) -> int:
    """Print a verify report: one line per problem, then a summary; the exit code."""
    for problem in problems:
        print(problem)
    print(f"verify: {len(problems)} problem(s)" if problems else f"verify: {all_good}")
    return 1 if problems else 0
