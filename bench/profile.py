"""python -m bench.profile — where a submission's time goes: py-spy flame graphs of the credit
service and the render service while `render.submit` runs (closed loop, the bench's clients),
written to docs/flamegraphs/ as SVG. BENCH_DATABASE_URL as for `make bench` (PostgreSQL is the
one that matters); BENCH_SECONDS the sampling time (default 10); PROFILE_FORMAT=raw for collapsed
stacks instead of SVG; PROFILE_RATE samples per second (default 100).

Samples are of CPU only (threads waiting on the network or the database are left out), so the
graphs show what each process spends its cores on, the thing two shared cores run out of.
"""
from __future__ import annotations

import os
import subprocess
import sys

from bench.__main__ import Bench
from bench.cpu import CpuMeter
from bench.driver import run_scenario
from bench.environment import ROOT

OUTPUT_DIR = os.path.join(ROOT, "docs", "flamegraphs")
FORMAT = os.environ.get("PROFILE_FORMAT", "flamegraph")  # or raw: collapsed stacks
SUFFIX = "svg" if FORMAT == "flamegraph" else "txt"
RATE = os.environ.get("PROFILE_RATE", "100")  # samples per second
PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")


def main() -> int:
    base_url = os.environ.get("BENCH_DATABASE_URL") or None
    seconds = float(os.environ.get("BENCH_SECONDS", "10"))
    bench = Bench(base_url, seconds, int(os.environ.get("BENCH_CONCURRENCY", "8")))
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    engine = "postgresql" if base_url else "sqlite"
    with bench.serving() as (credit, render):
        recorders = [subprocess.Popen(
            [PY_SPY, "record", "--pid", str(server.pid), "--duration", str(int(seconds)),
             "--rate", RATE, "--nonblocking", "--gil", "--format", FORMAT, "--output",
             os.path.join(OUTPUT_DIR, f"render-submit-{name}-{engine}.{SUFFIX}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for name, server in (("credit-service", credit), ("render-service", render))]
        with CpuMeter({"credit_service": credit.pid, "render_service": render.pid}) as meter:
            result = run_scenario("render.submit", "bench.render_workloads.submit",
                                  bench.config, concurrency=bench.concurrency, seconds=seconds)
        for recorder in recorders:
            _out, error = recorder.communicate(timeout=60)
            if recorder.returncode != 0:
                print(error.decode(errors="replace"), file=sys.stderr)
                return 1
    print(f"render.submit while sampled: {result.ops_per_s:.1f} ops/s, p50 {result.p50_ms:.2f} "
          f"ms; flame graphs in {os.path.relpath(OUTPUT_DIR, ROOT)}/")
    print(f"CPU ms per submission: {meter.per_operation_ms(result.ops)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
