"""Plans, runs, replays and shrinks simulations.

A plan is a list of steps drawn from a seed before anything runs: the operation, a number the
operation draws its parameters from, and the step's faults (a crash before its n-th statement,
a lost reply on its n-th call to the credit service). Running a plan is deterministic: the same
plan on a fresh database does the same thing every time (the clock, randomness and every
outside answer come from the plan). A failing plan is shrunk by dropping steps while it still
fails the same way; the shortest one found is printed, and saved so it can be replayed.

    python -m tests.sim --seed 42 --steps 100000          (make sim SEED=42 STEPS=100000)
    python -m tests.sim --replay sim-failure-42.json
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import random
import time
from collections.abc import Callable

from peewee import SQL, IntegrityError

from carpet_common import errors

from . import operations
from .model import Model
from .world import SimulatedCrash, SqliteDatabases, World

NAMES = list(operations.OPERATIONS)
WEIGHTS = [weight for _, weight in operations.OPERATIONS.values()]
RUN_STEPS = 2000  # a long simulation is runs of this many steps, each on fresh databases
CRASH_RATE, LOST_REPLY_RATE = 0.06, 0.05
MAX_TICK_S = 8
DRAIN_ROUNDS = 40
NON_NEGATIVE_COLUMNS = ("held", "balance", "remaining", "amount")  # CHECKs of the money


@dataclasses.dataclass(frozen=True)
class Step:
    operation: str
    draw: int
    crash_at: int = 0  # crash before this statement (or commit) of the step; 0: none
    lose_reply_at: int = 0  # lose the reply of this call to the credit service; 0: none

    def __str__(self) -> str:
        faults = (f" crash@{self.crash_at}" if self.crash_at else "") + \
                 (f" lose-reply@{self.lose_reply_at}" if self.lose_reply_at else "")
        return f"{self.operation}({self.draw}){faults}"


def plan(seed: int, steps: int) -> list[Step]:
    rng = random.Random(seed)
    made = []
    for _ in range(steps):
        operation = rng.choices(NAMES, WEIGHTS)[0]
        draw = rng.getrandbits(32)
        crash_at = rng.randint(1, 14) if rng.random() < CRASH_RATE else 0
        lose_reply_at = rng.randint(1, 3) if rng.random() < LOST_REPLY_RATE else 0
        made.append(Step(operation, draw, crash_at, lose_reply_at))
    return made


@dataclasses.dataclass
class Result:
    seed: int
    steps_run: int
    violations: list[str]
    failed_step: int | None  # index of the step after which the first violation was seen
    seconds: float
    notes: list[str]
    fingerprint: str = ""  # of every ledger row and the audit chain's head, for replay checks

    @property
    def failed(self) -> bool:
        return bool(self.violations)


def _step(world: World, step: Step) -> None:
    world.step_random = random.Random(step.draw)
    world.advance(datetime.timedelta(seconds=world.step_random.randint(0, MAX_TICK_S)))
    world.faults.plan(step.crash_at, step.lose_reply_at)
    operation, _ = operations.OPERATIONS[step.operation]
    try:
        operation(world, world.step_random)
    except SimulatedCrash as crash:
        world.note(f"{step}: the {crash.process} process crashed")
        world.crashed(crash.process)
    except errors.Unavailable:
        pass  # a background round met an unavailable credit service: it runs again later
    except IntegrityError as error:
        # The database's own CHECKs are the last line: domain code never reaches them.
        text = str(error).lower()
        negative = "check" in text and any(word in text for word in NON_NEGATIVE_COLUMNS)
        kind = "nothing negative" if negative else "unexpected error"
        world.violation(f"{kind}: the database refused {step}: {error}")
    except Exception as error:  # noqa: BLE001 - an error the domain code should not raise
        world.violation(f"unexpected error in {step}: {type(error).__name__}: {error}")
    finally:
        world.faults.plan()


def drain(world: World) -> None:
    """No more clients or faults: the background work runs until nothing is left to do, with
    time moving past every lease, hold and grant."""
    for _ in range(DRAIN_ROUNDS):
        for name in ("work_all", "settle", "relay", "relay", "deliver_webhooks", "sweep_holds",
                     "expire_grants"):
            _step(world, Step(name, 0))
        world.advance(datetime.timedelta(minutes=20))
    world.in_hand.clear()


def run(steps: list[Step], seed: int, databases=None) -> Result:
    """Run `steps` on fresh databases with invariants checked after each, up to the first
    violation; at the end (when nothing failed) drain the background work and check every
    ledger at rest."""
    databases = databases or SqliteDatabases()
    model = Model()
    started = time.perf_counter()
    world = World(seed, databases, model)
    world.clients = operations.Clients()
    failed_step = None
    index = -1
    try:
        for index, step in enumerate(steps):
            _step(world, step)
            model.check(world)
            if model.violations:
                failed_step = index
                break
        if not model.violations:
            drain(world)
            model.check(world)
            model.check_at_rest()
            if model.violations:
                failed_step = len(steps)
        fingerprint = _fingerprint()
    finally:
        world.close()
    return Result(seed, index + 1, model.violations, failed_step,
                  time.perf_counter() - started, world.notes, fingerprint)


def _fingerprint() -> str:
    """Every credit-log row, hold and job as they are, and the audit chain's head (its hash
    covers every audit row, with their times and details)."""
    from credit_service.models import AuditChainHead, CreditHold, CreditLog
    from render_service.models import RenderJob

    digest = hashlib.sha256()
    for query in (CreditLog.select(CreditLog.id, CreditLog.organization, CreditLog.delta,
                                   CreditLog.kind, CreditLog.created_at),
                  CreditHold.select(CreditHold.id, CreditHold.state, CreditHold.amount,
                                    CreditHold.updated_at),
                  RenderJob.select(RenderJob.id, RenderJob.status, RenderJob.credits_charged,
                                   RenderJob.updated_at, RenderJob.public_id),
                  AuditChainHead.select(AuditChainHead.last_hash)):
        for row in query.order_by(SQL("1")).tuples():
            digest.update(repr(row).encode())
    return digest.hexdigest()


def kind_of(violation: str) -> str:
    """What a violation is about (its invariant), to shrink towards the same failure."""
    return violation.split(":")[0]


def shrink(steps: list[Step], seed: int, budget_s: float = 120.0,
           databases=None) -> list[Step]:
    """The shortest plan found (within `budget_s`) that still fails the same way: drop chunks
    of steps, halving the chunk size, while the failure stays."""
    first = run(steps, seed, databases)
    if not first.failed:
        return steps
    wanted = kind_of(first.violations[0])
    steps = steps[:first.failed_step + 1]

    def still_fails(candidate: list[Step]) -> bool:
        result = run(candidate, seed, databases)
        return result.failed and kind_of(result.violations[0]) == wanted

    deadline = time.perf_counter() + budget_s
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and time.perf_counter() < deadline:
        start, removed = 0, False
        while start < len(steps) and time.perf_counter() < deadline:
            candidate = steps[:start] + steps[start + chunk:]
            if candidate and still_fails(candidate):
                steps, removed = candidate, True
            else:
                start += chunk
        if not removed:
            chunk //= 2
    return steps


def save(steps: list[Step], seed: int, path: str) -> None:
    with open(path, "w") as file:
        json.dump({"seed": seed, "steps": [dataclasses.astuple(step) for step in steps]},
                  file, indent=0)


def load(path: str) -> tuple[list[Step], int]:
    with open(path) as file:
        saved = json.load(file)
    return [Step(*step) for step in saved["steps"]], saved["seed"]


def run_seeds(seed: int, total_steps: int, databases=None,
              report: Callable[[str], None] = print) -> list[Result]:
    """`total_steps` as runs of RUN_STEPS, the first run's seed `seed`, the others drawn from
    it; stops at the first failing run. Each run's seed replays that run alone."""
    seeds = random.Random(seed)
    results, left, run_seed = [], total_steps, seed
    while left > 0:
        count = min(RUN_STEPS, left)
        result = run(plan(run_seed, count), run_seed, databases)
        results.append(result)
        left -= count
        if result.failed:
            report(f"run seed {run_seed} FAILED after step {result.failed_step}: "
                   f"{result.violations[0]}")
            break
        run_seed = seeds.getrandbits(32)
    return results
