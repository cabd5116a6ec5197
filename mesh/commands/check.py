"""``python -m wgmesh.mesh check FILE``: validate a mesh description and print every problem, or a summary of the mesh.

Read-only: it never creates or changes the key file; it reads it (if there is one) only to show the tunnel
addresses a previous ``render`` pinned, so that ``check`` shows exactly the addresses ``render`` would use.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wgmesh.mesh.cli import EXIT_OK
from wgmesh.mesh.describe import Description, build_mesh, load_description
from wgmesh.mesh.keys import public_key
from wgmesh.mesh.model import Mesh
from wgmesh.mesh.relays import CLEARTEXT_NOTE, relayed_pairs
from wgmesh.mesh.statefile import KeyFile, default_keyfile_path, read_keyfile

EPILOG = "Exit codes: 0 the mesh is valid, 1 it is not (every problem is printed, with file:line), 2 bad command line."


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate a mesh description and print every problem",
        description="Validate a mesh description (YAML) and print every problem at once, each with its line, field path "
        "and fix; print a summary of the mesh when it is valid. Never writes anything.",
        epilog=EPILOG,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="the mesh description, e.g. examples/mesh.yaml")
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="PATH",
        help="the key file holding generated keys and pinned addresses (default: FILE's stem + .keys.yaml beside it)",
    )
    parser.add_argument("--public-keys", action="store_true", help="also list each peer's public key (needs its key in the key file)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when the mesh is valid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    description = load_description(args.file)
    keys_path: Path = args.keys or default_keyfile_path(args.file)
    keyfile = read_keyfile(keys_path)
    mesh = build_mesh(description, pinned_addresses=keyfile.addresses)
    if not args.quiet:
        print(summary(description, mesh, keyfile, keys_path, show_public_keys=args.public_keys))
    return EXIT_OK


def _given_addresses(raw: Any) -> set[str]:
    peers = raw.get("peers") if isinstance(raw, dict) else None
    return {peer.get("name") for peer in peers or () if isinstance(peer, dict) and peer.get("address") is not None}


def summary(description: Description, mesh: Mesh, keyfile: KeyFile, keys_path: Path, *, show_public_keys: bool = False) -> str:
    """A table of the validated mesh: what each peer gets, and where each allocated address came from."""
    given = _given_addresses(description.raw)
    networks = ", ".join(str(network) for network in mesh.networks)
    lines = [f"{description.path}: valid mesh of {len(mesh.peers)} peers, tunnel network {networks}, interface {mesh.interface}"]
    header = ["peer", "address", "endpoint", "port", "keepalive", "subnets"]
    if show_public_keys:
        header.append("public key")
    rows = [header]
    unpinned = False
    for peer in mesh.peers:
        addresses = ", ".join(str(address) for address in peer.addresses)
        if peer.name not in given:
            pinned = keyfile.addresses.get(peer.name) == tuple(str(address) for address in peer.addresses)
            addresses += " (pinned)" if pinned else " (allocated*)"
            unpinned |= not pinned
        endpoint = str(peer.endpoint) if peer.endpoint is not None else "none (behind NAT)"
        keepalives = sorted({mesh.keepalive_between(peer, other) or 0 for other in mesh.others(peer.name)})
        keepalive = "off" if keepalives == [0] else "/".join(str(value) if value else "off" for value in keepalives)
        row = [peer.name, addresses, endpoint, str(peer.listen_port), keepalive, ", ".join(str(subnet) for subnet in peer.subnets) or "-"]
        if show_public_keys:
            private = peer.private_key or keyfile.private_keys.get(peer.name)
            row.append(peer.public_key or (public_key(private) if private else "(not generated yet: run render)"))
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if unpinned:
        lines.append(f"* allocated now; `python -m wgmesh.mesh render` pins it in {keys_path} so that it never moves")
    lines += relay_lines(mesh)
    return "\n".join(lines)


def relay_lines(mesh: Mesh) -> list[str]:
    """The relayed pairs (both behind NAT), each with its relay and whether it was pinned, and the cleartext caveat."""
    pairs = relayed_pairs(mesh)
    if not pairs:
        return []
    lines = [f"relayed pairs (both behind NAT): {CLEARTEXT_NOTE}"]
    width = max(len(f"{pair.first} <-> {pair.second}") for pair in pairs)
    for pair in pairs:
        how = (
            f"pinned: {pair.pinned_by} says relay: {pair.relay}"
            if pair.pinned_by
            else f"chosen; may move when peers with endpoints change, pin with `relay: {pair.relay}`"
        )
        lines.append(f"  {f'{pair.first} <-> {pair.second}'.ljust(width)}  via {pair.relay} ({how})")
    forbidden = [peer.name for peer in mesh.peers if peer.reachable and not peer.relay_allowed]
    if forbidden:
        lines.append(f"  never relaying (relay_allowed: false): {', '.join(forbidden)}")
    return lines
