"""``wgmesh lab up|deploy|down|status|exec|reboot``: the local network-namespace lab (root on Linux).

The lab (package :mod:`lab`, not part of the pure core) makes N "cloud servers" out of network namespaces on one
machine, each with sshd, a LAN behind it and optionally one behind NAT, and writes ``<state>/Pulumi.lab.yaml``, the
stack config that describes them as external peers (never into the repository root). ``lab down`` removes what
``up`` made: namespaces, processes, links, mounts, and the files (stack file, key, the deploy's state). ``lab deploy``
(or ``lab up --deploy``) runs ``pulumi up --stack lab`` with the real Pulumi engine (:mod:`wgmesh.lab.engine`) and prints
Pulumi's own summary; ``--destroy`` runs ``pulumi destroy``. This module only parses the
command line and prints; every failure the user can fix (not root, a tool missing, a lab already up) is a plain
``error:`` line and exit code 1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from wgmesh.cli.main import invocation
from wgmesh.lab.core import HANDSHAKE_TIMEOUT
from wgmesh.mesh.cli import EXIT_INVALID, EXIT_OK, UserError

EPILOG = (
    "Needs root on Linux and: iproute2, util-linux (nsenter, unshare), openssh-server, openssh-client, iptables, "
    "wireguard-tools, wireguard-go. Exit codes: 0 done (status: every host healthy), 1 a problem (printed), "
    "2 bad command line; exec exits with the command's code."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="build a local multi-cloud lab on network namespaces (root)",
        description="A local 'multi-cloud' on network namespaces: N hosts on a fake internet (198.51.100.0/24), each "
        "with sshd (root login by the lab's ed25519 key only), a LAN 10.201.<i>.0/24 behind it, optionally the last "
        "one behind NAT (its SSH is port-forwarded on the NAT router's public address). `lab up` writes "
        "<state>/Pulumi.lab.yaml describing the hosts as external peers.",
        epilog=EPILOG,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        type=Path,
        default=Path("lab-state"),
        metavar="DIR",
        help="the lab's state directory: key, host configs, state file (default: ./lab-state)",
    )
    actions = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    up = actions.add_parser("up", parents=[common], help="build the lab and write <state>/Pulumi.lab.yaml", epilog=EPILOG)
    up.add_argument("--peers", type=int, required=True, metavar="N", help="how many hosts (1-200)")
    up.add_argument(
        "--nat-peer",
        nargs="?",
        type=int,
        const=1,
        default=0,
        metavar="N",
        help="put the last host (or the last N, each behind its own NAT router) behind NAT: no public endpoint",
    )
    up.add_argument(
        "--dual-stack",
        action="store_true",
        help="IPv6 beside IPv4: 2001:db8:100::/64 on the internet, fd00:201:<i>::/64 LANs, tunnel network fd00:255::/64",
    )
    up.add_argument(
        "--gentle",
        action="store_true",
        help="friendly hosts (1500-byte links, no firewall, eth0, bash) instead of the harsh default: see docs/lab.md",
    )
    up.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another lab holds this machine (one at a time), wait up to SECONDS for it to go (default: fail at once)",
    )
    up.add_argument("--deploy", action="store_true", help="then deploy the mesh onto the hosts (`pulumi up --stack lab`, see `lab deploy`)")
    up.set_defaults(func=run_up)

    deploy = actions.add_parser(
        "deploy",
        parents=[common],
        help="deploy the mesh onto the lab with the Pulumi engine (pulumi up --stack lab)",
        description="Run `pulumi up --stack lab` with the lab's Pulumi.lab.yaml through the Pulumi engine (Automation API: "
        "the CLI from ./dev engine or PATH; the official command and random plugins where installed, the test providers "
        "otherwise) and print Pulumi's summary and each peer's verification. The stack's state lives in <state>/engine.",
    )
    deploy.add_argument("--peers", metavar="NAMES", help="only these hosts, comma-separated (default: all of them)")
    deploy.add_argument("--destroy", action="store_true", help="`pulumi destroy` instead: uninstall the mesh from every host")
    deploy.set_defaults(func=run_deploy)

    down = actions.add_parser(
        "down",
        parents=[common],
        help="remove everything `up` made: namespaces, processes, veth, mounts, and its files (stack file, key, deploy state)",
    )
    down.set_defaults(func=run_down)

    status = actions.add_parser("status", parents=[common], help="show the hosts, their SSH and WireGuard interfaces")
    status.set_defaults(func=run_status)

    exec_ = actions.add_parser(
        "exec",
        parents=[common],
        help="run a command in a lab namespace",
        description="Run a command inside a lab namespace: HOST (h1, h2, ...: the host's network and mount namespaces, "
        "as if logged in on it), HOST-lan (the client on its LAN, 10.201.<i>.10), HOST-nat (its NAT router) or inet. "
        "Without a command, an interactive shell. Example: wgmesh lab exec h1-lan -- ping -c1 10.201.2.10",
    )
    exec_.add_argument("target", metavar="HOST", help="h<i>, h<i>-lan, h<i>-nat or inet")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command and its arguments")
    exec_.set_defaults(func=run_exec)

    reboot = actions.add_parser(
        "reboot",
        parents=[common],
        help="power-cycle a host: kill its processes and WireGuard interface, then boot (sshd, wg-quick up)",
    )
    reboot.add_argument("host", metavar="HOST", help="h<i>")
    reboot.add_argument(
        "--handshake-timeout",
        type=float,
        default=HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help=f"wait up to SECONDS for a handshake with every peer, so that traffic flows again (default {HANDSHAKE_TIMEOUT:g}; 0: no wait)",
    )
    reboot.set_defaults(func=run_reboot)


def _lab(args: argparse.Namespace):  # -> wgmesh.lab.Lab
    from wgmesh.lab import Lab

    return Lab(args.state)


def _user_errors(fn):
    """Turn :class:`wgmesh.lab.LabError` into :class:`UserError`, which the CLI prints as one ``error:`` line (exit 1)."""

    def wrapper(args: argparse.Namespace) -> int:
        from wgmesh.lab import LabError

        try:
            return fn(args)
        except LabError as exc:
            raise UserError(str(exc)) from None

    wrapper.__doc__ = fn.__doc__
    return wrapper


@_user_errors
def run_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    hosts = lab.up(args.peers, nat_peer=args.nat_peer, dual_stack=args.dual_stack, harsh=not args.gentle, wait=args.wait)
    print(f"lab up: {len(hosts)} hosts in {time.monotonic() - started:.1f}s (state {lab.state_dir})")
    for host in hosts:
        where = f"endpoint {host.endpoint}" if host.endpoint else f"behind NAT ({host.address}), ssh via {host.ssh_host}:22"
        print(f"  {host.name:<5} ssh root@{host.ssh_host:<15} {where:<40} LAN {host.lan_subnet} (client {host.lan_client})")
        if host.harsh:
            profile = host.profile
            interfaces = f"uplink {host.uplink}, LAN {host.lan_if}, MTU {host.mtu}"
            print(f"  {'':<5} {profile.name}: firewall {profile.firewall}, {interfaces}, shell {profile.shell}")
        if host.dual_stack:
            where6 = f"IPv6 endpoint {host.endpoint6}" if host.endpoint6 else "no IPv6 underlay (behind NAT)"
            print(f"  {'':<5} {'':<24} {where6:<40} LAN {host.lan_subnet6} (client {host.lan_client6})")
    print(f"stack file: {lab.stack_path}")
    wgmesh = invocation()
    print(f"ssh key: {lab.key_path}   try: {wgmesh} lab exec h1 -- wg show   |   {wgmesh} lab down")
    return _deploy(lab, None, destroy=False) if args.deploy else EXIT_OK


@_user_errors
def run_deploy(args: argparse.Namespace) -> int:
    lab = _lab(args)
    if lab.state() is None:
        raise UserError(f"no lab is up in {lab.state_dir}: run `{invocation()} lab up --peers 3` first")
    peers = [name.strip() for name in args.peers.split(",") if name.strip()] if args.peers else None
    return _deploy(lab, peers, destroy=args.destroy)


def _deploy(lab, peers: list[str] | None, *, destroy: bool) -> int:  # lab: wgmesh.lab.Lab
    from wgmesh.lab.deploy import LabStack
    from wgmesh.lab.engine import EngineMissing

    try:
        stack = LabStack(lab)
    except EngineMissing as exc:
        raise UserError(str(exc)) from None
    print(f"pulumi {'destroy' if destroy else 'up'} --stack lab: {stack.engine}")
    try:
        result = stack.destroy() if destroy else stack.up(stack.config(peers))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(result.summary or result.stdout[-4000:])
    if not result.ok:
        for name, message in sorted(result.failures.items()):
            print(f"FAILED {name}: {message.strip().splitlines()[-1] if message.strip() else 'failed'}")
        return EXIT_INVALID
    for name, check in sorted(result.verification.items()):
        verdict = "ok" if isinstance(check, dict) and check.get("ok") else "FAILED"
        print(f"  verify {name}: {verdict}" + (f" in {check.get('seconds', 0):g}s" if isinstance(check, dict) else ""))
    return EXIT_OK if all(isinstance(check, dict) and check.get("ok") for check in result.verification.values()) else EXIT_INVALID


@_user_errors
def run_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.monotonic()
    removed = lab.down()
    if not removed:
        print(f"lab down: no lab state in {lab.state_dir}, nothing to remove")
    else:
        summary = ", ".join(f"{count} {kind}" for kind, count in removed.items())
        print(f"lab down: removed {summary} in {time.monotonic() - started:.1f}s")
        if lab.state_dir.exists():
            left = ", ".join(sorted(path.name for path in lab.state_dir.iterdir())) or "empty"
            print(f"kept {lab.state_dir}: it was there before `lab up` ({left})")
        else:
            print(f"removed {lab.state_dir}")
    return EXIT_OK


@_user_errors
def run_status(args: argparse.Namespace) -> int:
    lab = _lab(args)
    statuses = lab.status()
    rows = [["host", "ssh", "sshd", "endpoint", "LAN", "wireguard"]]
    for status in statuses:
        rows.append(
            [
                status.name,
                f"{status.ssh_host}:22 " + ("ok" if status.ssh_ok else "DOWN"),
                str(status.sshd_pid) if status.sshd_pid else "not running",
                status.endpoint or "none (NAT)",
                status.lan_subnet,
                ", ".join(status.wg_interfaces) or "-",
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    print(f"lab in {lab.state_dir}: {len(statuses)} hosts")
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK if all(status.healthy for status in statuses) else EXIT_INVALID


@_user_errors
def run_exec(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return _lab(args).exec(args.target, argv)


@_user_errors
def run_reboot(args: argparse.Namespace) -> int:
    started = time.monotonic()
    result = _lab(args).reboot(args.host, handshake_timeout=args.handshake_timeout)
    wg = ", ".join(result["wg_up"]) or "no WireGuard config installed"
    handshakes = result["handshakes"]
    booted = time.monotonic() - started - (handshakes["seconds"] if handshakes else 0)
    print(f"lab reboot {result['host']}: killed {result['killed']} processes, booted in {booted:.1f}s ({wg})")
    if not result["wg_up"]:
        pass
    elif handshakes is None:
        print("not waiting for handshakes: traffic through its tunnels fails until each peer has one (about 10 s)")
    else:
        if handshakes["missing"]:
            print(f"no handshake after {handshakes['seconds']:g}s with {', '.join(handshakes['missing'])}: traffic with them fails")
        else:
            print(f"handshake with every peer it can reach {handshakes['seconds']:g}s after boot: its tunnels carry traffic again")
        if handshakes["no_endpoint"]:
            print(
                f"{', '.join(handshakes['no_endpoint'])}: no endpoint (behind NAT), so {result['host']} cannot start a handshake, "
                "and keepalives start none: traffic with it fails until it next sends some (WireGuard retries ~15 s later)"
            )
    return EXIT_OK
