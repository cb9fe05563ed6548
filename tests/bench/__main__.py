"""`./run bench [--quick] [--keys N]`: run the benchmarks, print tables, save JSON.

Every figure is printed next to a reference measured in the same run on the
same machine (timings on a shared machine are noisy; ratios hold). Results
go to tests/bench/results/ as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from . import storage_bench

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--keys", type=int, help="keys for the start-up and memory figures")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results = {"machine": machine(), "storage": storage_bench.run(args.quick, args.keys)}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(RESULTS, "storage.md"), "w") as f:
        f.write(storage_bench.markdown(results["storage"], results["machine"]))
    print(f"\nresults written to {RESULTS}/results.json and storage.md")


if __name__ == "__main__":
    main()
