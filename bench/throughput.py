"""Bulk TCP through the mesh against the underlay, direct and relayed, with the MTU settings side by side (root).

Two worlds, each a lab of five hosts (h4 and h5 behind NAT, relayed through a public host):

* harsh (the lab's default): hosts' links carry 9001-byte frames, the path between them 1500, and nothing says
  "fragmentation needed" (a PMTUD black hole); firewalls, interface names and shells per host profile;
* gentle (``--gentle``): 1500 everywhere, no firewall: the clean path the harsh figures are held against.

In each, the real program deploys the mesh with each tunnel MTU setting: wgmesh's default (1420, from the
documented 1500-byte underlay), an override (``mtu: 1380``), and, in the harsh world only, what wg-quick derives
from a 9001 uplink when no MTU is rendered (8921: the code before this benchmark), whose transfers stall. Each
transfer is ``--megabytes`` over TCP (iperf3, bounded by ``--timeout``; the median of ``--repeat``): the underlay between two hosts' uplink
addresses (its MSS set to 1460, as a host behind a black hole needs), host to host through the tunnel, LAN to LAN,
and LAN to LAN through the relay. Printed: Mbit/s and the ratio to the underlay, and harsh / gentle per path.
Figures, never assertions: one machine (2 CPUs here) runs every host, so read ratios, not absolute numbers.

    sudo .venv/bin/python bench/throughput.py [--megabytes 20] [--repeat 3] [--timeout 10] [--json FILE]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lab import lab_bench_parser, lab_missing
from wgmesh.lab import Lab
from wgmesh.lab.deploy import LabStack
from wgmesh.lab.traffic import Transfer, iperf

HOSTS = ("h1", "h2", "h3", "h4", "h5")
SETTINGS = {"1420 (default)": None, "1380 (mtu: 1380)": 1380, "8921 (none rendered)": 8921}


def deploy(stack: LabStack, mtu: int | None) -> None:
    config = stack.config(HOSTS)
    if mtu is not None:
        config["wgmesh:mesh"]["mtu"] = mtu
    # Verification pings small packets only: it passes even where bulk TCP stalls, which is the point of 8921.
    result = stack.up(config)
    if not result.ok:
        raise RuntimeError(f"pulumi up failed: {result.error}")


def median(transfers: list[Transfer]) -> Transfer:
    """The median transfer by throughput; a stalled one anywhere makes the result stalled (that is what matters)."""
    stalled = [transfer for transfer in transfers if not transfer.ok]
    if stalled:
        return stalled[0]
    return sorted(transfers, key=lambda transfer: transfer.bits_per_second)[len(transfers) // 2]


def paths(lab: Lab, size: int, timeout: float, repeat: int) -> dict[str, Transfer]:
    hosts = lab.hosts()
    routes = {
        "host to host, tunnel": ("h2", "h3", hosts["h3"].tunnel_address),
        "LAN to LAN, direct": ("h1-lan", "h2-lan", hosts["h2"].lan_client),
        "LAN to LAN, NAT to public": ("h4-lan", "h3-lan", hosts["h3"].lan_client),
        "LAN to LAN, relayed": ("h4-lan", "h5-lan", hosts["h5"].lan_client),
    }
    figures = {}
    for label, (client, server, address) in routes.items():
        runs = [iperf(lab, client, server, address, size=size, timeout=timeout)]
        while runs[-1].ok and len(runs) < repeat:  # a stalled transfer is not repeated: it would stall again
            runs.append(iperf(lab, client, server, address, size=size, timeout=timeout))
        figures[label] = median(runs)
    return figures


def underlay(lab: Lab, size: int, timeout: float, repeat: int) -> Transfer:
    """h2 -> h3 between their uplink addresses, outside the tunnel, with a 1460-byte MSS (h3 is the plain host,
    whose firewall lets iperf3 in); ten times the bytes, since the bare path is that much faster."""
    address = lab.host("h3").address
    return median([iperf(lab, "h2", "h3", address, size=10 * size, timeout=timeout, mss=1460) for _ in range(repeat)])


def world(harsh: bool, size: int, timeout: float, repeat: int, root: Path) -> dict[str, Any]:
    lab = Lab(root / ("harsh" if harsh else "gentle"))
    lab.up(len(HOSTS), nat_peer=2, harsh=harsh, wait=240)
    try:
        stack = LabStack(lab)
        figures: dict[str, Any] = {"underlay": underlay(lab, size, timeout, repeat)}
        for label, mtu in SETTINGS.items():
            if mtu == 8921 and not harsh:
                continue
            deploy(stack, mtu)
            figures[label] = paths(lab, size, timeout, repeat)
        return figures
    finally:
        lab.down()


def show(name: str, figures: dict[str, Any]) -> None:
    base: Transfer = figures["underlay"]
    print(f"\n{name}: underlay h2 -> h3 {describe(base)}")
    for label, transfers in figures.items():
        if label == "underlay":
            continue
        print(f"  tunnel MTU {label}")
        for path, transfer in transfers.items():
            ratio = f"{transfer.bits_per_second / base.bits_per_second:5.2f} x underlay" if transfer.ok and base.ok else ""
            print(f"    {path:<28} {describe(transfer):<34} {ratio}")


def describe(transfer: Transfer) -> str:
    if not transfer.ok:
        return f"STALLED ({transfer.error[:40]})"
    return f"{transfer.mbit:7.1f} Mbit/s ({transfer.seconds:4.1f} s)"


def main() -> int:
    parser = lab_bench_parser(__doc__)
    parser.add_argument("--megabytes", type=int, default=20, help="bytes per transfer, in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="transfers per path and setting; the median is shown")
    parser.add_argument("--timeout", type=float, default=10.0, help="a transfer not done by then counts as stalled")
    args, _ = parser.parse_known_args()
    if lab_missing("bench/throughput.py", needs_iperf=True):
        return 0
    size = args.megabytes * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-throughput-") as scratch:
        results = {name: world(name == "harsh", size, args.timeout, args.repeat, Path(scratch)) for name in ("harsh", "gentle")}
    for name, figures in results.items():
        show(name, figures)
    print("\nharsh / gentle (same path, same MTU setting):")
    for label in SETTINGS:
        if label not in results["gentle"]:
            continue
        for path, transfer in results["harsh"][label].items():
            gentle = results["gentle"][label][path]
            ratio = f"{transfer.bits_per_second / gentle.bits_per_second:5.2f}" if transfer.ok and gentle.ok else "-"
            print(f"  {label:<22} {path:<28} {ratio}")
    stalled = [
        f"{name}: {label}: {path}"
        for name, figures in results.items()
        for label, transfers in figures.items()
        if label != "underlay" and not label.startswith("8921")
        for path, t in transfers.items()
        if not t.ok
    ]
    print(f"\nstalled with wgmesh's settings: {stalled or 'none'}")
    if args.json:
        plain = {
            name: {
                label: (value.__dict__ if isinstance(value, Transfer) else {path: t.__dict__ for path, t in value.items()})
                for label, value in figures.items()
            }
            for name, figures in results.items()
        }
        args.json.write_text(json.dumps(plain, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
