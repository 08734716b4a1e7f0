"""What entering the program sandbox costs a child, per layer set (bench_executor.py measures whole programs).

For each layer set: a Sandbox is prepared once (as a worker does), then N children are
forked; each enters the sandbox, reports how long `enter()` took, and exits. The table
gives the median time inside `enter()` and of the whole fork + enter + exit + reap.

    PYTHONPATH=arc25_src python bench/bench_sandbox.py [--children 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time

from arc25.exec_worker import preload
from arc25.metrics import format_table
from arc25.sandbox import ALL_LAYERS, Layer, Sandbox

SETS = {
    "none": frozenset(),
    "audit_hook": frozenset({Layer.AUDIT_HOOK}),
    "seccomp": frozenset({Layer.SECCOMP}),
    "landlock": frozenset({Layer.LANDLOCK}),
    "all": ALL_LAYERS,
}


def measure(sandbox: Sandbox, n: int) -> tuple[float, float]:
    """(median us inside `enter()`, median us for the whole fork + enter + exit + reap) over n children."""
    enter_ns, total_ns = [], []
    for _ in range(n):
        r, w = os.pipe()
        start = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:
            try:
                t = time.perf_counter_ns()
                sandbox.enter()
                os.write(w, struct.pack("<q", time.perf_counter_ns() - t))
                os._exit(0)
            except BaseException:
                os._exit(1)
        os.close(w)
        data = os.read(r, 8)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        total_ns.append(time.perf_counter_ns() - start)
        if status != 0 or len(data) != 8:
            raise RuntimeError(f"a child failed to enter the sandbox (status {status})")
        enter_ns.append(struct.unpack("<q", data)[0])
    return statistics.median(enter_ns) / 1000, statistics.median(total_ns) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of them is shown")
    args = parser.parse_args(argv)
    preload()  # the worker's memory, so fork costs what it costs there
    sandboxes = {name: Sandbox(layers) for name, layers in SETS.items()}
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):  # interleaved: load from other processes hits every set alike
        for name, sandbox in sandboxes.items():
            enter, total = measure(sandbox, args.children)
            old = best.get(name)
            best[name] = (min(enter, old[0]), min(total, old[1])) if old else (enter, total)
    rows = [{"layers": name, "active": sandboxes[name].report.describe(), "enter() us": f"{e:.0f}",
             "fork+enter+exit+reap us": f"{t:.0f}"} for name, (e, t) in best.items()]
    print(f"{args.children} children x {args.rounds} rounds per layer set (medians, best round), "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
