"""Refusals are audited in bursts: per caller and window, the first few one by one, the rest
as one summary row, so a flood cannot take the audit chain's lock once per refused call."""
import threading
from collections import Counter

from carpet_common.calls import Denial
from carpet_common.denials import WRITTEN_PER_WINDOW, DenialLog


def denial(method="/x.Y/Z", ip="203.0.113.7", actor="anonymous"):
    return Denial(method=method, actor=actor, role="", outcome="denied:UNAUTHENTICATED",
                  message="missing credentials", client_ip=ip, request_id="r")


def test_a_flood_is_written_as_a_few_rows_and_one_summary():
    rows = []
    log = DenialLog(lambda d, count, methods: rows.append((d.client_ip, count, dict(methods))),
                    window_s=3600)
    for index in range(100):
        log.record(denial(method=f"/x.Y/M{index % 2}"))
    log.record(denial(ip="198.51.100.1"))  # another caller has its own allowance
    assert rows == [("203.0.113.7", 1, {"/x.Y/M0": 1}), ("203.0.113.7", 1, {"/x.Y/M1": 1}),
                    ("203.0.113.7", 1, {"/x.Y/M0": 1}), ("203.0.113.7", 1, {"/x.Y/M1": 1}),
                    ("203.0.113.7", 1, {"/x.Y/M0": 1}), ("198.51.100.1", 1, {"/x.Y/Z": 1})]
    assert WRITTEN_PER_WINDOW == 5
    log.flush()  # the window ends
    assert rows[-1] == ("203.0.113.7", 95, {"/x.Y/M0": 47, "/x.Y/M1": 48})
    log.record(denial())  # a new window: written at once again
    assert rows[-1] == ("203.0.113.7", 1, {"/x.Y/Z": 1})


def test_the_window_end_writes_the_summary_by_itself():
    written = threading.Event()
    summaries = []

    def write(d, count, methods: Counter):
        if count > 1:
            summaries.append(count)
            written.set()

    log = DenialLog(write, window_s=0.2)
    for _ in range(WRITTEN_PER_WINDOW + 3):
        log.record(denial())
    assert written.wait(30), "no summary was written when the window ended"
    assert summaries == [3]


def test_a_failing_writer_does_not_fail_the_refusal():
    def write(*_):
        raise RuntimeError("audit store down")

    DenialLog(write).record(denial())  # logged, not raised


def test_an_ipv6_caller_is_its_slash_64():
    """One IPv6 subscriber holds a whole /64: new addresses in it are the same caller."""
    rows = []
    log = DenialLog(lambda d, count, methods: rows.append(count), window_s=3600)
    for index in range(100):
        log.record(denial(ip=f"2001:db8:1:2::{index + 1:x}"))
    log.record(denial(ip="2001:db8:1:3::1"))  # the next /64 is someone else
    assert rows == [1] * (WRITTEN_PER_WINDOW + 1)
    log.flush()
    assert rows[-1] == 100 - WRITTEN_PER_WINDOW
