"""What a newcomer hits first, with the real command lines: a command on a missing database
says so and creates nothing; the token command needs a unit on --ttl; log lines name their
process."""
import logging
import os
import subprocess
import sys

from carpet_common.logs import configure_logging
from tests.processes import ROOT


def run(args, cwd, **env):
    clean = {key: value for key, value in os.environ.items()
             if not key.endswith("_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60,
                          env={**clean, "PYTHONPATH": ROOT, **env})


def test_verify_on_a_missing_database_says_so_and_creates_nothing(tmp_path):
    for args in (("credit_service", "verify"), ("credit_service", "seed"),
                 ("render_service", "verify"), ("ops", "reconcile")):
        result = run(args, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "no database at " + str(tmp_path / "var") in result.stderr
        assert "Traceback" not in result.stderr
        assert list(tmp_path.iterdir()) == [], args  # no ./var, no empty database


def test_unreachable_postgresql_is_one_line_not_a_traceback(tmp_path):
    result = run(("credit_service", "verify"), tmp_path,
                 CREDIT_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert result.stderr.startswith("cannot open the database:")
    assert "Traceback" not in result.stderr


def test_token_ttl_needs_a_unit(tmp_path):
    env = {"JWT_SECRET": "a-jwt-secret-of-enough-length-0123456789"}
    bare = run(("admin_gateway", "token", "--sub", "ada", "--ttl", "15"), tmp_path, **env)
    assert bare.returncode == 2
    assert "ttl needs a unit" in bare.stderr
    minted = run(("admin_gateway", "token", "--sub", "ada", "--ttl", "15m"), tmp_path, **env)
    assert minted.returncode == 0 and minted.stdout.count(".") == 2


def test_log_lines_name_their_process(capfd):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("text", process="render_service")
        logging.getLogger("render_service.worker").warning("a line")
        configure_logging("json", process="credit_service")
        logging.getLogger("credit_service.app").warning("another line")
    finally:
        root.handlers[:], root.level = handlers, level
    text_line, json_line = capfd.readouterr().err.strip().splitlines()
    assert " render_service WARNING render_service.worker " in text_line
    assert '"process": "credit_service"' in json_line
