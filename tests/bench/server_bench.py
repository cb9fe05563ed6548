"""kvd against redis-server, side by side, driven by redis-benchmark.

Both servers run on loopback TCP with matching durability (Redis
`appendonly yes` + `appendfsync always|everysec`, kvd `--fsync always|everysec`)
and are measured alternately -- kvd, Redis, kvd, Redis... -- for each
workload, so that drifts of a shared machine hit both. Per workload: the
median requests/s, p50 and p99 latency of the rounds, the server's CPU time
per request (from /proc), and the ratio kvd/Redis.

A third server runs beside them: the "Python floor" (floor_server.py), the
least a Python RESP server with the same durability must do. Its ratio to
Redis shows how far any Python server gets on a workload; kvd's ratio to it
shows how much of the rest is kvd's own work (its record format, checks and
bookkeeping).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.kvd_process import Daemon, RedisServer, kvd_beside_redis

# name, redis-benchmark arguments, requests (full run). The grid the performance targets
# are set on: SET then GET (which reads what the SET row wrote), one client, 50, 50
# pipelining 16, 1000; values of 100 bytes and 1 KiB over a keyspace of 100,000 keys.
CLIENTS = [("-c 1", ["-c", "1"], 6_000, 30_000), ("-c 50", ["-c", "50"], 100_000, 100_000),
           ("-c 50 -P 16", ["-c", "50", "-P", "16"], 400_000, 400_000),
           ("-c 1000", ["-c", "1000"], 100_000, 100_000)]
WORKLOADS = [
    (f"{op.upper()} {name} -d {size}", ["-t", op, *args, "-d", str(size), "-r", "100000"],
     sets if op == "set" else gets)
    for size in (100, 1024) for name, args, sets, gets in CLIENTS for op in ("set", "get")
] + [
    # RESP3 (HELLO 3 first): the same replies for SET and a hit, `_` for a miss
    ("SET -c 50 -d 100 -3", ["-t", "set", "-c", "50", "-d", "100", "-r", "100000", "-3"],
     100_000),
    ("GET -c 50 -P 16 -d 100 -3",
     ["-t", "get", "-c", "50", "-P", "16", "-d", "100", "-r", "100000", "-3"], 400_000),
]
EVERYSEC_WORKLOADS = {"SET -c 50 -d 100", "GET -c 50 -d 100", "SET -c 50 -P 16 -d 100",
                      "SET -c 1 -d 100"}


def ensure_tools() -> None:
    """redis-server and redis-benchmark from Debian, installed if missing (root only)."""
    if shutil.which("redis-server") and shutil.which("redis-benchmark"):
        return
    if os.geteuid() != 0:
        raise SystemExit("./run bench needs redis-server and redis-benchmark: "
                         "sudo apt-get install redis-server redis-tools")
    print("installing redis-server and redis-tools (apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    "redis-server", "redis-tools"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


class FloorServer:
    """floor_server.py in a child process, with the same fsync policy."""

    def __init__(self, directory: Path, fsync: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.floor_server", str(directory), fsync],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
        )
        self.pid = self.proc.pid
        line = self.proc.stdout.readline()  # "ready PORT" once it listens
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the floor server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self.proc.stdout.close()


@contextlib.contextmanager
def kvd_and_redis() -> Iterator[tuple[Daemon, RedisServer]]:
    """kvd (its defaults: fsync always) and Redis (AOF, fsync always) on loopback TCP,
    both stopped afterwards, for the benches that measure one beside the other."""
    with tempfile.TemporaryDirectory(prefix="kvd-bench-") as tmp:
        with kvd_beside_redis(Path(tmp), ["--no-auto-compact"],
                              ["--appendonly", "yes", "--appendfsync", "always"],
                              tcp=True) as servers:
            yield servers


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def benchmark(port: int, pid: int, args: list[str], requests: int, test: str = "") -> dict:
    """One redis-benchmark run; its first result row, or the one whose test name begins
    with `test` (LRANGE's tests come after the LPUSHes that fill the list, and the CPU
    figure then counts those too)."""
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "--csv",
         *args], capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    row = next(r for r in csv.DictReader(io.StringIO(out)) if r["test"].startswith(test))
    return {
        "rps": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
        "cpu_us_per_request": cpu / requests * 1e6,
    }


def _median(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def run(quick: bool) -> dict:
    ensure_tools()
    rounds = 1 if quick else 3
    scale = 0.1 if quick else 1.0
    results: dict = {}
    for fsync in ("always", "everysec"):
        workloads = [w for w in WORKLOADS if fsync == "always" or w[0] in EVERYSEC_WORKLOADS]
        if quick:
            workloads = [w for w in workloads if w[0] in EVERYSEC_WORKLOADS]
        print(f"\n== kvd vs redis-server {_redis_version()}, fsync {fsync}, "
              f"{rounds} round(s), alternating ==")
        print(f"{'workload':<28} {'kvd req/s':>10} {'redis req/s':>11} {'floor req/s':>11} "
              f"{'kvd/redis':>9} {'kvd/floor':>9} {'floor/redis':>11} {'kvd p50/p99 ms':>15} "
              f"{'redis p50/p99':>14} {'cpu us/req kvd/redis/floor':>27}")
        with tempfile.TemporaryDirectory(prefix="kvd-bench-") as tmp:
            servers = {}
            try:
                kvd = Daemon(Path(tmp) / "kvd", ["--fsync", fsync, "--no-auto-compact",
                                                 "--max-clients", "2000"], tcp=True)
                servers["kvd"] = kvd
                kvd.start()
                servers["redis"] = RedisServer(Path(tmp) / "redis",
                                               ["--appendonly", "yes", "--appendfsync", fsync])
                servers["floor"] = FloorServer(Path(tmp) / "floor", fsync)
                for name, args, requests in workloads:
                    n = max(1000, int(requests * scale))
                    runs: dict[str, list] = {who: [] for who in servers}
                    for _ in range(rounds):
                        for who, server in servers.items():
                            runs[who].append(benchmark(server.port, server.pid, args, n))
                    k, r, f = (_median(runs[who]) for who in ("kvd", "redis", "floor"))
                    results[f"{fsync}/{name}"] = {"kvd": k, "redis": r, "floor": f,
                                                  "ratio": k["rps"] / r["rps"],
                                                  "floor_ratio": f["rps"] / r["rps"]}
                    print(f"{name:<28} {k['rps']:>10,.0f} {r['rps']:>11,.0f} {f['rps']:>11,.0f} "
                          f"{k['rps'] / r['rps']:>9.2f} {k['rps'] / f['rps']:>9.2f} "
                          f"{f['rps'] / r['rps']:>11.2f} "
                          f"{k['p50_ms']:>7.2f}/{k['p99_ms']:<7.2f} "
                          f"{r['p50_ms']:>6.2f}/{r['p99_ms']:<7.2f} "
                          f"{k['cpu_us_per_request']:>9.1f}/{r['cpu_us_per_request']:.1f}/"
                          f"{f['cpu_us_per_request']:.1f}")
            finally:
                for who, server in servers.items():
                    if who == "kvd":
                        server.cleanup()
                    else:
                        server.stop()
    return results


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else "?"


def markdown(results: dict, machine: str) -> str:
    lines = [
        f"kvd against redis-server {_redis_version()} (AOF on, same fsync policy), "
        f"redis-benchmark over loopback TCP, medians of alternating rounds, on {machine}. "
        "Floor: the least a Python server with the same durability does "
        "(tests/bench/floor_server.py), measured in the same rounds.",
        "",
        "| fsync | workload | kvd req/s | Redis req/s | kvd/Redis | kvd/floor | floor/Redis | "
        "kvd p50 / p99 ms | Redis p50 / p99 ms | server CPU µs/req kvd / Redis / floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in results.items():
        fsync, name = key.split("/", 1)
        k, r, f = row["kvd"], row["redis"], row["floor"]
        lines.append(
            f"| {fsync} | `{name}` | {k['rps']:,.0f} | {r['rps']:,.0f} | {row['ratio']:.2f} | "
            f"{k['rps'] / f['rps']:.2f} | {row['floor_ratio']:.2f} | "
            f"{k['p50_ms']:.2f} / {k['p99_ms']:.2f} | "
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {k['cpu_us_per_request']:.1f} / "
            f"{r['cpu_us_per_request']:.1f} / {f['cpu_us_per_request']:.1f} |"
        )
    return "\n".join(lines) + "\n"
