"""IPv6 vs IPv4 through the tunnel on the same pair (root, local lab): iperf3 TCP throughput and ping RTT h1 -> h2.

A three-host ``--dual-stack`` lab; the real program (:class:`wgmesh.lab.deploy.LabStack`) deploys the lab's dual-stack
stack file (tunnel networks 10.255.0.0/24 + fd00:255::/64), then h1 -> h2 is measured:

* underlay (no WireGuard, for reference): h2's public IPv4 vs its public IPv6 address;
* IPv4 endpoints: through the tunnel to h2's IPv4 tunnel address vs its IPv6 tunnel address;
* IPv6 endpoints (``[2001:db8:100::12]:51820``, installed from a clean slate): the same two.

Each figure is the median of ``--rounds`` runs, IPv4 and IPv6 alternating within a round so that the machine's
drift hits both alike; RTT is the mean of 40 pings 50 ms apart. Printed: every figure and the IPv6 / IPv4 ratios.
Everything shares this machine's CPUs (wireguard-go, iperf3, both ends), so absolute numbers are this machine's;
the ratios are the point. Traffic stays inside the lab's namespaces.

    sudo .venv/bin/python bench/ipv6.py [--seconds 5] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lab import iperf3_bps, lab_bench_parser, lab_missing, mbps, ms, rtt_ms
from wgmesh.lab import Lab
from wgmesh.lab.deploy import LabStack

NAMES = ("h1", "h2", "h3")


def deploy(stack: LabStack, config: dict[str, Any]) -> None:
    result = stack.up(config)
    if not result.ok:
        raise RuntimeError(f"pulumi up failed: {result.error}")
    failed = [name for name, check in result.verification.items() if not (isinstance(check, dict) and check.get("ok"))]
    if failed:
        raise RuntimeError(f"verification failed on {', '.join(failed)}: {result.verification}")


def compare(lab: Lab, v4: str, v6: str, *, seconds: float, rounds: int, client: str = "h1", server: str = "h2") -> dict[str, Any]:
    """``client`` -> ``server`` to ``v4`` and to ``v6`` (two addresses of ``server``): median throughput, mean RTT,
    and v6 / v4 ratios."""
    runs: dict[str, list[float]] = {"v4": [], "v6": []}
    for _ in range(rounds):
        for family, address in (("v4", v4), ("v6", v6)):
            runs[family].append(iperf3_bps(lab, server, client, address, seconds))
    figures: dict[str, Any] = {"address_v4": v4, "address_v6": v6}
    for family, address in (("v4", v4), ("v6", v6)):
        figures[f"{family}_bps"] = statistics.median(runs[family])
        figures[f"{family}_bps_runs"] = runs[family]
        figures[f"{family}_rtt_ms"] = rtt_ms(lab, client, address)
    figures["bps_ratio"] = round(figures["v6_bps"] / figures["v4_bps"], 3)
    rtt4, rtt6 = figures["v4_rtt_ms"], figures["v6_rtt_ms"]
    figures["rtt_ratio"] = round(rtt6 / rtt4, 3) if rtt4 and rtt6 else None
    return figures


def measure(lab: Lab, seconds: float, rounds: int) -> dict[str, Any]:
    stack = LabStack(lab)
    h2 = lab.host("h2")
    assert h2.public_address6 is not None

    def one(v4: str, v6: str) -> dict[str, Any]:
        return compare(lab, v4, v6, seconds=seconds, rounds=rounds)

    results: dict[str, Any] = {"underlay": one(h2.public_address, h2.public_address6)}
    deploy(stack, stack.config())
    results["tunnel_v4_endpoints"] = one(h2.tunnel_address, h2.tunnel_address6)
    # A clean slate: an interface that talked over IPv4 may keep the peer's roamed IPv4 address.
    stack.destroy()
    hosts = lab.hosts()
    deploy(stack, stack.config(peer_settings={name: {"endpoint": hosts[name].endpoint6} for name in NAMES}))
    results["tunnel_v6_endpoints"] = one(h2.tunnel_address, h2.tunnel_address6)
    stack.destroy()
    return results


def main() -> int:
    parser = lab_bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="iperf3 runs per figure (the median is kept)")
    args, _ignored = parser.parse_known_args()
    if lab_missing("bench/ipv6.py", needs_iperf=True):
        return 0
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-ipv6-") as tmp:
        lab = Lab(Path(tmp) / "lab")
        lab.up(len(NAMES), dual_stack=True, wait=300)  # another lab (a test run) may hold the machine: take turns
        try:
            results = measure(lab, args.seconds, max(1, args.rounds))
        finally:
            lab.down()
    print(f"h1 -> h2, IPv6 vs IPv4; iperf3 TCP {args.seconds:g} s, median of {args.rounds}; RTT = mean of 40 pings")
    print(f"  {'path':<34} {'IPv4':>14} {'IPv6':>14} {'v6/v4':>7}   {'RTT IPv4':>10} {'RTT IPv6':>10} {'v6/v4':>7}")
    labels = {
        "underlay": "underlay, no WireGuard",
        "tunnel_v4_endpoints": "tunnel, IPv4 endpoints",
        "tunnel_v6_endpoints": "tunnel, IPv6 endpoints ([v6]:port)",
    }
    for key, label in labels.items():
        row = results[key]
        print(
            f"  {label:<34} {mbps(row['v4_bps']):>14} {mbps(row['v6_bps']):>14} {row['bps_ratio']:>7.3f}"
            f"   {ms(row['v4_rtt_ms']):>10} {ms(row['v6_rtt_ms']):>10} {row['rtt_ratio'] or '-':>7}"
        )
    over = results["tunnel_v6_endpoints"]["v4_bps"] / results["tunnel_v4_endpoints"]["v4_bps"]
    print(f"  IPv6 underlay / IPv4 underlay, IPv4 inside the tunnel: throughput {over:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
