"""A picture of the mesh, like Kilo's ``kgctl graph``: peers grouped by cloud and region, with their endpoints,
tunnel addresses and routed subnets, and one edge per pair of peers (it is a full mesh).

The model (:func:`topology`) and the text emitters (:func:`to_dot`, :func:`to_mermaid`) are pure and
deterministic: the same mesh always gives the same bytes, so the pictures can be committed and diffed, and a test
can tell when a README's picture is stale. SVG needs Graphviz's ``dot`` (:func:`to_svg`), which is the one thing
here that runs a program; a missing ``dot`` is a :class:`GraphvizError` with the fix, never a traceback.

Edges say how a pair talks. Where both peers have an endpoint (or an AWS peer's Elastic IP that exists once it is
deployed), either side may start the handshake: a solid, two-headed edge. Where one side is behind NAT, only that
side can start it and must keep its NAT mapping open: a dashed edge from the NAT side, labelled with the
keepalive it sends. Where both are behind NAT, the pair talks through a relay (:mod:`wgmesh.mesh.relays`): a dotted,
orange edge labelled with the relay, which decrypts what it forwards and so sees that pair's traffic in the clear.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from wgmesh.mesh.model import Mesh, Peer

SVG_TIMEOUT_SECONDS = 60
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLOUD_NAMES = {"aws": "AWS", "external": "external hosts"}


@dataclass(frozen=True)
class Place:
    """Where a peer runs, as a stack config says (``kind: aws|external`` and ``region``); a bare mesh file has none."""

    kind: str | None = None
    region: str | None = None
    vpc_cidr: str | None = None

    @property
    def label(self) -> str | None:
        """``AWS cn-northwest-1``, ``external hosts``, or ``None`` when nothing is known."""
        cloud = CLOUD_NAMES.get(self.kind or "", self.kind)
        parts = [part for part in (cloud, self.region) if part]
        return " ".join(parts) if parts else None


@dataclass(frozen=True)
class Node:
    """One peer as drawn. Its place is the group (cluster) it is drawn in, so its own label does not repeat it."""

    name: str
    place: str | None
    endpoint: str
    addresses: tuple[str, ...]
    subnets: tuple[str, ...]
    vpc_cidr: str | None = None

    @property
    def lines(self) -> tuple[str, ...]:
        """The label's lines below the bold name, in the order both emitters print them."""
        lines = [f"endpoint {self.endpoint}"]
        lines += [f"tunnel {address}" for address in self.addresses]
        lines += [f"{'vpc' if subnet == self.vpc_cidr else 'routes'} {subnet}" for subnet in self.subnets]
        return tuple(lines)


@dataclass(frozen=True)
class Edge:
    """A pair of peers. ``source`` starts the handshake when only it can (``keepalive`` set), else either may;
    ``relay`` names the peer a pair behind NAT on both sides talks through (and that sees its traffic)."""

    source: str
    target: str
    keepalive: int | None = None
    relay: str | None = None

    @property
    def one_way(self) -> bool:
        """Whether only ``source`` can reach the other side (it is behind NAT)."""
        return self.keepalive is not None


@dataclass(frozen=True)
class Topology:
    """What the picture shows: a title, nodes grouped by place (in first-seen order), and every pair's edge."""

    title: str
    groups: tuple[tuple[str | None, tuple[Node, ...]], ...]
    edges: tuple[Edge, ...]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(node for _, nodes in self.groups for node in nodes)


def _endpoint_text(peer: Peer) -> str:
    if peer.endpoint is not None:
        return str(peer.endpoint)
    if peer.endpoint_pending:
        return f"Elastic IP:{peer.listen_port} (at deploy)"
    return "none (behind NAT)"


def topology(mesh: Mesh, places: Mapping[str, Place] | None = None, *, title: str | None = None) -> Topology:
    """The drawable form of ``mesh``; ``places`` (from a stack config) groups peers by cloud and region."""
    places = places or {}
    groups: dict[str | None, list[Node]] = {}
    for peer in mesh.peers:
        where = places.get(peer.name, Place())
        place = where.label
        node = Node(
            name=peer.name,
            place=place,
            vpc_cidr=where.vpc_cidr,
            endpoint=_endpoint_text(peer),
            addresses=tuple(str(address) for address in peer.addresses),
            subnets=tuple(str(subnet) for subnet in peer.subnets),
        )
        groups.setdefault(place, []).append(node)
    edges: list[Edge] = []
    for index, first in enumerate(mesh.peers):
        for second in mesh.peers[index + 1 :]:
            relay = mesh.relay_between(first.name, second.name)
            if relay is not None:
                edges.append(Edge(first.name, second.name, relay=relay))
            elif first.reachable and second.reachable:
                edges.append(Edge(first.name, second.name))
            else:
                # A pair not relayed has at most one side behind NAT (validation): that side initiates.
                initiator, other = (second, first) if first.reachable else (first, second)
                edges.append(Edge(initiator.name, other.name, mesh.keepalive_between(initiator, other) or 0))
    networks = ", ".join(str(network) for network in mesh.networks)
    if title is None:
        title = f"wgmesh: {len(mesh.peers)} peers, full mesh on {mesh.interface}, tunnel network {networks}"
    return Topology(title=title, groups=tuple((place, tuple(nodes)) for place, nodes in groups.items()), edges=tuple(edges))


def _keepalive_label(edge: Edge) -> str:
    return f"keepalive {edge.keepalive}s" if edge.keepalive else "initiates (no keepalive)"


RELAY_COLOR = "#c05a00"


def _relay_label(edge: Edge) -> str:
    return f"relayed by {edge.relay} (sees it in clear)"


# --- Graphviz DOT -----------------------------------------------------------------------------------------------


def _dot_id(name: str) -> str:
    return f'"{name}"'


def _dot_label(node: Node) -> str:
    rows = [f"<TR><TD><B>{html.escape(node.name)}</B></TD></TR>"]
    rows += [f'<TR><TD ALIGN="LEFT">{html.escape(line)}</TD></TR>' for line in node.lines]
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">' + "".join(rows) + "</TABLE>>"


def to_dot(graph: Topology) -> str:
    """Graphviz DOT text: one cluster per cloud/region, a box per peer, one edge per pair."""
    lines = [
        "graph wgmesh {",
        f'  label="{_dot_escape(graph.title)}";',
        '  labelloc="t";',
        '  fontname="Helvetica";',
        "  rankdir=LR;",
        "  nodesep=0.6;",
        "  ranksep=1.2;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef4fb", color="#3b6ea5", fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555", fontname="Helvetica", fontsize=10];',
    ]
    for index, (place, nodes) in enumerate(graph.groups):
        indent = "  "
        if place is not None:
            lines.append(f"  subgraph cluster_{index} {{")
            lines.append(f'    label="{_dot_escape(place)}";')
            lines.append('    style="rounded,dashed";')
            lines.append('    color="#999999";')
            indent = "    "
        lines += [f"{indent}{_dot_id(node.name)} [label={_dot_label(node)}];" for node in nodes]
        if place is not None:
            lines.append("  }")
    for edge in graph.edges:
        if edge.relay is not None:
            attributes = (
                f'dir=both, style=dotted, penwidth=2, color="{RELAY_COLOR}", fontcolor="{RELAY_COLOR}", label="{_relay_label(edge)}"'
            )
        elif edge.one_way:
            attributes = f'dir=forward, style=dashed, label="{_keepalive_label(edge)}"'
        else:
            attributes = "dir=both"
        lines.append(f"  {_dot_id(edge.source)} -- {_dot_id(edge.target)} [{attributes}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# --- Mermaid ----------------------------------------------------------------------------------------------------


def _mermaid_id(name: str) -> str:
    # Peer names are [a-z0-9-]; a prefix keeps ids clear of Mermaid keywords (end, graph) and '-' of arrow syntax.
    return "p_" + name.replace("-", "_")


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: entity codes for the characters that would end or break it."""
    return html.escape(text, quote=True).replace("&quot;", "#quot;").replace("&#x27;", "#39;")


def to_mermaid(graph: Topology) -> str:
    """Mermaid ``flowchart`` text (renders in GitHub READMEs): a subgraph per cloud/region, an edge per pair."""
    lines = ["---", f"title: {json.dumps(graph.title)}", "---", "flowchart LR"]
    for index, (place, nodes) in enumerate(graph.groups):
        indent = "  "
        if place is not None:
            lines.append(f'  subgraph g{index}["{_mermaid_text(place)}"]')
            indent = "    "
        for node in nodes:
            label = "<br/>".join([f"<b>{_mermaid_text(node.name)}</b>", *(_mermaid_text(line) for line in node.lines)])
            lines.append(f'{indent}{_mermaid_id(node.name)}["{label}"]')
        if place is not None:
            lines.append("  end")
    relayed: list[int] = []
    for index, edge in enumerate(graph.edges):
        if edge.relay is not None:
            relayed.append(index)
            lines.append(f"  {_mermaid_id(edge.source)} -.-|{_mermaid_text(_relay_label(edge))}| {_mermaid_id(edge.target)}")
        elif edge.one_way:
            lines.append(f"  {_mermaid_id(edge.source)} -.->|{_keepalive_label(edge)}| {_mermaid_id(edge.target)}")
        else:
            lines.append(f"  {_mermaid_id(edge.source)} <--> {_mermaid_id(edge.target)}")
    if relayed:
        lines.append(f"  linkStyle {','.join(map(str, relayed))} stroke:{RELAY_COLOR},stroke-width:2px,stroke-dasharray:2 4")
    return "\n".join(lines) + "\n"


# --- SVG through Graphviz ---------------------------------------------------------------------------------------


class GraphvizError(RuntimeError):
    """Graphviz is missing or failed; the message says what to install or what went wrong."""


def to_svg(dot_text: str, *, dot: str = "dot", timeout: float = SVG_TIMEOUT_SECONDS) -> str:
    """Render DOT text to SVG with Graphviz's ``dot`` (Debian: ``apt-get install graphviz``)."""
    svg = graphviz(dot_text, "svg", dot=dot, timeout=timeout).decode("utf-8")
    if "<svg" not in svg:
        raise GraphvizError(f"{dot} drew no SVG")
    return svg


def to_png(dot_text: str, *, dot: str = "dot", timeout: float = SVG_TIMEOUT_SECONDS) -> bytes:
    """Render DOT text to a PNG image with Graphviz's ``dot`` (a real image, not DOT text in a ``.png`` file)."""
    png = graphviz(dot_text, "png", dot=dot, timeout=timeout)
    if not png.startswith(PNG_SIGNATURE):
        raise GraphvizError(f"{dot} drew no PNG")
    return png


def graphviz(dot_text: str, fmt: str, *, dot: str = "dot", timeout: float = SVG_TIMEOUT_SECONDS) -> bytes:
    """``dot -T<fmt>`` of ``dot_text``; a missing or failing Graphviz is a :class:`GraphvizError` saying what to do."""
    binary = shutil.which(dot)
    if binary is None:
        raise GraphvizError(
            f"Graphviz's {dot!r} program is not installed, so no {fmt.upper()} can be drawn: install it (Debian/Ubuntu: "
            "apt-get install graphviz), or write DOT or Mermaid text instead (--format dot / --format mermaid)"
        )
    try:
        result = subprocess.run([binary, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"{binary} took more than {timeout:g} s to draw the mesh; try --format dot") from None
    except OSError as exc:
        raise GraphvizError(f"cannot run {binary}: {exc.strerror}") from None
    if result.returncode != 0 or not result.stdout:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GraphvizError(f"{binary} failed (exit {result.returncode}): {detail[-1] if detail else 'no message'}")
    return result.stdout
