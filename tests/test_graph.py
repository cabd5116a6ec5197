"""``python -m wgmesh.mesh graph``: the topology model, DOT and Mermaid text (content, escaping, determinism), SVG through
Graphviz (well-formed XML), stack configs grouped by cloud and region, and the committed pictures being current."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE, REPO, THREE_PEERS
from wgmesh.mesh import graph as graph_module
from wgmesh.mesh.cli import main
from wgmesh.mesh.graph import Place, to_dot, to_mermaid, to_svg, topology
from wgmesh.mesh.validation import load_mesh

SVG_NS = "{http://www.w3.org/2000/svg}"

STACK: dict[str, Any] = {
    "config": {
        "aws:region": "cn-northwest-1",
        "wgmesh:sshPrivateKeyPath": "lab-state/id_ed25519",
        "wgmesh:mesh": {
            "network": "10.255.0.0/24",
            "admin_cidrs": ["203.0.113.0/24"],
            "peers": [
                {"name": "zhy", "kind": "aws", "region": "cn-northwest-1", "vpc_cidr": "192.168.10.0/24", "key_name": "ops"},
                {
                    "name": "bjs",
                    "kind": "aws",
                    "region": "cn-north-1",
                    "vpc_cidr": "192.168.20.0/24",
                    "subnets": ["10.42.0.0/24"],
                    "key_name": "ops",
                },
                {
                    "name": "pub",
                    "kind": "external",
                    "ssh_host": "198.51.100.30",
                    "endpoint": "198.51.100.30:51820",
                    "subnets": ["192.168.30.0/24", "10.7.1.0/24"],
                },
                {"name": "home", "kind": "external", "ssh_host": "198.51.100.77", "source_cidrs": ["198.51.100.77/32"]},
            ],
        },
    }
}


def nat_mesh() -> Any:
    """The example plus a fourth peer behind NAT, so that both kinds of edge appear."""
    raw = copy.deepcopy(THREE_PEERS)
    raw["peers"].append({"name": "home-lab", "address": "10.255.0.4", "subnets": ["10.8.0.0/24"]})
    return load_mesh(raw)


def write_stack(directory: Path, data: Any = None, name: str = "Pulumi.zhy.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(STACK if data is None else data, sort_keys=False))
    return path


def test_topology_has_every_peer_and_one_edge_per_pair() -> None:
    graph = topology(nat_mesh())
    assert [node.name for node in graph.nodes] == ["zhy", "bjs", "pub", "home-lab"]
    pairs = [frozenset((edge.source, edge.target)) for edge in graph.edges]
    assert len(pairs) == len(set(pairs)) == 6
    nat_edges = [edge for edge in graph.edges if edge.one_way]
    assert {edge.source for edge in nat_edges} == {"home-lab"}, "the peer behind NAT starts every handshake"
    assert {edge.keepalive for edge in nat_edges} == {25}
    home = graph.nodes[3]
    assert home.endpoint == "none (behind NAT)" and home.addresses == ("10.255.0.4/24",) and home.subnets == ("10.8.0.0/24",)


@pytest.mark.parametrize("size", [2, 7, 30])
def test_full_mesh_edges_for_any_size(size: int) -> None:
    raw = {
        "network": "10.9.0.0/24",
        "peers": [{"name": f"p{index}", "endpoint": f"198.51.100.{index + 1}:51820"} for index in range(size)],
    }
    graph = topology(load_mesh(raw))
    assert len(graph.edges) == size * (size - 1) // 2
    dot = to_dot(graph)
    assert dot.count(" -- ") == len(graph.edges)
    assert to_mermaid(graph).count(" <--> ") == len(graph.edges)


def test_dot_content() -> None:
    dot = to_dot(topology(nat_mesh()))
    assert dot.startswith("graph wgmesh {\n") and dot.endswith("}\n")
    assert 'label="wgmesh: 4 peers, full mesh on wg0, tunnel network 10.255.0.0/24";' in dot
    for text in ["<B>zhy</B>", "endpoint 203.0.113.10:51820", "tunnel 10.255.0.1/24", "routes 192.168.10.0/24", "routes 10.7.1.0/24"]:
        assert text in dot
    assert '"zhy" -- "bjs" [dir=both];' in dot
    assert '"home-lab" -- "zhy" [dir=forward, style=dashed, label="keepalive 25s"];' in dot
    assert "subgraph" not in dot, "a bare description says nothing about clouds"


def test_mermaid_content() -> None:
    text = to_mermaid(topology(nat_mesh()))
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "wgmesh: 4 peers, full mesh on wg0, tunnel network 10.255.0.0/24"', "---", "flowchart LR"]
    assert '  p_zhy["<b>zhy</b><br/>endpoint 203.0.113.10:51820<br/>tunnel 10.255.0.1/24<br/>routes 192.168.10.0/24"]' in lines
    assert "  p_zhy <--> p_bjs" in lines
    assert "  p_home_lab -.->|keepalive 25s| p_zhy" in lines, "ids never contain '-', which Mermaid reads as an arrow"
    assert yaml.safe_load(text.split("---")[1])["title"].startswith("wgmesh: 4 peers"), "front matter is valid YAML"


def test_labels_are_escaped() -> None:
    graph = topology(nat_mesh(), title='a "quoted" <title> & \\ more')
    dot = to_dot(graph)
    assert 'label="a \\"quoted\\" <title> & \\\\ more";' in dot
    assert 'title: "a \\"quoted\\" <title> & \\\\ more"' in to_mermaid(graph)
    places = {"zhy": Place("aws", 'r"<1>')}
    dot = to_dot(topology(nat_mesh(), places))
    assert 'label="AWS r\\"<1>";' in dot
    mermaid = to_mermaid(topology(nat_mesh(), places))
    assert 'subgraph g0["AWS r#quot;&lt;1&gt;"]' in mermaid


def test_output_is_deterministic_across_processes(tmp_path: Path) -> None:
    """Same input, same bytes, whatever the hash seed: the committed pictures only change when the mesh does."""
    outputs = []
    for seed in ("0", "12345"):
        for fmt in ("dot", "mermaid"):
            result = subprocess.run(
                [sys.executable, "-m", "wgmesh.mesh", "graph", str(EXAMPLE), "--format", fmt],
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONHASHSEED": seed},
                timeout=60,
                check=True,
            )
            outputs.append(result.stdout)
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    assert to_dot(topology(nat_mesh())) == to_dot(topology(nat_mesh()))


def test_svg_is_well_formed_xml(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz's dot (Debian: apt-get install graphviz)")
    out = tmp_path / "mesh.svg"
    assert main(["graph", str(EXAMPLE), "-o", str(out)]) == 0
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG_NS}svg"
    texts = " ".join(element.text or "" for element in root.iter(f"{SVG_NS}text"))
    for text in ["zhy", "bjs", "pub", "endpoint 203.0.113.10:51820", "tunnel 10.255.0.3/24", "routes 10.7.1.0/24"]:
        assert text in texts
    edges = [group for group in root.iter(f"{SVG_NS}g") if group.get("class") == "edge"]
    assert len(edges) == 3


def test_missing_graphviz_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(graph_module.shutil, "which", lambda _name: None)
    assert main(["graph", str(EXAMPLE), "-o", str(tmp_path / "mesh.svg")]) == 1
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and "--format dot" in err and "Traceback" not in err
    assert not (tmp_path / "mesh.svg").exists()
    assert main(["graph", str(EXAMPLE), "-o", str(tmp_path / "mesh.dot")]) == 0, "DOT and Mermaid need no Graphviz"


def test_graphviz_failure_is_reported() -> None:
    if shutil.which("dot") is None:
        pytest.skip("needs Graphviz's dot (Debian: apt-get install graphviz)")
    with pytest.raises(graph_module.GraphvizError, match="failed"):
        to_svg("graph { this is not dot")


def test_format_from_suffix_and_conflicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(EXAMPLE), "-o", str(tmp_path / "m.mmd")]) == 0
    assert (tmp_path / "m.mmd").read_text().startswith("---\ntitle:")
    assert main(["graph", str(EXAMPLE), "-o", str(tmp_path / "m.gv")]) == 0
    assert (tmp_path / "m.gv").read_text().startswith("graph wgmesh {")
    assert "wrote" in capsys.readouterr().err
    assert main(["graph", str(EXAMPLE), "-f", "svg", "-o", str(tmp_path / "m.dot")]) == 1
    assert "--format svg but" in capsys.readouterr().err
    assert main(["graph", str(EXAMPLE), "-o", str(tmp_path / "missing-dir" / "m.dot")]) == 1
    assert "cannot write the picture" in capsys.readouterr().err


def test_stack_config_groups_by_cloud_and_region(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wgmesh.mesh.stackconfig")
    stack = write_stack(tmp_path)
    assert main(["graph", str(stack), "-f", "mermaid"]) == 0
    text = capsys.readouterr().out
    assert re.search(r'subgraph g0\["AWS cn-northwest-1"\]\n    p_zhy\["<b>zhy</b><br/>endpoint Elastic IP:51820 \(at deploy\)', text)
    assert 'subgraph g1["AWS cn-north-1"]' in text and 'subgraph g2["external hosts"]' in text
    assert "vpc 192.168.20.0/24<br/>routes 10.42.0.0/24" in text, "an AWS peer's VPC is routed, and labelled as its VPC"
    assert "p_home -.->|keepalive 25s| p_zhy" in text
    assert main(["graph", str(stack)]) == 0
    dot = capsys.readouterr().out
    assert dot.count("subgraph cluster_") == 3


def test_stack_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wgmesh.mesh.stackconfig")
    write_stack(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "--stack", "zhy", "-f", "mermaid"]) == 0
    assert "AWS cn-north-1" in capsys.readouterr().out
    assert main(["graph", "--stack", "nope"]) == 1
    assert "Pulumi.nope.yaml: no such file" in capsys.readouterr().err


def test_stack_config_problems_have_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wgmesh.mesh.stackconfig")
    data = copy.deepcopy(STACK)
    data["config"]["wgmesh:mesh"]["peers"][1]["vpc_cidr"] = "192.168.10.0/25"  # overlaps zhy's VPC
    stack = write_stack(tmp_path, data)
    assert main(["graph", str(stack)]) == 1
    err = capsys.readouterr().err
    line = next(number for number, text in enumerate(stack.read_text().splitlines(), 1) if "192.168.10.0/25" in text)
    assert f"{stack}:{line}: wgmesh:mesh.peers[1].vpc_cidr: 192.168.10.0/25 overlaps" in err and "Traceback" not in err

    no_mesh = write_stack(tmp_path, {"config": {"aws:region": "cn-north-1"}}, "Pulumi.other.yaml")
    assert main(["graph", str(no_mesh)]) == 1
    assert "has no 'wgmesh:mesh' key (keys: aws:region)" in capsys.readouterr().err
    assert main(["graph", str(stack), "--keys", str(tmp_path / "k.yaml")]) == 1
    assert "--keys applies to mesh descriptions" in capsys.readouterr().err


def test_stack_flag_refuses_a_plain_description(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLE, tmp_path / "Pulumi.x.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "--stack", "x"]) == 1
    assert "not a Pulumi stack config" in capsys.readouterr().err


def test_readme_mermaid_and_committed_svg_are_current() -> None:
    """The README's Mermaid block is exactly today's output, and docs/topology.svg shows today's example."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, flags=re.DOTALL)
    assert to_mermaid(topology(load_mesh(yaml.safe_load(EXAMPLE.read_text())))) in blocks, (
        "README's topology block is stale: python -m wgmesh.mesh graph examples/mesh.yaml -f mermaid"
    )
    svg = REPO / "docs" / "topology.svg"
    assert "docs/topology.svg" in readme
    root = ET.parse(svg).getroot()
    texts = " ".join(element.text or "" for element in root.iter(f"{SVG_NS}text"))
    node_lines = [line for node in topology(load_mesh(yaml.safe_load(EXAMPLE.read_text()))).nodes for line in (node.name, *node.lines)]
    assert all(line in texts for line in node_lines), (
        "docs/topology.svg is stale: python -m wgmesh.mesh graph examples/mesh.yaml -o docs/topology.svg"
    )


def test_committed_stack_picture_is_current() -> None:
    """docs/stack-zhy.svg shows today's Pulumi.zhy.yaml, grouped by region."""
    pytest.importorskip("wgmesh.mesh.stackconfig")
    from wgmesh.mesh.commands.graph import stack_topology
    from wgmesh.mesh.describe import load_description

    graph = stack_topology(load_description(REPO / "Pulumi.zhy.yaml"))
    root = ET.parse(REPO / "docs" / "stack-zhy.svg").getroot()
    texts = " ".join(element.text or "" for element in root.iter(f"{SVG_NS}text"))
    expected = [place for place, _ in graph.groups if place] + [line for node in graph.nodes for line in (node.name, *node.lines)]
    assert all(line in texts for line in expected), (
        "docs/stack-zhy.svg is stale: python -m wgmesh.mesh graph --stack zhy -o docs/stack-zhy.svg"
    )
    assert "docs/stack-zhy.svg" in (REPO / "README.md").read_text()
