"""The README's render examples, word for word, against `make run` on a fresh directory: the
demo catalogue is there, and the internal backend's grpcurl calls list it and submit a render
(only the addresses are swapped for free ports, and `grpcurl` for the binary's path)."""
import json
import os
import re
import subprocess
import sys

from tests.e2e.test_processes import base_env
from tests.processes import ROOT, make_run

GRPCURL = os.path.join(os.path.dirname(sys.executable), "grpcurl")
DEMO_SKUS = ["DEMO-KILIM-160x230", "DEMO-MEDALLION-200x300", "DEMO-RUNNER-80x250"]


def readme_block(after: str, language: str) -> str:
    """The first ```language block following the line that starts with `after`."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as readme:
        text = readme.read()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def with_addresses(block: str, env: dict[str, str]) -> str:
    return (block.replace("127.0.0.1:50051", env["CREDIT_ADDR"])
            .replace("127.0.0.1:50052", env["RENDER_ADDR"])
            .replace("127.0.0.1:50053", env["ADMIN_GRPC_ADDR"]))


def test_the_internal_backends_grpcurl_example_renders_on_a_fresh_clone(tmp_path):
    block = readme_block("An internal backend calls the render service directly", "sh")
    with make_run(tmp_path, base_env(tmp_path)) as (env, _launcher):
        commands = with_addresses(block, env).replace("grpcurl ", f"{GRPCURL} ")
        # Each grpcurl call prints one JSON document: the carpets, then the submitted job.
        result = subprocess.run(["bash", "-e", "-c", commands], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        listed, submitted = json.loads("[" + re.sub(r"}\s*{", "},{", result.stdout) + "]")
        assert {carpet["id"]: carpet["sku"] for carpet in listed["carpets"]} == dict(
            zip(["1", "2", "3"], DEMO_SKUS, strict=True))  # carpet 1 as the README names it
        assert (submitted["carpet_id"], submitted["organization_id"], submitted["mode"],
                submitted["status"]) == ("1", "1", "preview", "RENDER_STATUS_QUEUED")
        room = tmp_path / "var" / "demo_room.jpg"
        assert room.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG for the Python example
