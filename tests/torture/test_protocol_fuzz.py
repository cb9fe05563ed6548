"""Protocol fuzzing: random and mutated RESP from many connections at once. The server must
never crash or hang, its memory must stay bounded, and a well-behaved client on the side must
keep getting correct answers throughout."""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from tests.kvd_process import Daemon

FRAMES_IN_TEST = 12000
CONNECTIONS = 12


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


COMMANDS = [b"SET", b"GET", b"DEL", b"INCR", b"MSET", b"MGET", b"APPEND", b"SCAN", b"KEYS",
            b"PING", b"ECHO", b"EXISTS", b"INFO", b"CONFIG", b"CLIENT", b"HELLO", b"SELECT",
            b"GETSET", b"STRLEN", b"DBSIZE", b"NOPE", b"QUIT"]


def random_frame(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.15:  # garbage
        return os.urandom(rng.randrange(1, 200))
    if kind < 0.25:  # inline, sometimes with broken quotes
        words = [rng.choice(COMMANDS)] + [rng.choice([b"a", b'"b c"', b"'d", b'"\\x4', b"k"])
                                          for _ in range(rng.randrange(3))]
        return b" ".join(words) + rng.choice([b"\r\n", b"\n", b""])
    if kind < 0.35:  # absurd lengths
        header = rng.choice([b"*%d\r\n", b"*1\r\n$%d\r\n", b"*2\r\n$3\r\nGET\r\n$%d\r\n"])
        return header % rng.choice([-7, 0, 2**31, 2**63, 10**30, 1 << 20, 5_000_000])
    args = [rng.choice(COMMANDS)] + [
        rng.choice([b"", b"k", b"fuzz:%d" % rng.randrange(50), os.urandom(rng.randrange(30)),
                    b" 1", b"9223372036854775807", b"x" * rng.randrange(200_000)])
        for _ in range(rng.randrange(4))
    ]
    frame = bytearray(encode(*args))
    for _ in range(rng.randrange(3)):  # mutations: flip, cut, insert
        if not frame:
            break
        at = rng.randrange(len(frame))
        choice = rng.random()
        if choice < 0.4:
            frame[at] ^= 1 << rng.randrange(8)
        elif choice < 0.7:
            del frame[at:]
        else:
            frame[at:at] = os.urandom(rng.randrange(1, 8))
    return bytes(frame)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def fuzz_connection(server: Daemon, seed: int, frames: int, counter: list) -> None:
    rng = random.Random(seed)
    sock = None
    for _ in range(frames):
        if sock is None:
            sock = server.raw(timeout=5)
        frame = random_frame(rng)
        try:
            if rng.random() < 0.05:  # slowloris: a frame a few bytes at a time
                for i in range(0, len(frame), 3):
                    sock.sendall(frame[i : i + 3])
            else:
                sock.sendall(frame)
            sock.setblocking(False)
            try:
                while sock.recv(65536):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                sock.setblocking(True)
        except OSError:  # the server closed this connection after a protocol error
            sock.close()
            sock = None
        counter.append(1)
        if sock is not None and rng.random() < 0.1:
            sock.close()  # abandon it mid-whatever
            sock = None
    if sock is not None:
        sock.close()


@pytest.mark.slow
def test_fuzzed_connections_never_hurt_the_server_or_a_bystander(make_daemon):
    server = make_daemon("--max-key-size", "1000", "--max-value-size", "300000",
                         "--max-request-size", "1000000")
    bystander = server.client(socket_timeout=10)
    bystander.set(b"bystander", b"ok")
    rss_before = rss_kib(server.pid)
    stop = threading.Event()
    checks: list[bool] = []

    def watch() -> None:
        n = 0
        while not stop.is_set():
            bystander.set(b"by:%d" % n, b"%d" % n)
            checks.append(bystander.get(b"by:%d" % n) == b"%d" % n
                          and bystander.get(b"bystander") == b"ok")
            n += 1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    counter: list = []
    fuzzers = [threading.Thread(target=fuzz_connection,
                                args=(server, seed, FRAMES_IN_TEST // CONNECTIONS, counter))
               for seed in range(CONNECTIONS)]
    for t in fuzzers:
        t.start()
    for t in fuzzers:
        t.join(300)
        assert not t.is_alive(), "a fuzzing connection hung"
    stop.set()
    watcher.join(30)
    assert len(counter) == FRAMES_IN_TEST
    assert checks and all(checks), "the bystander got a wrong answer"
    assert bystander.ping() is True and server.alive()
    rss_after = rss_kib(server.pid)
    assert rss_after < rss_before + 200 * 1024, (rss_before, rss_after)
    log = server.log()
    assert "Traceback" not in log and "crashed" not in log
    info = server.info("stats")
    assert info["protocol_errors"] > 0  # the fuzzing did reach the parser's error paths
    print(f"{len(counter)} frames, {info['protocol_errors']} protocol errors, "
          f"{len(checks)} bystander checks, RSS {rss_before} -> {rss_after} KiB")


def test_many_idle_and_slow_connections_are_held(make_daemon):
    server = make_daemon()
    sockets = []
    for _ in range(300):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(server.socket)
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$1")  # each stuck mid-request
        sockets.append(sock)
    client = server.client()
    assert client.set(b"k", b"v") is True and client.get(b"k") == b"v"
    assert server.info("clients")["connected_clients"] >= 301
    for sock in sockets:
        sock.close()
