"""python -m bench.capacity [results.json] — the capacity table of docs/performance.md, computed
from one PostgreSQL bench run's CPU per operation (bench/results/latest-postgresql.json).

The model: every process is CPU-bound (the bench shows it: two cores, every figure limited by
them), so a load needs, per process kind, (operations a second) x (CPU per operation), kept
at UTILISATION of its cores for headroom. PostgreSQL is counted the same way; one
organisation's reservations and captures also queue on its balance row, whatever the cores,
which the hot-organisation scenario measures. The model is checked against the bench itself:
the throughput it predicts, from the one-process run's CPU per operation, for the runs with
more processes (3 render + 2 credit on one PostgreSQL) against what they measured.
"""
from __future__ import annotations

import json
import os
import sys

from bench.environment import RESULTS_DIR

UTILISATION = 0.6  # plan each tier at 60 % of its cores: peaks and failover need the rest
PEAK_FACTOR = 3  # a busy hour carries three times the day's average rate (shops' hours)
ADMIN_CALLS_PER_S = 0.2  # one console page load or listing every five seconds per admin
MACHINE_CORES = os.cpu_count() or 2
LOADS = (  # renders a day, admins at the console at once, organisations
    (100_000, 10, 1_000),
    (1_000_000, 100, 10_000),
    (10_000_000, 1_000, 100_000),
)
SERVICES = ("render_service", "credit_service", "admin_gateway", "postgresql")
COMMITS_PER_RENDER = 5  # job written, hold reserved, claimed, captured, ended


def scenarios(report: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in report["scenarios"]}


def cpu_ms(entry: dict, process: str) -> float:
    return (entry.get("cpu_ms_per_op") or {}).get(process, 0.0)


def model_check(found: dict[str, dict]) -> list[str]:
    """The model's prediction for the runs with more processes, from the CPU per operation of
    the run with one process each (render.submit) on this machine's cores, against what they
    measured: where the prediction is above the measurement, more processes cost CPU."""
    single = found.get("render.submit")
    lines = []
    for name in ("render.submit", "render.submit.processes2", "render.submit.scaled"):
        entry = found.get(name)
        if single and entry and single.get("cpu_ms_per_op"):
            predicted = MACHINE_CORES * 1000 / single["cpu_ms_per_op"]["total"]
            lines.append(f"| {name} | {entry['ops_per_s']:.0f} | {predicted:.0f} | "
                         f"{entry['ops_per_s'] / predicted:.2f} | "
                         f"{entry['cpu_ms_per_op']['total']:.2f} |")
    return lines


def multiples(found: dict[str, dict]) -> list[str]:
    """Today's measured whole-render rate on this machine, and 10x and 100x of it: cores per
    tier and the commits a second PostgreSQL must make (a render commits its job, its hold,
    the claim, the capture and its end at least)."""
    render = found["render.end_to_end"]
    lines = []
    for factor in (1, 10, 100):
        renders_per_s = render["ops_per_s"] * factor
        cores = {process: renders_per_s * cpu_ms(render, process) / 1000 / UTILISATION
                 for process in ("render_service", "credit_service", "postgresql")}
        lines.append(f"| {factor}x | {renders_per_s:,.0f} | {renders_per_s * 86_400:,.0f} | "
                     + " | ".join(f"{cores[p]:.1f}" for p in cores)
                     + f" | {renders_per_s * COMMITS_PER_RENDER:,.0f} |")
    return lines


def capacity(found: dict[str, dict]) -> list[str]:
    """Cores per tier for each load of LOADS."""
    render = found["render.end_to_end"]  # a whole render: submit, work, capture, finish
    admin = found.get("admin.list_renders.1m") or found["admin.list_renders.1k"]
    hot = found["credit.reserve_capture_hot"]
    per_organisation = hot["ops_per_s"] / 2  # a render is one reserve and one capture
    lines = []
    for renders_a_day, admins, organisations in LOADS:
        renders_per_s = renders_a_day / 86_400 * PEAK_FACTOR
        admin_per_s = admins * ADMIN_CALLS_PER_S
        cores = {process: (renders_per_s * cpu_ms(render, process)
                           + admin_per_s * cpu_ms(admin, process)) / 1000 / UTILISATION
                 for process in SERVICES}
        lines.append(
            f"| {renders_a_day:,} | {admins:,} | {organisations:,} | {renders_per_s:,.0f} | "
            + " | ".join(f"{cores[p]:.1f}" for p in SERVICES)
            + f" | {renders_per_s / max(organisations, 1):.3f} / {per_organisation:.0f} |")
    return lines


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(RESULTS_DIR,
                                                              "latest-postgresql.json")
    with open(path) as handle:
        found = scenarios(json.load(handle))
    print("| scenario | measured ops/s | predicted from render.submit's CPU per op "
          "| measured / predicted | CPU ms per op |")
    print("|---|---|---|---|---|")
    print("\n".join(model_check(found)))
    print()
    print("| load | renders/s | renders a day | render cores | credit cores | "
          "PostgreSQL cores | PostgreSQL commits/s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(multiples(found)))
    print()
    print("| renders a day | admins at once | organisations | peak renders/s | render cores "
          "| credit cores | gateway cores | PostgreSQL cores | renders/s per organisation "
          "(average / one organisation's limit) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(capacity(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
