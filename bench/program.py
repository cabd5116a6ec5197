"""Wall time of the whole Pulumi program (``__main__.py``) under Pulumi's mocks for 3, 30 and 100 peers.

This is the program's own cost in ``pulumi preview``/``up`` (validation, the resource graph, rendering every
config inside Outputs), without the engine or cloud latency. Goal: 100 peers under 5 s.

    python bench/program.py [--peers 3 30 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.program_harness import run_program, synthetic_stack

GOAL_SECONDS_AT_100 = 5.0


def measure(peers: int, repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs, and how many resources one run registers."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        run = run_program(synthetic_stack(peers))
        best = min(best, time.perf_counter() - started)
        count = len(run.mocks.resources)
    return best, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 30, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'peers':>6} {'resources':>10} {'wall (best of ' + str(args.repeat) + ')':>20} {'per peer':>10}")
    results = {}
    for peers in args.peers:
        seconds, count = measure(peers, args.repeat)
        results[peers] = seconds
        print(f"{peers:>6} {count:>10} {seconds:>19.2f}s {seconds / peers * 1000:>8.1f}ms")
    if 100 in results:
        verdict = "met" if results[100] < GOAL_SECONDS_AT_100 else "NOT met"
        ratio = GOAL_SECONDS_AT_100 / results[100]
        print(f"goal: 100 peers under {GOAL_SECONDS_AT_100:.0f} s -> {results[100]:.2f} s, {verdict} (goal / measured = {ratio:.2f})")


if __name__ == "__main__":
    main()
