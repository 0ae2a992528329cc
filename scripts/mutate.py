"""`make mutate`: mutation testing of the money, grants, audit, sign-in and policy modules with
cosmic-ray. Each module's mutants run against the tests that claim to check that module.

cosmic-ray writes each mutant into the source file on disk, so the run happens in a copy of
the repository (its tracked files and generated stubs) under var/mutate/, never in the
working tree. One session database per module is kept there, so an interrupted run goes on
where it stopped. `MODULE=credit_service/audit.py make mutate` runs one module, and with
`LINES=120-180` only the mutants of those lines (a function being worked on: about a minute).
With TEST_DATABASE_URL set, what survives SQLite runs again with the tests' PostgreSQL cases.
The last line printed is `mutation score: <killed>/<total> = <ratio>`; surviving mutants are
listed above it (docs/testing.md says why each that remains is harmless).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "mutate"
# Only the timeout plugin is loaded: the others (hypothesis, schemathesis) cost every mutant
# two seconds of start-up, and these tests do not use them.
PYTEST = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p pytest_timeout"

# Module -> the tests that claim to check it. Every mutant runs them on SQLite; with
# TEST_DATABASE_URL set, the survivors run them again with their PostgreSQL cases.
MODULES = {
    "credit_service/ledger.py": "tests/unit/domain/test_ledger.py "
                                "tests/unit/domain/test_ledger_edges.py "
                                "tests/integration/test_credit_ledger.py "
                                "tests/integration/test_credit_races.py "
                                "tests/integration/test_credit_idempotency.py",
    "credit_service/grants.py": "tests/unit/domain/test_grants.py "
                                "tests/integration/test_credit_grants.py "
                                "tests/e2e/test_grant_expiry.py",
    "credit_service/audit.py": "tests/unit/domain/test_audit.py "
                               "tests/integration/test_credit_verify.py "
                               "tests/security/test_verify_tampering.py "
                               "tests/integration/test_credit_security.py "
                               "tests/integration/test_migrations.py",
    "credit_service/verify.py": "tests/unit/domain/test_verify.py "
                                "tests/integration/test_credit_verify.py "
                                "tests/security/test_verify_tampering.py",
    # The end-to-end sign-in tests (tests/e2e/test_sign_in.py) take 90 s a run: every
    # surviving mutant would cost that, so the module's own tests here are the domain ones.
    "credit_service/signin.py": "tests/unit/domain/test_sign_in.py "
                                "tests/unit/test_sign_in_rules.py",
    "carpet_common/auth.py": "tests/unit/test_auth.py tests/integration/test_policy.py",
}


def copy_repository(copy: Path) -> None:
    """The tracked files and the generated stubs, fresh for every run."""
    if copy.exists():
        shutil.rmtree(copy)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    generated = [str(path.relative_to(ROOT)) for path in (ROOT / "protos").rglob("*_pb2*.py")]
    for name in filter(None, [*tracked, *generated]):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's type annotations are: with `from __future__ import annotations`
    they are never evaluated, so a mutant inside one (`int | None` -> `int - None`) is the same
    program, not a test's miss."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            annotations.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset))
                  for a in annotations]
    return spans


def skip_mutants(session: Path, module: str, copy: Path, lines: range | None) -> int:
    """Mark skipped (as cosmic-ray's own filters do) the mutants inside annotations and, with
    `lines`, those outside it; how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(copy / module)

    def skipped(mutation) -> bool:
        if lines is not None and mutation.start_pos[0] not in lines:
            return True
        return any(start <= tuple(mutation.start_pos) and tuple(mutation.end_pos) <= end
                   for start, end in spans)

    count = 0
    with use_db(str(session), mode=WorkDB.Mode.open) as work_db:
        for item in work_db.pending_work_items:
            if all(skipped(mutation) for mutation in item.mutations):
                work_db.set_result(item.job_id, WorkResult(
                    output=None, test_outcome=None, diff=None,
                    worker_outcome=WorkerOutcome.SKIPPED))
                count += 1
    return count


def _digest(paths: list[str]) -> str:
    return hashlib.sha256(b"".join(path.encode() + (ROOT / path).read_bytes()
                                   for path in paths)).hexdigest()


def run_module(module: str, tests: str, lines: range | None = None, postgres: str = ""
               ) -> tuple[int, int, list[str]]:
    """(killed, total, survivors) of one module's mutants (with `lines`, only those on them:
    a session of its own; with `postgres`, a database URL, the survivors run again with the
    tests' PostgreSQL cases)."""
    name = module.replace("/", "_").removesuffix(".py")
    if lines is not None:
        name += f"-lines-{lines.start}-{lines.stop - 1}"
    # One copy per module, so modules can run side by side (`MODULE=a.py make mutate` in one
    # shell, `MODULE=b.py` in another: one core each).
    copy = WORK / f"{name}.repository"
    copy_repository(copy)
    config, session = WORK / f"{name}.toml", WORK / f"{name}.sqlite"
    config.write_text(f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = 120.0\n'
                      f'excluded-modules = []\ntest-command = "{PYTEST} {tests}"\n\n'
                      f'[cosmic-ray.distributor]\nname = "local"\n')
    env = {**os.environ, "TEST_DATABASE_URL": "", "PYTHONPATH": str(copy),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    # A session is resumed for the same source; a changed source starts it afresh (the
    # mutants are positions in it). Changed tests run again only what survived the old ones.
    stamp = WORK / f"{name}.stamp"
    was = json.loads(stamp.read_text()) if stamp.exists() else {}
    now = {"source": _digest([module]), "tests": _digest(tests.split())}
    if session.exists() and was.get("source") != now["source"]:
        session.unlink()
    elif session.exists() and was.get("tests") != now["tests"]:
        with sqlite3.connect(session) as work_db:
            work_db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    stamp.write_text(json.dumps(now))
    if not session.exists():
        subprocess.run([*cosmic, "init", str(config), str(session)], cwd=copy, check=True,
                       env=env)
        print(f"{module}: {skip_mutants(session, module, copy, lines)} mutants skipped "
              f"(inside annotations{'' if lines is None else ', or off the lines asked for'})")
    subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=copy, check=True,
                   env=env)
    if postgres:
        # What survived SQLite runs again with the tests' PostgreSQL cases too: production's
        # engine refuses SQL that SQLite accepts (a boolean multiplied, LIKE on booleans), so a
        # mutant that only SQLite forgives is not counted as harmless.
        with sqlite3.connect(session) as work_db:
            work_db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
        subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=copy, check=True,
                       env={**env, "TEST_DATABASE_URL": postgres})
    dump = subprocess.run([*cosmic, "dump", str(session)], cwd=copy, check=True, env=env,
                          capture_output=True, text=True).stdout
    killed, total, survivors = 0, 0, []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None or result.get("test_outcome") in (None, "incompetent"):
            continue  # not run, skipped, or a mutant that is not valid code
        total += 1
        if result["test_outcome"] == "killed":
            killed += 1
        else:
            mutation = item["mutations"][0]
            survivors.append(f"{mutation['module_path']}:{mutation['start_pos'][0]} "
                             f"{mutation['definition_name']} {mutation['operator_name']} "
                             f"#{mutation['occurrence']}")
    return killed, total, survivors


def main() -> int:
    only = os.environ.get("MODULE")  # one module, or several separated by commas
    modules = {name: MODULES[name] for name in only.split(",")} if only else MODULES
    lines = None
    if os.environ.get("LINES"):  # LINES=120-180: the mutants of those lines only (one module)
        first, _, last = os.environ["LINES"].partition("-")
        lines = range(int(first), int(last or first) + 1)
    WORK.mkdir(parents=True, exist_ok=True)
    killed = total = 0
    for module, tests in modules.items():
        module_killed, module_total, survivors = run_module(
            module, tests, lines, os.environ.get("TEST_DATABASE_URL", ""))
        killed, total = killed + module_killed, total + module_total
        print(f"{module}: {module_killed}/{module_total} killed")
        for survivor in survivors:
            print(f"  survived: {survivor}")
    print(f"mutation score: {killed}/{total} = {killed / total if total else 0:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
