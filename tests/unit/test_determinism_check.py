"""The lint check that keeps domain code free of its own clock and randomness (the simulator
replaces carpet_common.sources; code that reads the wall clock itself would escape it)."""
from __future__ import annotations

import importlib.util
import pathlib
import random

from carpet_common import sources

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_determinism",
                                               ROOT / "scripts" / "check_determinism.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def test_domain_code_reads_no_clock_or_randomness_of_its_own():
    assert check.findings() == []


def test_each_kind_of_escape_is_found(tmp_path):
    module = tmp_path / "planted.py"
    module.write_text(
        "import datetime\nimport secrets\nimport time\nfrom uuid import uuid4\n"
        "from carpet_common.convert import utcnow\n"
        "a = datetime.datetime.now()\nb = datetime.date.today()\nc = time.time()\n"
        "d = utcnow()\ne = time.perf_counter()\n")
    found = check.findings_in(module, "planted.py")
    assert [line.split(":")[1] for line in found] == ["2", "4", "6", "7", "8", "9"]
    assert "imports secrets" in found[0] and "imports from uuid" in found[1]
    assert "time.time" in found[4]


def test_the_simulated_sources_replace_clock_and_randomness_and_are_put_back():
    import datetime

    moment = datetime.datetime(2030, 1, 2, 3, 4, 5)
    with sources.simulated(lambda: moment, random.Random(7)):
        first = (sources.now(), sources.token_hex(4), sources.unique_hex())
    with sources.simulated(lambda: moment, random.Random(7)):
        again = (sources.now(), sources.token_hex(4), sources.unique_hex())
    assert first == again and first[0] == moment and len(first[2]) == 32
    assert sources.now() != moment and sources.token_hex(16) != sources.token_hex(16)
