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

from . import (
    compaction_bench,
    expiry_bench,
    hashes_bench,
    large_values_bench,
    lists_bench,
    moving_bench,
    pubsub_bench,
    scripting_bench,
    server_bench,
    sets_bench,
    storage_bench,
    transaction_bench,
)

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


# The parts run as run(quick) and reported as markdown(results), in this order after
# the server and storage parts (which take more).
ALIKE_PARTS = {"compaction": compaction_bench, "transactions": transaction_bench,
               "scripts": scripting_bench, "expiry": expiry_bench,
               "large-values": large_values_bench, "hashes": hashes_bench,
               "lists": lists_bench, "sets": sets_bench, "pubsub": pubsub_bench,
               "moving": moving_bench}
PARTS = ("server", "storage", *ALIKE_PARTS)


def main() -> None:
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--keys", type=int, help="keys for the start-up and memory figures")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="run only this part (repeatable)")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    print(f"machine: {machine()}")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "results.json")
    results = {}
    if os.path.exists(path):  # keep the parts not re-run this time
        with open(path) as f:
            results = json.load(f)
    results["machine"] = machine()
    if "server" in parts:
        results["server"] = server_bench.run(args.quick)
        _write("server.md", server_bench.markdown(results["server"], results["machine"]))
    if "storage" in parts:
        results["storage"] = storage_bench.run(args.quick, args.keys)
        _write("storage.md", storage_bench.markdown(results["storage"], results["machine"]))
    for name, module in ALIKE_PARTS.items():
        if name in parts:
            results[name] = module.run(args.quick)
            _write(f"{name}.md", module.markdown(results[name]))
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nresults written to {RESULTS}/")


def _write(name: str, text: str) -> None:
    with open(os.path.join(RESULTS, name), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
