"""Wall time and dependency edges of the whole Pulumi program (``__main__.py``) under Pulumi's mocks.

This is the program's own cost in ``pulumi preview``/``up`` (validation, the resource graph, rendering every
config inside Outputs), without the engine or cloud latency. Goal: 100 peers under 5 s.

The lever is dependency edges, not resources: the Python SDK checks every new edge for a cycle by walking the
graph built so far (``pulumi.runtime.resource_cycle_breaker``), so all-to-all edges cost O(N^2) walks. The
benchmark counts the distinct (dependent, dependency) pairs the SDK declares (``declare_dependency``) next to
resources and seconds. The other lever was CPython's garbage collector (``relax_garbage_collector`` in
``components/program.py``): compare commits back to back, the machine's speed moves between days.

    python bench/program.py [--peers 10 40 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi.runtime import rpc

from tests.program_harness import run_program, synthetic_stack
from wgmesh.mesh.stackconfig import load_stack

GOAL_SECONDS_AT_100 = 5.0


@contextmanager
def counting_edges() -> Iterator[set[tuple[int, int]]]:
    """The distinct dependency edges the SDK declares while the block runs."""
    edges: set[tuple[int, int]] = set()
    declare = rpc.declare_dependency

    def counted(from_resource: Any, to_resource: Any) -> bool:
        edges.add((id(from_resource), id(to_resource)))
        return declare(from_resource, to_resource)

    with mock.patch.object(rpc, "declare_dependency", counted):
        yield edges


def measure(peers: int, repeat: int) -> tuple[float, float, int, int]:
    """Best wall and CPU time of ``repeat`` runs (CPU time is steadier on a shared machine), and how many resources
    and dependency edges one run registers."""
    best = best_cpu = float("inf")
    count = edges = 0
    for _ in range(repeat):
        with counting_edges() as declared:
            started, started_cpu = time.perf_counter(), time.process_time()
            run = run_program(synthetic_stack(peers))
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - started_cpu)
        count, edges = len(run.mocks.resources), len(declared)
    return best, best_cpu, count, edges


def quota_figures() -> None:
    """The largest route table and security-group figures at 100 AWS peers (50 per region) and 10 externals, planned
    by wgmesh.mesh.awsplan with and without route_summaries (without, the mesh is refused: planned with the limit lifted)."""
    for summaries in (True, False):
        raw = synthetic_stack(110, external_every=11, regions=("cn-northwest-1", "cn-north-1"), summaries=summaries)
        raw["wgmesh:mesh"]["aws_quotas"]["routes_per_table"] = 1000
        plans = load_stack(raw["wgmesh:mesh"]).aws_plans.values()
        routes = max(plan.route_entries for plan in plans)
        inbound = max(plan.main_group_inbound * (i == 0) + len(group) for plan in plans for i, group in enumerate(plan.wireguard_groups))
        groups = max(plan.security_groups for plan in plans)
        verdict = "fits" if routes <= 50 and inbound <= 60 and groups <= 5 else "refused (routes_per_table)"
        label = "with route_summaries" if summaries else "without"
        print(
            f"100 AWS + 10 external peers, {label:>20}: largest route table {routes:>3} entries (quota 50), "
            f"largest group {inbound} inbound entries (60), {groups} groups per interface (5): {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 40, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'peers':>6} {'resources':>10} {'edges':>8} {'wall (best of ' + str(args.repeat) + ')':>20} {'cpu':>8} {'per peer':>10}")
    results = {}
    for peers in args.peers:
        seconds, cpu, count, edges = measure(peers, args.repeat)
        results[peers] = seconds
        print(f"{peers:>6} {count:>10} {edges:>8} {seconds:>19.2f}s {cpu:>7.2f}s {seconds / peers * 1000:>8.1f}ms")
    quota_figures()
    if 100 in results:
        verdict = "met" if results[100] < GOAL_SECONDS_AT_100 else "NOT met"
        ratio = GOAL_SECONDS_AT_100 / results[100]
        print(f"goal: 100 peers under {GOAL_SECONDS_AT_100:.0f} s -> {results[100]:.2f} s, {verdict} (goal / measured = {ratio:.2f})")


if __name__ == "__main__":
    main()
