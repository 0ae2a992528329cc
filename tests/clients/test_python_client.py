"""carpet-client (clients/python), installed with pip into a virtual environment of its own
(stubs generated at build time), driven against real credit and render processes: the render
flow with submit_and_wait, a refused submission as a typed error, a read retried through
a render-service restart, 500 submit_and_wait calls waiting at once, and a wait that outlives
a graceful restart."""
from __future__ import annotations

import json
import os
import subprocess
import time
import venv

import pytest

from tests.clients.stack import ClientStack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = """
import json, sys, time
from carpet_client import CarpetClient, Identity, InsufficientCredits, render_pb2
config = json.loads(sys.argv[1])
client = CarpetClient(config["render_addr"], config["credit_addr"],
                      Identity.service(config["service_token"]), timeout=30)
result = {}
if sys.argv[2] == "flow":
    corners = [(0.25, 0.6), (0.75, 0.6), (0.9, 0.95), (0.1, 0.95)]
    carpets = list(client.list_carpets(config["organization_id"]))
    result["catalogue"] = [[c.id, [[s.width_cm, s.length_cm] for s in c.sizes]] for c in carpets]
    job = client.submit_and_wait(config["organization_id"], config["carpet_id"], "preview",
                                 placement=corners, carpet_size_id=carpets[0].sizes[0].id)
    result["size"] = job.carpet_size_id == carpets[0].sizes[0].id
    result["placement"] = [[p.x, p.y] for p in job.placement.carpet_corners]
    result["status"] = render_pb2.RenderStatus.Name(job.status)
    result["charged"] = job.credits_charged
    picture, content_type = client.render_output(job.id)
    result["picture"] = [len(picture), content_type]
    result["balance"] = client.balance(config["organization_id"]).balance
    try:
        client.submit_render(config["broke_organization_id"], config["carpet_id"], "hd")
    except InsufficientCredits as error:
        result["refused"] = [type(error).__name__, error.reason, error.code.name]
    failed = list(client.list_renders(organization_id=config["broke_organization_id"]))
    result["kept"] = [(render_pb2.RenderStatus.Name(j.status), j.error_text) for j in failed]
    result["job_id"] = job.id
elif sys.argv[2] == "crowd":  # a shop's backend waiting on many shoppers' renders at once
    from concurrent.futures import ThreadPoolExecutor

    def shopper(_):
        return client.submit_and_wait(config["crowd_organization_id"], config["carpet_id"],
                                      "preview", timeout=300)

    with ThreadPoolExecutor(int(sys.argv[3])) as pool:
        jobs = list(pool.map(shopper, range(int(sys.argv[3]))))
    result["jobs"] = len({job.id for job in jobs})
    result["statuses"] = sorted({render_pb2.RenderStatus.Name(job.status) for job in jobs})
    result["errors"] = sorted({job.error_text for job in jobs})
else:
    started = time.monotonic()
    result["read"] = client.get_render(int(sys.argv[3])).id
    result["waited_s"] = round(time.monotonic() - started, 1)
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def client_python(tmp_path_factory):
    """A virtual environment with only carpet-client installed from the repository."""
    directory = tmp_path_factory.mktemp("client-venv")
    venv.create(directory, with_pip=True)
    python = str(directory / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q",
                                os.path.join(ROOT, "clients", "python")],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def run_client(python, config, *args, background=False):
    command = [python, "-c", SCRIPT, json.dumps(config), *map(str, args)]
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd="/")
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_python_client_against_real_services(client_python, tmp_path):
    stack = ClientStack(str(tmp_path))
    try:
        config = stack.start()
        result = run_client(client_python, config, "flow")
        assert (result["status"], result["charged"], result["balance"]) == (
            "RENDER_STATUS_SUCCESS", 1, 49)
        assert result["placement"] == [[0.25, 0.6], [0.75, 0.6], [0.9, 0.95], [0.1, 0.95]]
        assert result["catalogue"] == [[config["carpet_id"], [[120, 180]]]] and result["size"]
        assert result["picture"][0] > 1000 and result["picture"][1] == "image/png"
        assert result["refused"] == ["InsufficientCredits", "INSUFFICIENT_CREDITS",
                                     "FAILED_PRECONDITION"]
        assert result["kept"] == [["RENDER_STATUS_FAILED", "insufficient credits"]]

        # A read sent while the render service is down is retried until it is back.
        stack.render.kill()
        reader = run_client(client_python, config, "read", result["job_id"], background=True)
        time.sleep(1.5)
        assert reader.poll() is None  # still retrying
        stack.render.start()
        output, errors = reader.communicate(timeout=60)
        assert reader.returncode == 0, errors[-3000:]
        retried = json.loads(output)
        assert retried["read"] == result["job_id"] and retried["waited_s"] >= 1.5
    finally:
        stack.stop()


def test_five_hundred_concurrent_waits_against_one_render_process(client_python, tmp_path):
    """500 submit_and_wait calls at once (no render worker runs, so every one waits): the
    render process holds all 500 watches open, then every one returns its job once it ends."""
    stack = ClientStack(str(tmp_path), workers=False)
    try:
        config = stack.start()
        shoppers = run_client(client_python, config, "crowd", CROWD, background=True)
        stack.release_crowd(CROWD)
        output, errors = shoppers.communicate(timeout=300)
        assert shoppers.returncode == 0, errors[-3000:]
        assert json.loads(output) == {"jobs": CROWD, "statuses": ["RENDER_STATUS_FAILED"],
                                      "errors": ["canceled"]}
    finally:
        stack.stop()


CROWD = 500


def test_a_wait_outlives_a_graceful_restart_of_the_render_service(client_python, tmp_path):
    """A render service stopped gracefully ends its waiting streams with UNAVAILABLE; the
    client's wait opens its watch again on the restarted service and returns the job's end."""
    stack = ClientStack(str(tmp_path), workers=False)
    try:
        config = stack.start()
        shopper = run_client(client_python, config, "crowd", 1, background=True)
        stack.wait_for_streams(1)
        stack.render.stop()  # SIGTERM: the graceful stop
        stack.render.start()
        stack.release_crowd(1)  # only once the client watches again on the new process
        output, errors = shopper.communicate(timeout=120)
        assert shopper.returncode == 0, errors[-3000:]
        assert json.loads(output) == {"jobs": 1, "statuses": ["RENDER_STATUS_FAILED"],
                                      "errors": ["canceled"]}
    finally:
        stack.stop()


def test_nothing_generated_is_committed():
    tracked = subprocess.run(["git", "ls-files", "clients"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert not [path for path in tracked if path.endswith(("_pb2.py", "_pb2_grpc.py", ".pyi"))
                or "/generated/" in path]


def test_the_readmes_python_example_renders_on_a_fresh_clone(client_python, tmp_path):
    """Word for word against `make run` in a fresh directory (only the addresses swapped for
    free ports): the demo carpet 1 rendered into the demo room photo, one credit charged."""
    from tests.e2e.test_processes import base_env
    from tests.e2e.test_readme_examples import readme_block, with_addresses
    from tests.processes import make_run

    example = readme_block("Python (`pip install ./clients/python`", "python")
    with make_run(tmp_path, base_env(tmp_path)) as (env, _launcher):
        done = subprocess.run([client_python, "-c", with_addresses(example, env)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    status, charged, size, content_type = done.stdout.split()
    from protos.carpet.render.v1 import render_pb2

    assert (int(status), charged, content_type) == (render_pb2.RENDER_STATUS_SUCCESS, "1",
                                                    "image/png")
    assert int(size) > 10_000
