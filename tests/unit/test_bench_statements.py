"""`ceiling.submit_sql` (make bench) issues the services' own statements with parameters of its
own; when a statement gains a parameter the bench must give it too. It once did not (five
columns added to the job since), and the scenario died at its first insert."""
import datetime

from bench.render_workloads import queued_job
from render_service import jobs


def test_the_bench_writes_a_job_with_every_parameter_the_service_does():
    statement = jobs.SUBMISSION_STATEMENTS["insert_job"]
    now = datetime.datetime(2026, 12, 6, 9, 0)
    values = statement.values(queued_job(11, 2, 3, 4, 5, now))  # TypeError when they differ
    assert (len(values), values[statement.names.index("hold_id")]) == (len(statement.names), 5)
