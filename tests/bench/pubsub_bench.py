"""Pub/sub, kvd beside redis-server in one run: PUBLISH throughput (redis-benchmark, -c 50,
a 100-byte message) to 0, 1 and 100 subscribers that read everything they get -- the
subscribers live in a separate process that drains their sockets with one select loop
and counts the messages -- and the server CPU per PUBLISH.
"""

from __future__ import annotations

import subprocess
import sys

from .server_bench import benchmark, ensure_tools, kvd_and_redis

SUBSCRIBERS = (0, 1, 100)
DRAIN = r"""
import select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n")
    socks.append(s)
for s in socks:
    got = b""
    while got.count(b"\r\n") < 6:  # the confirmation: *3 $9 subscribe $5 bench :1
        got += s.recv(100)
print("ready", flush=True)
received, expected, quiet_since = 0, None, time.monotonic()
watched = socks + [sys.stdin]
while expected is None or received < expected:
    ready, _, _ = select.select(watched, [], [], 1.0)
    if not ready and expected is not None and time.monotonic() - quiet_since > 30:
        break  # (what never came: the count says so)
    for s in ready:
        if s is sys.stdin:
            expected = int(sys.stdin.readline())
            watched.remove(sys.stdin)
        else:
            received += s.recv(1 << 20).count(b"$7\r\nmessage\r\n")
            quiet_since = time.monotonic()
print(received, flush=True)
"""
# The subscribers' process: connects N sockets, SUBSCRIBEs each to "bench", says "ready"
# once every confirmation arrived, then reads until it has the number of messages it is
# told (on stdin) to expect, and prints how many it received.


def publish(port: int, pid: int, subscribers: int, requests: int) -> dict:
    drain = None
    if subscribers:
        drain = subprocess.Popen([sys.executable, "-c", DRAIN, str(port), str(subscribers)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert drain.stdout is not None and drain.stdout.readline().strip() == "ready"
    try:
        result = benchmark(port, pid, ["-c", "50", "publish", "bench", "x" * 100], requests)
    finally:
        if drain is not None:
            assert drain.stdin is not None and drain.stdout is not None
            drain.stdin.write(f"{requests * subscribers}\n")
            drain.stdin.close()
            result["delivered"] = int(drain.stdout.readline())
            drain.wait(30)
    return result


def run(quick: bool) -> dict:
    ensure_tools()
    requests = 5_000 if quick else 50_000
    results: dict = {"workloads": {}}
    with kvd_and_redis() as (kvd, reference):
        print("\n== pub/sub: PUBLISH of 100 bytes, -c 50, subscribers reading in one process ==")
        print(f"{'subscribers':<12} {'kvd req/s':>10} {'redis req/s':>11} {'kvd/redis':>9} "
              f"{'msgs/s kvd':>11} {'cpu us/req kvd/redis':>21}")
        for count in SUBSCRIBERS:
            n = requests // 10 if count >= 100 else requests
            k = publish(kvd.port, kvd.pid, count, n)
            r = publish(reference.port, reference.pid, count, n)
            if count:
                # every message reached every subscriber (none dropped, none lost)
                assert k["delivered"] == r["delivered"] == n * count, (k, r)
            results["workloads"][str(count)] = {"kvd": k, "redis": r,
                                                "ratio": k["rps"] / r["rps"]}
            print(f"{count:<12} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {k['rps'] / r['rps']:>9.2f} "
                  f"{k['rps'] * count:>11,.0f} "
                  f"{k['cpu_us_per_request']:>10.1f}/{r['cpu_us_per_request']:.1f}")
    return results


def markdown(results: dict) -> str:
    lines = ["| subscribers | kvd PUBLISH/s | Redis PUBLISH/s | kvd/Redis |",
             "|---:|---:|---:|---:|"]
    for count, row in results["workloads"].items():
        lines.append(f"| {count} | {row['kvd']['rps']:,.0f} | {row['redis']['rps']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    return "\n".join(lines) + "\n"
