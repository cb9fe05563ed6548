"""Real job queues against a real kvd, with their defaults: RQ's whole basic flow --
enqueue, a worker (which forks a work horse per job, subscribes to its pub/sub channel,
records the job in its registries), the job's result read back (kept in a stream) -- and
a Celery worker running tasks and returning their results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
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


CELERY_APP = '''
from celery import Celery

app = Celery("tasks", broker="redis://127.0.0.1:{port}/2", backend="redis://127.0.0.1:{port}/3")


@app.task
def add(x, y):
    return x + y
'''


@pytest.mark.slow
def test_celery_worker_runs_a_task_and_returns_its_result(make_daemon, tmp_path, monkeypatch):
    """A Celery worker with its defaults (prefork pool, kombu's Redis transport: lists,
    sets, sorted sets, pub/sub; the Redis result backend: pub/sub and keys), and its
    remote control through the broadcast (fanout) exchange."""
    server = make_daemon(tcp=True)
    (tmp_path / "tasks.py").write_text(CELERY_APP.format(port=server.port))
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "tasks", "worker",
                               "--loglevel=INFO", "--concurrency=1"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in worker.stderr:  # readiness: the worker says so
            if " ready." in line:
                break
        else:
            pytest.fail(f"the celery worker exited: {worker.wait()}")
        monkeypatch.syspath_prepend(str(tmp_path))
        import tasks

        assert tasks.add.delay(2, 3).get(timeout=30) == 5
        assert [tasks.add.delay(i, i).get(timeout=30) for i in range(3)] == [0, 2, 4]
        # Broadcast (kombu's fanout exchange: PUBLISH to the worker's PSUBSCRIBE) and the
        # replies it sends back: the remote-control commands `celery inspect` uses.
        replies = tasks.app.control.ping(timeout=10)
        assert len(replies) == 1 and list(replies[0].values()) == [{"ok": "pong"}]
        stats = tasks.app.control.inspect(timeout=10).stats()
        assert stats and list(stats.values())[0]["pool"]["max-concurrency"] == 1
    finally:
        worker.send_signal(signal.SIGTERM)  # a warm shutdown
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
