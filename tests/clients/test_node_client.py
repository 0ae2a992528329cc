"""@carpet/client (clients/node): `npm test` builds it (types generated from the protos by
proto-loader's generator) and runs Node's test runner against real processes it starts itself
(the render flow, a refused submission, a read retried through a restart, 500 waits at
once)."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "clients", "node")


def test_npm_test_passes_against_real_processes():
    npm = shutil.which("npm")
    assert npm, "npm is missing: make test installs it (scripts/ensure-test-tools.sh)"
    if not os.path.isdir(os.path.join(PACKAGE, "node_modules")):
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PACKAGE,
                                   capture_output=True, text=True, timeout=600)
        assert installed.returncode == 0, installed.stderr[-3000:]
    ran = subprocess.run([npm, "test"], cwd=PACKAGE, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "CARPET_PYTHON": sys.executable})
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-3000:]
    assert "# pass 5" in ran.stdout and "# fail 0" in ran.stdout
