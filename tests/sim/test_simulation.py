"""The simulator's budget and its guarantees about itself: at least 100,000 steps over fixed
and fresh seeds (SQLite in memory), a run on PostgreSQL, replay exactness, and a failure shrunk,
saved and replayed (docs/reliability.md)."""
from __future__ import annotations

import logging
import random

import pytest

from credit_service import controls

from . import runner
from .world import PostgresDatabases

# Fixed seeds, each a run of RUN_STEPS; the first ones are seeds that found faults while the
# simulator was written (all in its reference model, none in the product): 1 (a refresh token
# refused after its expiry), 577090037 (a replayed submission counted as a new reservation
# against the spend limit).
FIXED_SEEDS = [1, 577090037, 7, 11, 42, *range(1000, 1020)]
FRESH_RUNS = 25
BUDGET_STEPS = (len(FIXED_SEEDS) + FRESH_RUNS) * runner.RUN_STEPS


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)  # the domain code's warnings about injected faults
    yield
    logging.disable(logging.NOTSET)


def _explain(result: runner.Result) -> str:
    shortest = runner.shrink(runner.plan(result.seed, result.steps_run), result.seed,
                             budget_s=60)
    listing = "\n".join(f"  {step}" for step in shortest)
    return (f"seed {result.seed} failed after step {result.failed_step}: {result.violations[:3]}"
            f"\nshortest failing plan found ({len(shortest)} steps):\n{listing}\n"
            f"replay: make sim SEED={result.seed} STEPS={result.steps_run}")


def test_a_hundred_thousand_steps_over_fixed_and_fresh_seeds_break_no_invariant(capsys):
    assert BUDGET_STEPS >= 100_000
    fresh = [random.SystemRandom().getrandbits(32) for _ in range(FRESH_RUNS)]
    steps = seconds = 0
    for seed in FIXED_SEEDS + fresh:
        result = runner.run(runner.plan(seed, runner.RUN_STEPS), seed)
        assert not result.failed, _explain(result)
        steps += result.steps_run
        seconds += result.seconds
    assert steps == BUDGET_STEPS
    with capsys.disabled():
        print(f"\nsimulation: {steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s); "
              f"fresh seeds {fresh}")


@pytest.mark.postgres
def test_the_simulation_on_postgresql():
    from tests.conftest import PG_URL

    databases = PostgresDatabases(PG_URL)
    for seed in (3, 4):
        result = runner.run(runner.plan(seed, 1500), seed, databases)
        assert not result.failed, result.violations[:3]
        assert result.steps_run == 1500


def test_a_run_replays_exactly_from_its_plan():
    steps = runner.plan(99, 1500)
    first, again = runner.run(steps, 99), runner.run(steps, 99)
    assert first.fingerprint == again.fingerprint and first.notes == again.notes
    # every kind of fault was injected
    for fault in ("the render process crashed", "the credit process crashed",
                  "credit process crashed during", "reply to", "image API hung",
                  "webhook receiver failed"):
        assert any(fault in note for note in first.notes), fault
    other = runner.run(runner.plan(98, 1500), 98)
    assert other.fingerprint != first.fingerprint


def test_a_failure_is_shrunk_saved_and_replayed(monkeypatch, tmp_path):
    monkeypatch.setattr(controls, "check_limits", lambda *args, **kwargs: None)
    results = runner.run_seeds(5, 20_000, report=lambda line: None)
    failed = results[-1]
    assert failed.failed and failed.violations[0].startswith("spend limit:")
    steps = runner.plan(failed.seed, failed.steps_run)
    shortest = runner.shrink(steps, failed.seed, budget_s=60)
    assert len(shortest) < len(steps) / 10
    path = str(tmp_path / "failure.json")
    runner.save(shortest, failed.seed, path)
    replayed = runner.run(*runner.load(path))
    assert replayed.failed and replayed.violations[0].startswith("spend limit:")
    assert replayed.fingerprint == runner.run(shortest, failed.seed).fingerprint
