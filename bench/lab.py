"""wgmesh for real on the local network-namespace lab (root): connect time, loss on peer add, tunnel cost.

For each size N (default 3, 10 and 30 peers) a lab of N+1 hosts is built, then:

* connect time: one ``pulumi up`` (the real program through the real engine, :class:`wgmesh.lab.deploy.LabStack`)
  of the first N hosts, from its start until every peer's verify command has seen a handshake with and a ping
  answer from every other peer; then every ordered pair is pinged again from inside the namespaces (tunnel
  addresses), which must all answer. Goal: 30 peers connected in under 60 s.
* loss on add: host N+1 joins (a second ``pulumi up``) while ``ping -i 0.05`` runs h1 -> h2 over the tunnel and
  LAN to LAN (h1's LAN client -> h2's). Goal: 0 packets lost.

On the 3-peer lab, also tunnel vs. no tunnel: iperf3 TCP throughput and ping RTT h1 -> h2 through WireGuard
(wireguard-go, as on these hosts) and over the very same underlay without it (h2's public address); the ratio is
the tunnel's cost. What a relay costs is measured by ``bench/relays.py``: pairs behind NAT relayed by the real
program, not AllowedIPs moved by hand.

Everything runs on one machine (2 CPUs here): WireGuard and iperf3 share the same cores, so absolute throughput is
this machine's; ratios are the point. Traffic stays inside the lab's namespaces.

    sudo .venv/bin/python bench/lab.py [--peers 3 10 30] [--seconds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wgmesh.lab import Lab, LabError, check_prerequisites
from wgmesh.lab.core import which
from wgmesh.lab.deploy import LabStack, Pinger, all_pairs, in_lab, tunnel_pairs

GOAL_CONNECT_SECONDS = 60.0
GOAL_CONNECT_PEERS = 30


def rtt_ms(lab: Lab, source: str, address: str, count: int = 40) -> float | None:
    """Average RTT of ``count`` pings 50 ms apart (after one warm-up ping), or None when they do not answer."""
    in_lab(lab, source, ["ping", "-n", "-q", "-c", "1", "-W", "2", address], timeout=10)
    result = in_lab(lab, source, ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", "2", address], timeout=count + 15)
    for line in result.stdout.splitlines():
        if line.startswith(("rtt", "round-trip")):
            return float(line.split("=")[1].split("/")[1])
    return None


def iperf3_bps(lab: Lab, server: str, client: str, address: str, seconds: float) -> float:
    """TCP throughput client -> server (bits/s as the receiver counted them), one iperf3 run."""
    listener = subprocess.Popen(
        lab.exec_argv(server, ["iperf3", "-s", "-1", "-p", "5201"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            listening = in_lab(lab, server, ["ss", "-Hltn", "sport = :5201"], timeout=5)
            if listening.stdout.strip() or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        result = in_lab(lab, client, ["iperf3", "-J", "-c", address, "-p", "5201", "-t", f"{seconds:g}"], timeout=seconds + 30)
        if result.returncode != 0:
            raise RuntimeError(f"iperf3 {client} -> {address}: {(result.stdout + result.stderr)[-400:]}")
        return float(json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        try:
            listener.wait(timeout=10)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait()


def connect_and_add(peers: int, state_root: Path) -> dict[str, Any]:
    """Lab of peers+1 hosts; deploy ``peers``; add one more under ping. The lab stays up (returned) for more."""
    lab = Lab(state_root / f"lab-{peers}")
    figures: dict[str, Any] = {"peers": peers}
    started = time.monotonic()
    lab.up(peers + 1, wait=300)  # another lab (a test run) may hold the machine: take turns
    figures["lab_build_s"] = round(time.monotonic() - started, 2)
    try:
        stack = LabStack(lab)
        names = [f"h{index}" for index in range(1, peers + 1)]
        deployed = stack.up(stack.config(names))
        if not deployed.ok:
            raise RuntimeError(f"pulumi up of {peers} peers failed: {deployed.error}")
        verified = [name for name, check in deployed.verification.items() if isinstance(check, dict) and check.get("ok")]
        figures["connect_s"] = round(deployed.seconds, 2)
        figures["verified_peers"] = len(verified)
        started = time.monotonic()
        pairs = all_pairs(lab, tunnel_pairs(lab, names), timeout=10)
        figures["all_pairs_check_s"] = round(time.monotonic() - started, 2)
        figures["pairs"] = len(pairs)
        figures["pairs_answering"] = sum(pairs.values())

        h2 = lab.host("h2")
        with Pinger(lab, "h1", h2.tunnel_address) as tunnel, Pinger(lab, "h1-lan", h2.lan_client) as lan:
            added = stack.up(stack.config([*names, f"h{peers + 1}"]))
        if not added.ok:
            raise RuntimeError(f"adding peer {peers + 1} failed: {added.error}")
        assert tunnel.stats and lan.stats
        figures["add_s"] = round(added.seconds, 2)
        figures["add_tunnel_ping"] = {"sent": tunnel.stats.transmitted, "lost": tunnel.stats.lost}
        figures["add_lan_ping"] = {"sent": lan.stats.transmitted, "lost": lan.stats.lost}
        figures["add_verified"] = all(isinstance(check, dict) and check.get("ok") for check in added.verification.values())
    except BaseException:
        lab.down()
        raise
    figures["_lab"] = lab
    return figures


def tunnel_cost(lab: Lab, seconds: float) -> dict[str, Any]:
    """iperf3 and RTT h1 -> h2: over the underlay, then through the tunnel."""
    h2 = lab.host("h2")
    figures: dict[str, Any] = {}
    figures["underlay_rtt_ms"] = rtt_ms(lab, "h1", h2.public_address)
    figures["tunnel_rtt_ms"] = rtt_ms(lab, "h1", h2.tunnel_address)
    figures["underlay_bps"] = iperf3_bps(lab, "h2", "h1", h2.public_address, seconds)
    figures["tunnel_bps"] = iperf3_bps(lab, "h2", "h1", h2.tunnel_address, seconds)
    figures["tunnel_ratio"] = round(figures["tunnel_bps"] / figures["underlay_bps"], 3)
    return figures


def mbps(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:,.0f} Mbit/s"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def lab_bench_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every lab benchmark takes; each script adds its own (``./dev bench`` passes the same arguments
    to every script, so each parses with ``parse_known_args``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 duration per measurement")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON")
    return parser


def lab_missing(script: str, *, needs_iperf: bool) -> bool:
    """Say why ``script`` cannot measure on this machine (no root, a missing tool) and return True; else False.

    A benchmark that cannot run is not an error: it prints the reason and exits 0, like a skipped test."""
    try:
        check_prerequisites()
    except LabError as exc:
        print(f"{script} skipped: {exc}")
        return True
    if needs_iperf and (which("iperf3") is None or which("ss") is None):
        print(f"{script} skipped: needs iperf3 and ss (apt-get install iperf3 iproute2)")
        return True
    return False


def main() -> int:
    parser = lab_bench_parser(__doc__)
    parser.add_argument("--peers", type=int, nargs="+", default=[3, 10, 30])
    args, _ignored = parser.parse_known_args()
    if lab_missing("bench/lab.py", needs_iperf=False):
        return 0
    iperf = which("iperf3") is not None and which("ss") is not None
    results: dict[str, Any] = {"sizes": [], "machine": {"cpus": len(__import__("os").sched_getaffinity(0))}}
    print(
        f"{'peers':>5} {'lab build':>10} {'connect (pulumi up)':>20} {'verified':>9} {'pairs ok':>10} {'add':>7}"
        f" {'lost on add (tunnel, LAN)':>26}"
    )
    with tempfile.TemporaryDirectory(prefix="wgmesh-bench-") as tmp:
        for peers in args.peers:
            figures = connect_and_add(peers, Path(tmp))
            lab = figures.pop("_lab")
            try:
                tunnel, lan = figures["add_tunnel_ping"], figures["add_lan_ping"]
                print(
                    f"{peers:>5} {figures['lab_build_s']:>9.1f}s {figures['connect_s']:>19.1f}s {figures['verified_peers']:>4}/{peers:<4}"
                    f" {figures['pairs_answering']:>4}/{figures['pairs']:<5} {figures['add_s']:>6.1f}s"
                    f"   {tunnel['lost']}/{tunnel['sent']}, {lan['lost']}/{lan['sent']}"
                )
                results["sizes"].append(figures)
                if peers == min(args.peers) and peers >= 3:
                    if iperf:
                        results["paths"] = tunnel_cost(lab, args.seconds)
                    else:
                        print("iperf3 or ss missing (apt-get install iperf3 iproute2): throughput figures skipped")
            finally:
                lab.down()
    paths = results.get("paths")
    if paths:
        print(f"\nh1 -> h2, {args.seconds:g} s iperf3 TCP each, RTT = mean of 40 pings:")
        print(f"  without WireGuard (underlay): {mbps(paths['underlay_bps']):>16}   RTT {ms(paths['underlay_rtt_ms'])}")
        print(f"  through the tunnel:           {mbps(paths['tunnel_bps']):>16}   RTT {ms(paths['tunnel_rtt_ms'])}")
        print(f"  tunnel / underlay throughput: {paths['tunnel_ratio']:.3f}")
        print("(relay figures: bench/relays.py)")
    by_size = {figures["peers"]: figures for figures in results["sizes"]}
    failed = False
    if GOAL_CONNECT_PEERS in by_size:
        figures = by_size[GOAL_CONNECT_PEERS]
        met = figures["connect_s"] < GOAL_CONNECT_SECONDS and figures["pairs_answering"] == figures["pairs"]
        failed |= not met
        print(
            f"\ngoal: {GOAL_CONNECT_PEERS} peers connected in under {GOAL_CONNECT_SECONDS:.0f} s -> {figures['connect_s']:.1f} s, "
            f"{figures['pairs_answering']}/{figures['pairs']} pairs: {'met' if met else 'NOT met'}"
        )
    lost = sum(figures["add_tunnel_ping"]["lost"] + figures["add_lan_ping"]["lost"] for figures in results["sizes"])
    failed |= lost != 0
    print(f"goal: 0 packets lost on peer add -> {lost} lost over {len(results['sizes'])} adds: {'met' if lost == 0 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
