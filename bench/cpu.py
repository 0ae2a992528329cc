"""CPU time spent per operation, by process: what the scaling table in docs/performance.md is
computed from. Read from Linux's /proc before and after a scenario."""
from __future__ import annotations

import os

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    """User and system CPU of one process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime


def _children(pid: int) -> list[int]:
    """`pid`'s child processes (SERVER_PROCESSES > 1 forks serving children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def _postgres_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == "postgres":
                        pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


def _machine_seconds() -> float:
    """Busy CPU time of the whole machine (every core), in seconds."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / TICKS_PER_S


class CpuMeter:
    """CPU seconds by group over a block: each named server (with its forked children), the
    PostgreSQL processes, and everything else on the machine (the clients, mostly)."""

    def __init__(self, servers: dict[str, int | list[int]]):
        """`servers`: group name -> the pid of its process, or of each of its processes."""
        self._servers = {name: pids if isinstance(pids, list) else [pids]
                         for name, pids in servers.items()}

    def _read(self) -> dict[str, float]:
        reading = {name: sum(_process_seconds(p) for pid in pids
                             for p in [pid, *_children(pid)])
                   for name, pids in self._servers.items()}
        reading["postgresql"] = sum(_process_seconds(p) for p in _postgres_pids())
        reading["machine"] = _machine_seconds()
        return reading

    def __enter__(self) -> CpuMeter:
        self._before = self._read()
        return self

    def __exit__(self, *_exc) -> None:
        after = self._read()
        self.spent = {name: after[name] - self._before[name] for name in after}

    def per_operation_ms(self, operations: int) -> dict[str, float]:
        """Milliseconds of CPU per operation by group; `others` is the machine's remainder."""
        spent = dict(self.spent)
        machine = spent.pop("machine")
        spent["others"] = max(0.0, machine - sum(spent.values()))
        spent["total"] = machine
        return {name: round(1000 * seconds / max(operations, 1), 3)
                for name, seconds in spent.items()}
