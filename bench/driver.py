"""Runs one scenario from `concurrency` client processes, recording each operation's latency;
returns throughput and percentiles.

Closed loop (`run_scenario`): each client calls `workload(config, index)()` again as soon as
the previous call answered, so throughput is the system's at saturation and latency includes
the queueing of eight clients. Open loop (`run_open_loop`): the clients send at a fixed total
rate on a schedule, whether or not earlier calls answered, and a call's latency is counted from
the time it was scheduled, so a system that falls behind shows it as latency instead of
slowing its clients down (no coordinated omission)."""
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
    p999_ms: float | None = None  # open loop only
    offered_per_s: float | None = None  # open loop only: the scheduled rate

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _workload(workload_path: str, config: dict, index: int):
    """What the factory `module.name` makes for this client."""
    module_name, _, factory_name = workload_path.rpartition(".")
    return getattr(importlib.import_module(module_name), factory_name)(config, index)


def _client(workload_path: str, config: dict, index: int, ready, go, seconds: float, results):
    operation = _workload(workload_path, config, index)  # one iteration; returns ops done
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
    latencies, errors, first_error = _run_clients(
        _client, lambda index: (workload_path, config, index), concurrency, seconds)
    return Result(name=name, ops=len(latencies), seconds=seconds,
                  p50_ms=_percentile(latencies, 0.50) * 1000,
                  p99_ms=_percentile(latencies, 0.99) * 1000, errors=errors,
                  first_error=first_error)


def _run_clients(target, arguments, concurrency: int, seconds: float
                 ) -> tuple[list[float], int, str]:
    """Start `concurrency` spawned `target(*arguments(index), ready, go, seconds, results)`
    processes, let them go at once, and gather (sorted latencies, errors, first error)."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
    clients = [context.Process(target=target,
                               args=(*arguments(index), ready, go, seconds, results))
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
    return latencies, errors, first_error

def _open_loop_client(workload_path: str, config: dict, index: int, interval: float,
                      offset: float, ready, go, seconds: float, results):
    """Sends `send()` (a factory's callable returning a grpc future) every `interval` seconds
    from the schedule's start (plus this client's `offset`), never waiting for answers."""
    send = _workload(workload_path, config, index)
    for _ in range(WARMUP_OPS):
        send().result()
    ready.release()
    go.wait()
    answered: list[tuple[float, bool, str]] = []  # appended from gRPC's completion threads

    def on_done(future, scheduled: float) -> None:
        latency = time.perf_counter() - scheduled
        error = future.exception()
        answered.append((latency, error is None, "" if error is None else repr(error)[:300]))

    start = time.perf_counter() + offset
    sent = []
    for n in range(int(seconds / interval)):
        scheduled = start + n * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        future = send()
        future.add_done_callback(lambda done, scheduled=scheduled: on_done(done, scheduled))
        sent.append(future)
    for future in sent:  # every call answers or meets its deadline
        try:
            future.result()
        except Exception:  # noqa: BLE001, S110 - counted by on_done
            pass
    deadline = time.perf_counter() + 5
    while len(answered) < len(sent) and time.perf_counter() < deadline:
        time.sleep(0.01)  # the last callbacks run on gRPC's threads
    latencies = [latency for latency, ok, _ in answered if ok]
    failures = [error for _, ok, error in answered if not ok]
    results.put((latencies, len(failures), failures[0] if failures else ""))


def run_open_loop(name: str, workload_path: str, config: dict, *, rate: float,
                  concurrency: int, seconds: float) -> Result:
    """`rate` calls a second in all, spread evenly over the clients and interleaved in time.
    Throughput is what was answered within the run; p50/p99/p99.9 from the schedule."""
    interval = concurrency / rate
    latencies, errors, first_error = _run_clients(
        _open_loop_client,
        lambda index: (workload_path, config, index, interval,
                       0.05 + interval * index / concurrency),
        concurrency, seconds)
    return Result(name=name, ops=len(latencies), seconds=seconds,
                  p50_ms=_percentile(latencies, 0.50) * 1000,
                  p99_ms=_percentile(latencies, 0.99) * 1000,
                  p999_ms=_percentile(latencies, 0.999) * 1000, errors=errors,
                  first_error=first_error, offered_per_s=rate)
