"""The real Pulumi engine on the lab (root): ``pulumi up`` from empty, a one-peer change and a key rotation.

For each size N (default 3, 10 and 30 peers) a lab of N hosts is built, then through the engine
(:class:`wgmesh.lab.deploy.LabStack`, the Automation API; which CLI and providers ran is printed):

* ``up`` from an empty stack (every host installed and verified): seconds, resources created, resources/s;
* ``up --expect-no-changes`` right after (the cost of a no-op run);
* a one-peer change (h1's MTU): only h1's install runs again, every verify runs again;
* a key rotation (h2's ``key_version``): every install runs again (each peer learns h2's new key);
* ``destroy``.

Beside them, the former stand-in's figures for the same deploys (it replayed the program's commands over SSH under
Pulumi's mocks, without the engine; measured with ``bench/lab.py`` before it was retired): the ratio says what the
real engine's diffing, state and plugin processes cost. Everything runs on one machine; read ratios.

    sudo .venv/bin/python bench/engine.py [--peers 3 10 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lab import lab_missing
from wgmesh.lab import Lab
from wgmesh.lab.deploy import LabStack, UpResult

# The stand-in's connect time (a deploy of N peers from empty, verified) and add-a-peer time, from bench/lab.py's
# last run on it (docs/performance.md, "The lab").
STAND_IN = {3: {"up_s": 3.1, "add_s": 2.6}, 10: {"up_s": 6.1, "add_s": 6.6}, 30: {"up_s": 34.0, "add_s": 22.1}}


def measure(peers: int, state_root: Path) -> dict[str, Any]:
    lab = Lab(state_root / f"lab-{peers}")
    figures: dict[str, Any] = {"peers": peers}
    lab.up(peers, wait=300)  # another lab (a test run) may hold the machine: take turns
    try:
        stack = LabStack(lab)
        figures["engine"] = stack.engine
        names = [f"h{index}" for index in range(1, peers + 1)]

        def step(label: str, config: dict[str, Any], **options: Any) -> UpResult:
            result = stack.up(config, **options)
            if not result.ok:
                raise RuntimeError(f"{label} at {peers} peers failed: {result.error}")
            figures[f"{label}_s"] = round(result.seconds, 2)
            return result

        first = step("up", stack.config(names))
        figures["resources"] = first.changes.get("create", 0)  # Pulumi's own count: the stack and barriers too
        figures["resources_per_s"] = round(figures["resources"] / first.seconds, 1)
        figures["verified"] = sum(1 for check in first.verification.values() if isinstance(check, dict) and check.get("ok"))
        step("noop", stack.config(names), expect_no_changes=True)
        change = step("one_peer", stack.config(names, peer_settings={"h1": {"mtu": 1400}}))
        figures["one_peer_installs"] = sorted(name for name in change.actions.get("update", []) if name.endswith("-install"))
        rotation = step("rotation", stack.config(names, peer_settings={"h1": {"mtu": 1400}, "h2": {"key_version": 2}}))
        figures["rotation_installs"] = len([name for name in rotation.actions.get("update", []) if name.endswith("-install")])
        started = time.monotonic()
        gone = stack.destroy()
        if not gone.ok:
            raise RuntimeError(f"destroy at {peers} peers failed: {gone.error}")
        figures["destroy_s"] = round(time.monotonic() - started, 2)
    finally:
        lab.down()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args()
    if lab_missing("bench/engine.py", needs_iperf=False):
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-engine-") as tmp:
        for peers in args.peers:
            figures = measure(peers, Path(tmp))
            results.append(figures)
            print(f"engine: {figures['engine']}")
            old = STAND_IN.get(peers, {})
            ratio = f"{figures['up_s'] / old['up_s']:.2f}x the stand-in's {old['up_s']:g} s" if old else "no stand-in figure"
            print(
                f"{peers:>3} peers: up from empty {figures['up_s']:>6.1f} s ({figures['resources']} resources, "
                f"{figures['resources_per_s']:g}/s, {figures['verified']}/{peers} verified; {ratio}) | no-op {figures['noop_s']:.1f} s | "
                f"one peer {figures['one_peer_s']:.1f} s (installs {', '.join(figures['one_peer_installs'])}) | "
                f"rotation {figures['rotation_s']:.1f} s ({figures['rotation_installs']} installs) | destroy {figures['destroy_s']:.1f} s"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
