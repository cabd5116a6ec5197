"""``wgmesh demo``: the README's Quickstart, end to end, on one machine.

1. Validate and render the example mesh (``examples/mesh.yaml``) into a fresh directory, removed at the end
   whatever happens (it holds private keys; ``--out DIR`` keeps the files): works anywhere, no root.
2. As root with the lab's tools: build a three-host network-namespace lab (the last host behind NAT, with no
   public endpoint), deploy the Pulumi program onto it with the real Pulumi engine (``pulumi up --stack lab``
   through the Automation API, :mod:`wgmesh.lab.engine`): the program's own ``remote.Command`` installs and
   verifications run over SSH; print Pulumi's summary, every peer's verification and a LAN-to-LAN ping across
   the mesh; take the lab down again (``--keep`` leaves it up for ``wgmesh lab exec``).

Without root (or a tool), step 2 is skipped with the reason and the command still succeeds: the demo shows what
can be shown. Exit 1 only when something that ran failed (an invalid example, a failed install or check).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from wgmesh.cli.main import invocation
from wgmesh.mesh.cli import EXIT_INVALID, EXIT_OK, UserError
from wgmesh.mesh.commands import check, render

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = Path("examples") / "mesh.yaml"
LAB_PEERS = 3
EPILOG = (
    "The lab part needs root on Linux and: iproute2, util-linux, openssh-server, openssh-client, iptables, wireguard-tools, "
    "wireguard-go, iputils-ping (./dev demo installs them). Exit codes: 0 done (the lab part may have been skipped, "
    "with the reason printed), 1 something failed, 2 bad command line."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="validate and render the example mesh, then build it for real on a local lab (root)",
        description="The Quickstart end to end: validate and render the example mesh into a directory, then (as root) "
        "build a 3-host network-namespace lab, one host behind NAT, run the real Pulumi program against it (its "
        "install and verify commands really run over SSH), show each peer's verification and a LAN-to-LAN ping "
        "through the mesh, and take the lab down.",
        epilog=EPILOG,
    )
    parser.add_argument("file", type=Path, nargs="?", metavar="FILE", help="the mesh description to render (default: examples/mesh.yaml)")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="DIR",
        help="where to render the configs, kept (default: a temporary directory, removed at the end)",
    )
    parser.add_argument(
        "--state", type=Path, default=Path("lab-state"), metavar="DIR", help="the lab's state directory (default: ./lab-state)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards (explore: wgmesh lab exec h1 -- wg show)")
    parser.add_argument("--no-nat", action="store_true", help="give every lab host a public endpoint (no host behind NAT)")
    parser.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="when another lab holds this machine, wait this long for it (default: 0)"
    )
    parser.add_argument("--skip-lab", action="store_true", help="only validate and render")
    parser.set_defaults(func=run)


def _example(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return args.file
    for candidate in (EXAMPLE, REPO / EXAMPLE):
        if candidate.is_file():
            return candidate
    raise UserError(f"{EXAMPLE} not found here or in {REPO}: give the mesh description as FILE")


def run(args: argparse.Namespace) -> int:
    example = _example(args)
    if args.out is not None:
        return _demo(args, example, args.out)
    # The rendered configs and the key file hold private keys and the mesh secret: a directory made here is
    # removed however the run ends (failed, interrupted or fine); --out DIR keeps the files.
    out = Path(tempfile.mkdtemp(prefix="wgmesh-demo-"))
    try:
        return _demo(args, example, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        print(f"\nremoved {out} (private keys and the mesh secret); --out DIR keeps the rendered files")


def _demo(args: argparse.Namespace, example: Path, out: Path) -> int:
    print(f"== 1/2 validate and render {example} into {out}")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)  # the key file goes there too, never beside the example
    except OSError as exc:
        raise UserError(f"{out}: cannot create the output directory ({exc.strerror})") from None
    check.run(argparse.Namespace(file=example, keys=out / "mesh.keys.yaml", public_keys=False, quiet=False))
    render.run(argparse.Namespace(file=example, out=out, keys=out / "mesh.keys.yaml", peer=None))
    print()
    if args.skip_lab:
        print("== 2/2 local lab: skipped (--skip-lab)")
        return EXIT_OK
    reason = _lab_unavailable()
    if reason:
        print(f"== 2/2 local lab: skipped: {reason}")
        print("   (the rendered configs above are all this machine can show; run `sudo ./dev demo` to build the mesh for real)")
        return EXIT_OK
    return _lab_demo(args)


def _lab_unavailable() -> str | None:
    """Why the lab part cannot run here (not root, not Linux, a tool missing), or None."""
    from wgmesh.lab import LabError, check_prerequisites
    from wgmesh.lab.core import which

    try:
        check_prerequisites()
    except LabError as exc:
        return str(exc)
    missing = [tool for tool in ("ssh", "ping") if which(tool) is None]
    if missing:
        return f"the lab demo needs {', '.join(missing)}: apt-get install openssh-client iputils-ping"
    from wgmesh.lab.engine import EngineMissing, find_cli

    try:
        find_cli()
    except EngineMissing as exc:
        return str(exc)
    return None


def _lab_demo(args: argparse.Namespace) -> int:
    # Imported here: the lab and the program harness load pulumi, which the rest of the CLI never needs.
    from wgmesh.lab import Lab, LabError
    from wgmesh.lab.deploy import LabStack, in_lab

    lab = Lab(args.state)
    nat = not args.no_nat
    print(f"== 2/2 local lab: {LAB_PEERS} hosts" + (f", h{LAB_PEERS} behind NAT" if nat else "") + f" (state {lab.state_dir})")
    started = time.monotonic()
    try:
        hosts = lab.up(LAB_PEERS, nat_peer=nat, wait=args.wait)
    except LabError as exc:
        raise UserError(str(exc)) from None
    code = EXIT_INVALID
    try:
        print(f"lab up in {time.monotonic() - started:.1f}s:")
        for host in hosts:
            where = f"endpoint {host.endpoint}" if host.endpoint else f"behind NAT (own address {host.address}, no endpoint)"
            print(f"  {host.name}  ssh root@{host.ssh_host:<14} {where:<48} LAN {host.lan_subnet}")
        stack = LabStack(lab)
        print(f"\npulumi up --stack lab ({lab.stack_path.name}): {stack.engine}")
        result = stack.up(stack.config())
        print("\n".join(f"  {line}" for line in result.summary.splitlines()))
        if not result.ok:
            print(f"  FAILED: {result.error}")
            return EXIT_INVALID
        print("\nverification (each peer's verify command: handshake and ping to every other peer through the tunnel):")
        verified = True
        for name, check_result in sorted(result.verification.items()):
            verified &= bool(isinstance(check_result, dict) and check_result.get("ok"))
            print(f"  {name}: {_verification(check_result)}")
        source, target = hosts[0], hosts[-1]
        print(
            f"\nLAN to LAN across the mesh: {source.name}'s LAN client {source.lan_client}"
            f" -> {target.name}'s LAN client {target.lan_client}"
        )
        pinged = in_lab(lab, f"{source.name}-lan", ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", target.lan_client], timeout=20)
        for line in pinged.stdout.strip().splitlines()[-2:]:
            print(f"  {line}")
        code = EXIT_OK if verified and pinged.returncode == 0 else EXIT_INVALID
        if code != EXIT_OK:
            print("FAILED: " + ("a verification failed" if not verified else "the LAN-to-LAN ping got no answer"))
    finally:
        if args.keep:
            wgmesh = invocation()
            print(f"\nthe lab stays up: {wgmesh} lab exec h1 -- wg show   |   {wgmesh} lab exec h1-lan -- ping {hosts[-1].lan_client}")
            print(f"stack file {lab.stack_path}; take it down with: {wgmesh} lab down --state {args.state}")
        else:
            removed = lab.down()  # the deploy's state and the stack file go with the hosts
            print(f"\nlab down: removed {', '.join(f'{count} {kind}' for kind, count in removed.items())}")
    return code


def _verification(result: Any) -> str:
    if not isinstance(result, dict) or "peers" not in result:
        return f"no result ({result!r})"
    parts = []
    for peer, state in sorted(result["peers"].items()):
        rtt = state.get("rtt_ms")
        mark = "ok" if state.get("handshake") and state.get("ping") else "FAILED"
        parts.append(f"{peer} {mark}" + (f" ({rtt:g} ms)" if isinstance(rtt, int | float) else ""))
    verdict = "ok" if result.get("ok") else "FAILED"
    return f"{verdict} in {result.get('seconds', 0):g}s: " + ", ".join(parts)
