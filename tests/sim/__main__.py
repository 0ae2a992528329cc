"""`make sim SEED=… STEPS=…`: a long simulation, or the replay of a saved failure.

    python -m tests.sim --seed 42 --steps 1000000 [--database postgresql://…]
    python -m tests.sim --replay sim-failure-42.json
"""
from __future__ import annotations

import argparse
import logging
import random
import sys
import time

from . import runner
from .world import PostgresDatabases, SqliteDatabases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--database", default="", help="a PostgreSQL URL (default: SQLite "
                                                       "in memory)")
    parser.add_argument("--replay", default="", help="a saved failing plan to run again")
    parser.add_argument("--shrink-seconds", type=float, default=300.0)
    options = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the domain code's warnings about injected faults
    databases = PostgresDatabases(options.database) if options.database else SqliteDatabases()
    if options.replay:
        steps, seed = runner.load(options.replay)
        result = runner.run(steps, seed, databases)
        _print_failure(result, steps)
        return 1 if result.failed else 0
    seed = options.seed if options.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"simulating {options.steps} steps from seed {seed} on {databases.name}", flush=True)
    started = time.perf_counter()
    results = runner.run_seeds(seed, options.steps, databases,
                               report=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - started
    steps = sum(result.steps_run for result in results)
    print(f"{steps} steps in {len(results)} runs, {seconds:.1f} s: "
          f"{steps / seconds:.0f} steps/s", flush=True)
    failed = results[-1]
    if not failed.failed:
        return 0
    print(f"shrinking the failing run (seed {failed.seed}, up to "
          f"{options.shrink_seconds:.0f} s)...", flush=True)
    shortest = runner.shrink(runner.plan(failed.seed, failed.steps_run), failed.seed,
                             budget_s=options.shrink_seconds, databases=databases)
    path = f"sim-failure-{failed.seed}.json"
    runner.save(shortest, failed.seed, path)
    _print_failure(runner.run(shortest, failed.seed, databases), shortest)
    print(f"replay: python -m tests.sim --replay {path}   "
          f"(or make sim SEED={failed.seed} STEPS={failed.steps_run})")
    return 1


def _print_failure(result: runner.Result, steps: list[runner.Step]) -> None:
    if not result.failed:
        print(f"{len(steps)} steps: no invariant broken")
        return
    print(f"{len(steps)} steps, failing after step {result.failed_step}:")
    for number, step in enumerate(steps):
        print(f"  {number:5d} {step}")
    for violation in result.violations[:10]:
        print(f"  VIOLATION {violation}")


if __name__ == "__main__":
    sys.exit(main())
