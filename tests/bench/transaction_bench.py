"""MULTI/EXEC against a plain pipeline, kvd beside redis-server in one run.

A client sends 16 SETs as one pipeline, wrapped in MULTI ... EXEC or not
(redis-py's pipeline(transaction=True|False)); 8 such clients at once, fsync
always on both servers. Figures: SETs per second, and transaction/plain.
"""

from __future__ import annotations

import threading
import time

import redis

from .server_bench import ensure_tools, kvd_and_redis

CLIENTS, BATCH = 8, 16


def sets_per_second(port: int, transaction: bool, batches: int) -> float:
    def work(n: int) -> None:
        client = redis.Redis(port=port)
        for i in range(batches):
            pipe = client.pipeline(transaction=transaction)
            for j in range(BATCH):
                pipe.set(f"t:{n}:{j}", i)
            pipe.execute()
        client.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return CLIENTS * batches * BATCH / (time.perf_counter() - started)


def run(quick: bool) -> dict:
    ensure_tools()
    batches = 100 if quick else 500
    results: dict = {}
    with kvd_and_redis() as (kvd, reference):
        print(f"\n== transactions: {BATCH} SETs per pipeline, {CLIENTS} clients, "
              "fsync always ==")
        print(f"{'server':<8} {'plain SETs/s':>13} {'MULTI/EXEC SETs/s':>18} {'tx/plain':>9}")
        for name, server in (("kvd", kvd), ("redis", reference)):
            plain = sets_per_second(server.port, False, batches)
            tx = sets_per_second(server.port, True, batches)
            results[name] = {"plain": plain, "multi_exec": tx, "ratio": tx / plain}
            print(f"{name:<8} {plain:>13,.0f} {tx:>18,.0f} {tx / plain:>9.2f}")
    return results


def markdown(results: dict) -> str:
    lines = ["| server | plain pipeline, SETs/s | MULTI/EXEC, SETs/s | MULTI/EXEC / plain |",
             "|---|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['plain']:,.0f} | {row['multi_exec']:,.0f} | "
                     f"{row['ratio']:.2f} |")
    return "\n".join(lines) + "\n"
