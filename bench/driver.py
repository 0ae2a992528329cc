"""Runs one scenario: `concurrency` client processes call `workload(config)` in a loop for
`seconds`, recording each operation's latency; returns throughput and percentiles."""
from __future__ import annotations

import importlib
import multiprocessing
import time
from dataclasses import dataclass

WARMUP_OPS = 20


@dataclass(frozen=True)
class Result:
    name: str
    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    first_error: str = ""

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _client(workload_path: str, config: dict, index: int, ready, go, seconds: float, results):
    module_name, _, factory_name = workload_path.rpartition(".")
    factory = getattr(importlib.import_module(module_name), factory_name)
    operation = factory(config, index)  # a callable doing one iteration; returns ops done
    for _ in range(WARMUP_OPS):
        operation()
    ready.release()
    go.wait()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        if started >= deadline:
            break
        try:
            done = operation()
        except Exception as error:  # noqa: BLE001 - a failed call is counted, not fatal
            errors += 1
            first_error = first_error or repr(error)[:300]
            continue
        elapsed = (time.perf_counter() - started) / max(done, 1)
        latencies.extend([elapsed] * done)
    results.put((latencies, errors, first_error))


def run_scenario(name: str, workload_path: str, config: dict, *, concurrency: int,
                 seconds: float) -> Result:
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    clients = [context.Process(target=_client, args=(workload_path, config, index, ready, go,
                                                     seconds, results))
               for index in range(concurrency)]
    for client in clients:
        client.start()
    for _ in clients:
        ready.acquire()
    go.set()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    for _ in clients:
        client_latencies, client_errors, client_error = results.get(timeout=seconds + 120)
        latencies.extend(client_latencies)
        errors += client_errors
        first_error = first_error or client_error
    for client in clients:
        client.join(timeout=30)
    latencies.sort()
    return Result(name=name, ops=len(latencies), seconds=seconds,
                  p50_ms=_percentile(latencies, 0.50) * 1000,
                  p99_ms=_percentile(latencies, 0.99) * 1000, errors=errors,
                  first_error=first_error)
