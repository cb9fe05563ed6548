"""Real job queues against a real kvd: RQ's whole basic flow with its defaults -- enqueue,
a worker (which forks a work horse per job, subscribes to its pub/sub channel, records
the job in its registries), and the job's result read back (kept in a stream)."""

from __future__ import annotations

import os
import sys

from redis import Redis
from rq import Queue, Worker

JOBS = os.path.join(os.path.dirname(__file__), "jobs")


def test_rq_enqueue_work_and_result(kvd, monkeypatch):
    monkeypatch.syspath_prepend(JOBS)
    import arithmetic

    connection = Redis(unix_socket_path=kvd.socket, db=1)
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(arithmetic.add, i, 10) for i in range(5)]
    failing = queue.enqueue(arithmetic.divide, 1, 0)
    assert queue.count == 6
    Worker([queue], connection=connection).work(burst=True)
    for i, job in enumerate(jobs):
        job.refresh()
        assert job.get_status() == "finished" and job.return_value() == i + 10
    failing.refresh()
    assert failing.get_status() == "failed"
    assert "ZeroDivisionError" in failing.latest_result().exc_string
    assert queue.count == 0 and len(queue.failed_job_registry) == 1
    assert sys.modules["arithmetic"] is arithmetic
