"""Domain code reads no clock and no randomness of its own: it takes `now` from its caller or
reads carpet_common.sources, which the deterministic simulation (tests/sim) replaces.

Checked here, in every module of credit_service and render_service except the adapters listed
in ADAPTERS (serving, wiring, outside I/O), each with why it may read the wall clock: no import
of `random`, `uuid` or `secrets`; from `time`, only `perf_counter` (a duration for a metric,
which never steers a decision); no `datetime.now()`, `utcnow()` or `today()`.

    python scripts/check_determinism.py   (exit 1 and one line per finding)
"""
from __future__ import annotations

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("credit_service", "render_service")
ADAPTERS = {
    # process wiring: where the real clock is chosen and handed to the domain code
    "credit_service/app.py", "render_service/__main__.py",
    # the gRPC layer: a stream's lifetime in real time
    "render_service/servicer.py",
    # outside I/O: the webhook sender's signature timestamp, the image API's retries
    "credit_service/webhooks/dispatcher.py",
    "render_service/renderers/http.py", "render_service/renderers/async_http.py",
}
BANNED_MODULES = {"random", "uuid", "secrets"}
ALLOWED_FROM_TIME = {"perf_counter"}
CLOCK_METHODS = {"now", "utcnow", "today"}


def _reads_wall_clock(function: ast.expr) -> bool:
    """`utcnow()`, or `now()`/`utcnow()`/`today()` of datetime or date (however imported)."""
    if isinstance(function, ast.Name):
        return function.id == "utcnow"
    if not isinstance(function, ast.Attribute) or function.attr not in CLOCK_METHODS:
        return False
    owner = function.value
    name = owner.id if isinstance(owner, ast.Name) else \
        owner.attr if isinstance(owner, ast.Attribute) else ""
    return name in ("datetime", "date", "convert")


def findings_in(path: pathlib.Path, relative: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{relative}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in BANNED_MODULES:
                    found.append(f"{where}: imports {alias.name} (use carpet_common.sources)")
        elif isinstance(node, ast.ImportFrom) and node.module in BANNED_MODULES | {"time"}:
            names = {alias.name for alias in node.names}
            if node.module != "time" or names - ALLOWED_FROM_TIME:
                found.append(f"{where}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "time" and node.attr not in ALLOWED_FROM_TIME:
            found.append(f"{where}: time.{node.attr} (take `now` from the caller)")
        elif isinstance(node, ast.Call) and _reads_wall_clock(node.func):
            found.append(f"{where}: {ast.unparse(node.func)}() reads the wall clock (take "
                         f"`now` from the caller, or carpet_common.sources.now())")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def findings() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in ADAPTERS and "/migrations/" not in relative:
                found.extend(findings_in(path, relative))
    return found


def main() -> int:
    found = findings()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
