"""Every signal path against a real daemon process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import redis

from tests.kvd_process import wait_for, wait_gone


def test_sigusr1_compacts_while_clients_stay_connected(kvd):
    writer = kvd.client()
    watcher = kvd.client()
    for round_ in range(20):
        writer.mset({f"k{i}": f"{round_}-{i}" * 20 for i in range(500)})
    before = kvd.info("persistence")
    assert before["dead_bytes"] > before["live_bytes"]
    kvd.signal(signal.SIGUSR1)
    wait_for(lambda: kvd.info("persistence")["compactions_completed"] == 1, what="compaction")
    after = kvd.info("persistence")
    assert after["dead_bytes"] < before["dead_bytes"] // 10
    assert watcher.ping() is True  # the connection survived the compaction
    assert writer.mget([f"k{i}" for i in range(500)]) == [
        f"19-{i}".encode() * 20 for i in range(500)]
    assert "compaction requested (SIGUSR1)" in kvd.log()


def test_sighup_reopens_the_log_file_after_logrotate_moved_it(kvd):
    log = kvd.log_file
    rotated = log.with_name("kvd.log.1")
    os.rename(log, rotated)
    kvd.signal(signal.SIGHUP)
    wait_for(lambda: log.exists() and "log file reopened" in log.read_text(), what="new log file")
    assert "log file reopened" not in rotated.read_text()
    assert "ready:" in rotated.read_text()
    kvd.client().ping()
    kvd.stop()
    assert "shutdown complete (exit 0)" in log.read_text()


class Writer(threading.Thread):
    """Streams pipelined SETs of unique keys and records what each reply said."""

    def __init__(self, server, name: str) -> None:
        super().__init__(daemon=True)
        self.client = server.client(socket_timeout=30)
        self.name = name
        self.acknowledged: dict[bytes, bytes] = {}
        self.refused: set[bytes] = set()
        self.batches = 0

    def run(self) -> None:
        batch = 0
        while True:
            keys = [f"{self.name}:{batch}:{i}".encode() for i in range(50)]
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, key[::-1])
            try:
                results = pipe.execute(raise_on_error=False)
            except redis.ConnectionError:
                return  # outcome of this batch unknown: neither acknowledged nor refused
            for key, result in zip(keys, results):
                if result is True:
                    self.acknowledged[key] = key[::-1]
                else:
                    assert "shutting down" in str(result), result
                    self.refused.add(key)
            self.batches += 1
            batch += 1


def test_sigterm_while_clients_stream_pipelined_writes(make_foreground, make_daemon):
    server = make_foreground()
    writers = [Writer(server, f"w{n}") for n in range(4)]
    for w in writers:
        w.start()
    wait_for(lambda: all(w.batches >= 5 for w in writers), what="writers to get going")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    for w in writers:
        w.join(30)
        assert not w.is_alive()
    assert not os.path.exists(server.pidfile)
    assert not os.path.exists(server.socket)
    log = server.log()
    for step in ("SIGTERM: shutting down", "stopped listening on", "flushing and closing the store",
                 "shutdown complete (exit 0)"):
        assert step in log

    again = make_daemon(subdir="fg")  # same directory, same data
    client = again.client()
    acknowledged = {k: v for w in writers for k, v in w.acknowledged.items()}
    refused = set().union(*(w.refused for w in writers))
    assert len(acknowledged) >= 4 * 5 * 50
    keys = list(acknowledged)
    assert client.mget(keys) == [acknowledged[k] for k in keys]  # nothing acknowledged is lost
    if refused:
        assert client.exists(*refused) == 0  # nothing refused was applied


def test_a_second_sigterm_cuts_a_slow_drain_short_but_still_flushes(make_foreground, make_daemon):
    server = make_foreground("--drain-timeout", "120")
    client = server.client()
    client.set("before", "the drain")
    slow = server.raw()
    slow.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\nslow")  # a request that never completes
    client.close()
    server.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: shutting down" in server.log(), what="the drain to begin")
    assert server.proc.poll() is None  # waiting for the slow client (up to 120 s)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert time.monotonic() - started < 30
    assert "SIGTERM during the drain: closing 1 remaining connection(s) now" in server.log()
    slow.close()
    again = make_daemon(subdir="fg")
    assert again.client().get("before") == b"the drain"
    assert again.client().get("slow") is None


def test_the_drain_timeout_closes_clients_that_do_not_finish(make_foreground):
    server = make_foreground("--drain-timeout", "0.5")
    slow = server.raw()
    slow.sendall(b"*1\r\n$4\r\nPI")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert "did not finish in time" in server.log()
    slow.close()


def test_requests_arriving_during_the_drain_are_refused(make_foreground):
    server = make_foreground("--drain-timeout", "60")
    sock = server.raw()
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1")  # partial: keeps the connection draining
    server.signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: shutting down" in server.log(), what="the drain to begin")
    sock.sendall(b"\r\nv\r\nPING\r\n")
    data = b""
    while chunk := sock.recv(1000):  # replies, then EOF from the server
        data += chunk
    assert data == b"-ERR server is shutting down\r\n" * 2
    sock.close()
    assert server.wait(30) == 0


def test_sigint_drains_like_sigterm(make_foreground):
    server = make_foreground()
    server.client().set("k", "v")
    server.signal(signal.SIGINT)
    assert server.wait(30) == 0
    assert "SIGINT: shutting down" in server.log()


def test_a_burst_of_signals_is_coalesced_and_the_server_keeps_answering(make_foreground):
    server = make_foreground()
    client = server.client()
    client.set("k", "v")
    stop = threading.Event()
    answers = []

    def ping() -> None:
        while not stop.is_set():
            answers.append(client.get("k"))

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    for i in range(1000):
        server.signal(signal.SIGUSR1 if i % 2 else signal.SIGHUP)
    stop.set()
    pinger.join(30)
    assert answers and all(a == b"v" for a in answers)
    info = server.info()
    assert 1 <= info["compactions_requested"] <= 500  # coalesced: not one per signal
    assert info["signals_received"] >= 1
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    output = server.log()
    assert "wakeup" not in output.lower()  # no "signal wakeup fd" warnings
    assert "Traceback" not in output


def test_kvd_stop_is_sigterm_through_the_pid_file(kvd):
    kvd.client().set("k", "v")
    result = kvd.stop()
    assert "kvd stopped" in result.stdout
    assert not os.path.exists(kvd.pidfile)
    assert wait_gone(kvd.pid, 1)
    assert "SIGTERM: shutting down" in kvd.log()



def test_a_hup_or_usr1_after_the_drain_does_not_turn_a_clean_exit_into_death_by_signal():
    """Between closing the signal pipe and the process's end, a late HUP (logrotate) or
    USR1 (kvctl compact) is ignored; the same signals after a plain close (a failed
    in-process start) get the process's own handlers back, here the default: death."""
    program = ("import os, signal; from server.signals import SignalPipe\n"
               "pipe = SignalPipe(); pipe.install(); pipe.close(exiting={exiting})\n"
               "os.kill(os.getpid(), signal.SIGHUP); os.kill(os.getpid(), signal.SIGUSR1)\n"
               "print('alive')")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for exiting, status in ((True, 0), (False, -signal.SIGHUP)):
        done = subprocess.run([sys.executable, "-c", program.format(exiting=exiting)],
                              cwd=root, capture_output=True, timeout=30)
        assert done.returncode == status, done.stderr
        assert done.stdout == (b"alive\n" if exiting else b"")
