"""``python -m wgmesh.mesh graph FILE``: draw the mesh like ``kgctl graph``, as Graphviz DOT, SVG or Mermaid text.

FILE is a mesh description (``examples/mesh.yaml``) or a Pulumi stack config (``Pulumi.<stack>.yaml``, whose
``wgmesh:mesh`` key is read with the program's own parser, :func:`wgmesh.mesh.stackconfig.load_stack`); ``--stack NAME``
is short for ``Pulumi.NAME.yaml``. A stack config also says where each peer runs, so its picture groups the peers
by cloud and region. Read-only, like ``check``: the key file is only read, for the addresses ``render`` pinned.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wgmesh.mesh.cli import EXIT_OK, UserError
from wgmesh.mesh.describe import Description, build_mesh, load_description
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.graph import GraphvizError, Place, Topology, to_dot, to_mermaid, to_png, to_svg, topology
from wgmesh.mesh.statefile import default_keyfile_path, read_keyfile

FORMATS = ("dot", "svg", "png", "mermaid")
SUFFIXES = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png", ".mmd": "mermaid", ".mermaid": "mermaid"}
STACK_ROOT = "config.wgmesh:mesh"
EPILOG = (
    "Exit codes: 0 picture written, 1 the description is invalid, a file cannot be read or written, or Graphviz's "
    "`dot` (needed for SVG and PNG only) is missing, 2 bad command line.\n\n"
    "Examples:\n"
    "  python -m wgmesh.mesh graph examples/mesh.yaml -o docs/topology.svg\n"
    "  python -m wgmesh.mesh graph examples/mesh.yaml --format mermaid     # paste into a README\n"
    "  python -m wgmesh.mesh graph --stack zhy -o mesh.png                   # Pulumi.zhy.yaml, drawn by Graphviz"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="draw the mesh (peers, clouds/regions, endpoints, tunnel addresses, routed subnets) as DOT, SVG or Mermaid",
        description="Draw the mesh like `kgctl graph`: one box per peer (cloud and region when FILE is a stack config, "
        "endpoint, tunnel address, routed subnets), grouped by cloud and region, with one edge per pair of peers. "
        "Solid two-headed edges join peers that can both be reached; a dashed edge leaves a peer behind NAT, which "
        "starts the handshake and sends keepalives; a dotted orange edge joins two peers behind NAT, labelled with "
        "the relay they talk through (which sees their traffic in the clear).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "file", type=Path, nargs="?", metavar="FILE", help="a mesh description (examples/mesh.yaml) or a stack config (Pulumi.<stack>.yaml)"
    )
    source.add_argument("--stack", metavar="NAME", help="read the stack config Pulumi.NAME.yaml in the current directory")
    parser.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="output format (default: from the --out suffix: .dot/.gv, .svg, .png, .mmd; else dot); svg and png need Graphviz's `dot`",
    )
    parser.add_argument("-o", "--out", type=Path, metavar="PATH", help="write the picture here (default: standard output)")
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="PATH",
        help="key file with pinned addresses (mesh descriptions only; default: FILE's stem + .keys.yaml)",
    )
    parser.add_argument("--title", help="the picture's title (default: peer count, interface and tunnel network)")
    parser.set_defaults(func=run)


def output_format(requested: str | None, out: Path | None) -> str:
    """The format asked for, else the one the output's suffix names, else DOT on standard output.

    Refuses a suffix that contradicts ``--format``, and an output whose suffix names no format we write (``x.jpg``):
    a file must hold what its name says.
    """
    implied = SUFFIXES.get(out.suffix.lower()) if out is not None else None
    if requested is not None:
        if implied is not None and implied != requested:
            raise UserError(f"--format {requested} but {out} is named like a {implied} file: drop --format or rename the output")
        return requested
    if out is not None and implied is None:
        known = ", ".join(sorted(SUFFIXES))
        raise UserError(f"{out}: cannot tell the format from its name: use one of {known}, or give --format")
    return implied or "dot"


def run(args: argparse.Namespace) -> int:
    path: Path = args.file if args.file is not None else Path(f"Pulumi.{args.stack}.yaml")
    fmt = output_format(args.format, args.out)
    description = load_description(path)
    if is_stack_config(description.raw):
        if args.keys is not None:
            raise UserError("--keys applies to mesh descriptions; a stack keeps its keys and addresses in its Pulumi state")
        graph = stack_topology(description, title=args.title)
    elif args.stack is not None:
        raise UserError(f"{path}: not a Pulumi stack config with a 'wgmesh:mesh' key under 'config:'")
    else:
        keyfile = read_keyfile(args.keys or default_keyfile_path(path))
        graph = topology(build_mesh(description, pinned_addresses=keyfile.addresses), title=args.title)
    picture = render(graph, fmt)
    if args.out is None:
        if isinstance(picture, bytes):
            if sys.stdout.isatty():
                raise UserError("a PNG is an image, not text for a terminal: write it to a file (-o mesh.png) or pipe it")
            sys.stdout.flush()
            sys.stdout.buffer.write(picture)
        else:
            sys.stdout.write(picture)
        return EXIT_OK
    try:
        if isinstance(picture, bytes):
            args.out.write_bytes(picture)
        else:
            args.out.write_text(picture, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write the picture ({exc.strerror})") from None
    print(f"wrote {args.out} ({fmt}, {len(graph.nodes)} peers, {len(graph.edges)} links)", file=sys.stderr)
    return EXIT_OK


def render(graph: Topology, fmt: str) -> str | bytes:
    """The picture in ``fmt`` (text, or bytes for PNG); a missing or failing Graphviz is a :class:`UserError`."""
    if fmt == "mermaid":
        return to_mermaid(graph)
    dot = to_dot(graph)
    if fmt == "dot":
        return dot
    try:
        return to_png(dot) if fmt == "png" else to_svg(dot)
    except GraphvizError as exc:
        raise UserError(str(exc)) from None


def is_stack_config(raw: Any) -> bool:
    """A Pulumi stack config: a top-level ``config:`` mapping (the mesh, if any, is under its ``wgmesh:mesh`` key)."""
    return isinstance(raw, Mapping) and isinstance(raw.get("config"), Mapping)


def stack_topology(description: Description, *, title: str | None = None) -> Topology:
    """The picture of a stack config's mesh, grouped by cloud and region; problems listed with their lines."""
    from wgmesh.mesh.stackconfig import CONFIG_KEY, load_stack

    config = description.raw["config"]
    if CONFIG_KEY not in config:
        keys = ", ".join(sorted(str(key) for key in config)) or "none"
        raise UserError(f"{description.path}: this stack config has no '{CONFIG_KEY}' key (keys: {keys}); see Pulumi.zhy.yaml")
    prefix = f"mesh.{STACK_ROOT}"
    # describe.load_description keyed every line by a path from its root; re-key them from the stack's mesh key so
    # that issues (``wgmesh:mesh.peers[1].vpc_cidr``) find their lines.
    lines = {CONFIG_KEY + key[len(prefix) :]: line for key, line in description.lines.items() if key.startswith(prefix)}
    located = Description(path=description.path, raw=config[CONFIG_KEY], lines={**description.lines, **lines}, issues=())
    duplicates = [
        ConfigIssue(CONFIG_KEY + issue.path[len(prefix) :], issue.problem, issue.fix) if issue.path.startswith(prefix) else issue
        for issue in description.issues
    ]
    try:
        spec = load_stack(config[CONFIG_KEY], path=CONFIG_KEY)
    except MeshConfigError as exc:
        raise UserError(located.report([*duplicates, *exc.issues])) from None
    if duplicates:
        raise UserError(located.report(duplicates))
    places = {
        peer.name: Place(peer.kind, peer.aws.region, str(peer.aws.vpc_cidr)) if peer.aws is not None else Place(peer.kind)
        for peer in spec.peers
    }
    return topology(spec.mesh, places, title=title)
