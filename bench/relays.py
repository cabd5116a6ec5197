"""Relays on the local lab (root): what a relayed pair costs, what the relay spends, what replacing it loses.

A dual-stack lab of five hosts: h1-h3 public, h4 and h5 behind IPv4-only NAT routers of their own. The real program
deploys the mesh (:class:`wgmesh.lab.deploy.LabStack`), which relays h4 <-> h5 through the public host rendezvous hashing
picks. Then:

* throughput (iperf3 TCP) and RTT (mean of 40 pings) of a direct public pair (the two public hosts that are not
  the relay), of a NAT host to a public one (h4 -> a non-relay public host: the NAT routers' share), and of
  h4 -> h5 through the relay; the ratios relayed / direct are the point;
* the relay's CPU during the relayed transfer: CPU time of its wireguard-go over the transfer's wall time (as a
  share of one core, and of all CPU time the machine spent meanwhile), beside the two NAT hosts' wireguard-go;
* IPv6 vs IPv4 on the relayed pair: h4 -> h5's IPv4 and IPv6 tunnel addresses (IPv6 rides inside the IPv4
  tunnels: h4 and h5 have no IPv6 outside), alternating, median of ``--rounds`` (``bench/ipv6.py``'s comparison);
* loss while the relay is replaced: ``ping -i 0.05`` h4 -> h5 (tunnel, and LAN to LAN) while a deploy removes
  the relay (the pair moves to the next-best public host), then while one puts it back (the pair moves back),
  ``--rounds`` times.

Everything runs on one machine (2 CPUs here), so read ratios, not absolute numbers. Traffic stays inside the lab.

    sudo .venv/bin/python bench/relays.py [--seconds 5] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ipv6 import compare
from bench.lab import iperf3_bps, lab_bench_parser, lab_missing, mbps, ms, rtt_ms
from wgmesh.lab import Lab
from wgmesh.lab.deploy import LabStack, Pinger, wg_show, wireguard_pids

HOSTS = ("h1", "h2", "h3", "h4", "h5")
PUBLIC = ("h1", "h2", "h3")
NAT = ("h4", "h5")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time so far of the given processes (gone ones count as 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy so far (the ``cpu`` line of /proc/stat)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def deploy(stack: LabStack, names: list[str]) -> tuple[str, float]:
    """One deploy of ``names``; (the pair's relay, seconds)."""
    result = stack.up(stack.config(names))
    if not result.ok:
        raise RuntimeError(f"pulumi up failed: {result.error}")
    if not all(isinstance(check, dict) and check.get("ok") for check in result.verification.values()):
        raise RuntimeError(f"verification failed: {result.verification}")
    [pair] = result.exports["relays"]["pairs"]
    return str(pair["relay"]), result.seconds


def paths(lab: Lab, relay: str, seconds: float) -> dict[str, Any]:
    """Throughput and RTT of a direct public pair, NAT -> public, and the relayed NAT -> NAT pair; the relay's CPU."""
    first, second = [name for name in PUBLIC if name != relay]
    figures: dict[str, Any] = {"relay": relay, "direct_pair": f"{first} -> {second}", "nat_pair": f"h4 -> {second}"}
    for label, client, server in (("direct", first, second), ("nat_direct", "h4", second), ("relayed", "h4", "h5")):
        address = lab.host(server).tunnel_address
        figures[f"{label}_rtt_ms"] = rtt_ms(lab, client, address)
        processes = {name: wireguard_pids(lab, name) for name in (relay, "h4", "h5")}
        cpu_before = {name: cpu_seconds(pids) for name, pids in processes.items()}
        busy_before, started = machine_busy_seconds(), time.monotonic()
        figures[f"{label}_bps"] = iperf3_bps(lab, server, client, address, seconds)
        wall, busy = time.monotonic() - started, machine_busy_seconds() - busy_before
        if label == "relayed":
            spent = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in processes.items()}
            figures["relay_cpu_core_share"] = round(spent[relay] / wall, 3)
            figures["relay_cpu_machine_share"] = round(spent[relay] / busy, 3) if busy else None
            figures["nat_hosts_cpu_core_share"] = {name: round(spent[name] / wall, 3) for name in NAT}
            figures["machine_busy_cores"] = round(busy / wall, 2)
    figures["relayed_vs_direct_bps"] = round(figures["relayed_bps"] / figures["direct_bps"], 3)
    figures["relayed_vs_nat_direct_bps"] = round(figures["relayed_bps"] / figures["nat_direct_bps"], 3)
    if figures["direct_rtt_ms"] and figures["relayed_rtt_ms"]:
        figures["relayed_vs_direct_rtt"] = round(figures["relayed_rtt_ms"] / figures["direct_rtt_ms"], 2)
    return figures


def replacement(lab: Lab, stack: LabStack, relay: str, rounds: int) -> list[dict[str, Any]]:
    """Loss h4 -> h5 (tunnel and LAN) while a deploy removes the relay, then while one puts it back."""
    h5 = lab.host("h5")
    records = []
    for _ in range(rounds):
        for change, names in (("remove", [name for name in HOSTS if name != relay]), ("restore", list(HOSTS))):
            with Pinger(lab, "h4", h5.tunnel_address) as tunnel, Pinger(lab, "h4-lan", h5.lan_client) as lan:
                now, seconds = deploy(stack, names)
            assert tunnel.stats and lan.stats
            records.append(
                {
                    "change": change,
                    "relay_after": now,
                    "deploy_s": round(seconds, 2),
                    "tunnel": {"sent": tunnel.stats.transmitted, "lost": tunnel.stats.lost},
                    "lan": {"sent": lan.stats.transmitted, "lost": lan.stats.lost},
                }
            )
    return records


def main() -> int:
    parser = lab_bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="relay removals (each followed by its restore)")
    args, _ignored = parser.parse_known_args()
    if lab_missing("bench/relays.py", needs_iperf=True):
        return 0
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-relays-") as tmp:
        lab = Lab(Path(tmp) / "lab")
        lab.up(len(HOSTS), nat_peer=len(NAT), dual_stack=True, wait=300)  # another lab (a test run) may hold the machine: take turns
        try:
            stack = LabStack(lab)
            relay, _ = deploy(stack, list(HOSTS))
            if wg_show(lab, "h4") is None:
                raise RuntimeError("wg0 is not up on h4")
            results = {"paths": paths(lab, relay, args.seconds)}
            h5 = lab.host("h5")
            rounds = max(1, args.rounds)
            results["families"] = compare(
                lab, h5.tunnel_address, h5.tunnel_address6, seconds=args.seconds, rounds=rounds, client="h4", server="h5"
            )
            results["replacement"] = replacement(lab, stack, relay, args.rounds)
        finally:
            lab.down()
    figures = results["paths"]
    print(f"dual-stack 5-host lab, h4 and h5 behind IPv4-only NAT routers of their own, relayed through {figures['relay']}")
    print(f"iperf3 TCP {args.seconds:g} s each, RTT = mean of 40 pings:")
    rows = (
        (f"direct public pair ({figures['direct_pair']})", "direct"),
        (f"NAT host to public ({figures['nat_pair']})", "nat_direct"),
        (f"NAT to NAT through {figures['relay']} (h4 -> h5)", "relayed"),
    )
    for label, key in rows:
        print(f"  {label:<36} {mbps(figures[f'{key}_bps']):>14}   RTT {ms(figures[f'{key}_rtt_ms'])}")
    print(
        f"  relayed / direct: throughput {figures['relayed_vs_direct_bps']:.2f}, RTT {figures.get('relayed_vs_direct_rtt')}x;"
        f" relayed / NAT-to-public throughput {figures['relayed_vs_nat_direct_bps']:.2f}"
    )
    print(
        f"relay CPU during the relayed transfer: wireguard-go on {figures['relay']} used {figures['relay_cpu_core_share']:.0%} of a core"
        f" ({figures['relay_cpu_machine_share']:.0%} of all CPU the machine spent, {figures['machine_busy_cores']} cores busy);"
        f" h4 {figures['nat_hosts_cpu_core_share']['h4']:.0%}, h5 {figures['nat_hosts_cpu_core_share']['h5']:.0%}"
    )
    families = results["families"]
    print(f"h4 -> h5 through {figures['relay']}, IPv6 vs IPv4 (iperf3 median of {max(1, args.rounds)}, alternating):")
    print(
        f"  IPv4 {mbps(families['v4_bps'])}, IPv6 {mbps(families['v6_bps'])}: IPv6 / IPv4 {families['bps_ratio']:.3f};"
        f" RTT {ms(families['v4_rtt_ms'])} vs {ms(families['v6_rtt_ms'])} ({families['rtt_ratio']}x)"
    )
    print("loss h4 -> h5 while the relay is replaced (ping every 50 ms during the deploy):")
    for record in results["replacement"]:
        tunnel, lan = record["tunnel"], record["lan"]
        print(
            f"  {record['change']:<8} relay now {record['relay_after']}  deploy {record['deploy_s']:>4.1f} s"
            f"  lost tunnel {tunnel['lost']}/{tunnel['sent']}, LAN {lan['lost']}/{lan['sent']}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
