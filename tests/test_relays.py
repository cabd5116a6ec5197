"""Relays for pairs of peers that are both behind NAT: the choice (wgmesh.mesh.relays), its validation and its rendering.

The choice is rendezvous hashing, so the properties that matter are movement bounds: removing a relay moves only
the pairs it relayed, adding a public peer moves only pairs to the newcomer (about 1/N of them), and nothing
depends on list order. Known answers pin the hash itself, so a change of the scoring (which would move every
deployed mesh's pairs) cannot pass unnoticed. Rendering is checked on IPv4 and IPv6 tunnel networks alike.
"""

from __future__ import annotations

import re
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import seeded_keys
from wgmesh.hostside.install import verify_script
from wgmesh.mesh import MeshConfigError, load_mesh
from wgmesh.mesh.cli import main
from wgmesh.mesh.graph import to_dot, to_mermaid, topology
from wgmesh.mesh.relays import choose_relay, rendezvous_score
from wgmesh.mesh.render import forwarding_rules, render_all
from wgmesh.mesh.wgconf import parse_config

NAME = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
# Disjoint sets of names behind NAT and with endpoints, drawn together so that no name is in both.
POPULATIONS = st.lists(NAME, min_size=4, max_size=40, unique=True).flatmap(
    lambda names: st.integers(1, len(names) - 2).map(lambda split: (names[:split], names[split:]))
)


def pairs_of(names: list[str]) -> list[tuple[str, str]]:
    return [(first, second) for index, first in enumerate(names) for second in names[index + 1 :]]


def chosen(nat: list[str], public: list[str]) -> dict[tuple[str, str], str | None]:
    return {pair: choose_relay(*pair, public) for pair in pairs_of(nat)}


# ------------------------------------------------------------------------------------------------- the choice


def test_known_answers() -> None:
    """The scores are blake2b-64 of ``low NUL high NUL candidate``: fixed forever (a change moves deployed pairs)."""
    assert rendezvous_score("home", "office", "zhy") == rendezvous_score("office", "home", "zhy") == KNOWN_SCORE
    assert choose_relay("home", "office", ["zhy", "bjs", "pub"]) == KNOWN_RELAY
    assert {pair: choose_relay(*pair, ["r1", "r2", "r3"]) for pair in pairs_of(["a", "b", "c", "d"])} == KNOWN_TABLE


KNOWN_SCORE = 4154173061786782723
KNOWN_RELAY = "bjs"
KNOWN_TABLE = {("a", "b"): "r1", ("a", "c"): "r2", ("a", "d"): "r1", ("b", "c"): "r1", ("b", "d"): "r2", ("c", "d"): "r3"}


def test_no_candidate_means_no_relay_and_a_pair_never_relays_through_itself() -> None:
    assert choose_relay("a", "b", []) is None
    assert choose_relay("a", "b", ["a", "b"]) is None


@settings(max_examples=60, deadline=None)
@given(POPULATIONS, st.data())
def test_removing_a_relay_moves_only_the_pairs_it_relayed(population: tuple[list[str], list[str]], data: st.DataObject) -> None:
    nat, public = population
    gone = data.draw(st.sampled_from(public))
    before = chosen(nat, public)
    after = chosen(nat, [name for name in public if name != gone])
    moved = {pair for pair in before if before[pair] != after[pair]}
    assert moved == {pair for pair, relay in before.items() if relay == gone}


@settings(max_examples=60, deadline=None)
@given(POPULATIONS, NAME)
def test_adding_a_public_peer_moves_pairs_only_to_it(population: tuple[list[str], list[str]], newcomer: str) -> None:
    nat, public = population
    if newcomer in nat or newcomer in public:
        return
    before = chosen(nat, public)
    after = chosen(nat, [*public, newcomer])
    assert {pair for pair in before if before[pair] != after[pair]} == {pair for pair, relay in after.items() if relay == newcomer}


@settings(max_examples=30, deadline=None)
@given(st.lists(NAME, min_size=40, max_size=40, unique=True), st.integers(2, 8))
def test_adding_a_public_peer_moves_about_one_nth_of_the_pairs(names: list[str], count: int) -> None:
    """780 pairs over N = count + 1 relays: the newcomer takes about 1/N of them, and never twice that."""
    nat, public, newcomer = names[: -count - 1], names[-count - 1 : -1], names[-1]
    before, after = chosen(nat, public), chosen(nat, [*public, newcomer])
    moved = sum(before[pair] != after[pair] for pair in before)
    assert moved <= 2 * len(before) / (count + 1)


@settings(max_examples=40, deadline=None)
@given(POPULATIONS, st.randoms(use_true_random=False))
def test_the_choice_ignores_the_order_of_peers(population: tuple[list[str], list[str]], random: Any) -> None:
    nat, public = population
    raw = {"network": "10.255.0.0/16", "peers": [{"name": name} for name in nat]}
    raw["peers"] += [{"name": name, "endpoint": f"198.51.100.{index + 1}:51820"} for index, name in enumerate(public)]
    shuffled = {**raw, "peers": random.sample(raw["peers"], len(raw["peers"]))}
    first, second = load_mesh(raw), load_mesh(shuffled)
    assert {frozenset(pair[:2]): pair[2] for pair in first.relays} == {frozenset(pair[:2]): pair[2] for pair in second.relays}
    assert len(first.relays) == len(nat) * (len(nat) - 1) // 2


# ------------------------------------------------------------------------------------------------- validation


def described(network: str = "10.255.0.0/24", **settings: dict[str, Any]) -> dict[str, Any]:
    """Two public peers (r1, r2) and two behind NAT (home, office), each with a subnet of the network's family."""
    six = ":" in network
    peers = [
        {"name": "r1", "endpoint": "198.51.100.1:51820", "subnets": ["fd01:1::/64" if six else "10.1.1.0/24"]},
        {"name": "r2", "endpoint": "198.51.100.2:51820", "subnets": ["fd01:2::/64" if six else "10.1.2.0/24"]},
        {"name": "home", "subnets": ["fd01:3::/64" if six else "10.1.3.0/24"]},
        {"name": "office", "subnets": ["fd01:4::/64" if six else "10.1.4.0/24"]},
    ]
    return {"network": network, "peers": [peer | settings.get(peer["name"], {}) for peer in peers]}


def issues_of(raw: Any) -> dict[str, str]:
    with pytest.raises(MeshConfigError) as caught:
        load_mesh(raw)
    return {issue.path: f"{issue.problem}; {issue.fix}" for issue in caught.value.issues}


def test_a_named_relay_wins_and_either_side_may_name_it() -> None:
    automatic = load_mesh(described()).relay_between("home", "office")
    other = "r1" if automatic == "r2" else "r2"
    assert load_mesh(described(home={"relay": other})).relays == (("home", "office", other),)
    assert load_mesh(described(office={"relay": other})).relays == (("home", "office", other),)
    assert load_mesh(described(home={"relay": other}, office={"relay": other})).relays == (("home", "office", other),)


def test_relay_allowed_false_keeps_a_peer_out_of_the_choice_mesh_wide_or_per_peer() -> None:
    assert load_mesh(described(r1={"relay_allowed": False})).relays == (("home", "office", "r2"),)
    assert load_mesh(described(r2={"relay_allowed": False})).relays == (("home", "office", "r1"),)
    assert load_mesh(described(r2={"table": "off"})).relays == (("home", "office", "r1"),), "no routes, no relaying"
    opt_in = {**described(r2={"relay_allowed": True}), "relay_allowed": False}
    assert load_mesh(opt_in).relays == (("home", "office", "r2"),)


@pytest.mark.parametrize(
    ("settings", "path", "message"),
    [
        ({"home": {"relay": "home"}}, "mesh.peers[2].relay", "a peer cannot be its own relay"),
        ({"home": {"relay": "r11"}}, "mesh.peers[2].relay", "no peer named 'r11'; did you mean 'r1'?"),
        ({"home": {"relay": "office"}}, "mesh.peers[2].relay", "relay 'office' has no endpoint (it is behind NAT itself)"),
        ({"home": {"relay": "r1"}, "r1": {"relay_allowed": False}}, "mesh.peers[2].relay", "relay 'r1' has relay_allowed: false"),
        ({"r1": {"relay": "r2"}}, "mesh.peers[0].relay", "peer 'r1' has an endpoint, so every peer reaches it directly"),
        ({"home": {"relay": "r1"}, "office": {"relay": "r2"}}, "mesh.peers[3].relay", "name different relays, 'r1' and 'r2'"),
        ({"home": {"relay": "Bad Name"}}, "mesh.peers[2].relay", "'Bad Name' is not a peer name"),
        ({"r1": {"relay_allowed": False}, "r2": {"relay_allowed": False}}, "mesh.peers[3].endpoint", "relay_allowed: false"),
        ({"home": {"relay": "r1"}, "r1": {"table": "off"}}, "mesh.peers[2].relay", "relay 'r1' has table: off, so it has no route"),
        ({"r1": {"table": "off"}, "r2": {"relay_allowed": False}}, "mesh.peers[3].endpoint", "relay_allowed: false or table: off"),
        ({"r1": {"relay_allowed": "no"}}, "mesh.peers[0].relay_allowed", "'no' is not true or false; use true or false"),
    ],
)
def test_a_pair_without_a_path_or_a_bad_relay_is_refused_with_field_and_fix(
    settings: dict[str, dict[str, Any]], path: str, message: str
) -> None:
    issues = issues_of(described(**settings))
    assert message in issues[path], issues


def test_no_public_peer_at_all_is_refused_and_a_pinned_pair_still_needs_a_valid_relay() -> None:
    raw = described()
    for peer in raw["peers"]:
        peer.pop("endpoint", None)
    issues = issues_of(raw)
    assert "no peer has an endpoint to relay through" in issues["mesh.peers[1].endpoint"]
    assert "give one of them a public 'endpoint'" in issues["mesh.peers[1].endpoint"]


# -------------------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("network", ["10.255.0.0/24", "fd00:255::/64"])
def test_a_nat_peer_routes_the_other_through_its_relay_which_forwards_without_nat(network: str) -> None:
    mesh = load_mesh(described(network))
    relay = mesh.relay_between("home", "office")
    assert relay in ("r1", "r2")
    configs = {name: parse_config(text) for name, text in render_all(mesh, seeded_keys(mesh.names)).items()}

    def routes(local: str) -> dict[str, set[Any]]:
        return {
            section.name: {ip_network(text.strip()) for text in section.get("AllowedIPs").split(",")} for section in configs[local].peers
        }

    for local, other in (("home", "office"), ("office", "home")):
        sections = routes(local)
        assert other not in sections, f"{local} has a [Peer] for {other}, whom it can never reach directly"
        assert sections[relay] == set(mesh.peer(relay).allowed_ips) | set(mesh.peer(other).allowed_ips)
        relay_section = next(section for section in configs[local].peers if section.name == relay)
        assert relay_section.get("PersistentKeepalive") == "25", "the NAT peer keeps its mapping to the relay open"
    for name in ("r1", "r2"):  # public peers list both NAT peers directly, with their own prefixes only
        sections = routes(name)
        assert sections["home"] == set(mesh.peer("home").allowed_ips) and sections["office"] == set(mesh.peer("office").allowed_ips)

    up, _ = forwarding_rules(mesh, mesh.peer(relay))
    family = ip_network(network).version
    assert f"sysctl -q -w net.ipv{family}.{'ip_forward' if family == 4 else 'conf.all.forwarding'}=1" in up
    binary = "iptables" if family == 4 else "ip6tables"
    (restore,) = [command for command in up if f"| {binary}-restore " in command]
    assert '"-A wgmesh-%i-fwd -i %i -o %i -j ACCEPT"' in restore, "forwarding out of %i again"
    # wg0 -> wg0 is never NATed: every NAT rule is bound to leaving by the interface of an own subnet.
    nat_rules = re.findall(r'"(-A wgmesh-%i-(?:nat|mangle) [^"]*(?:MASQUERADE|MARK)[^"]*)"', restore)
    assert nat_rules and all(" -o $l" in rule for rule in nat_rules)


# ------------------------------------------------------------------------------------- where the mesh is shown


def test_check_lists_each_relayed_pair_with_its_relay_how_it_was_chosen_and_the_cleartext_caveat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = described(r1={"relay_allowed": False})
    raw["peers"].append({"name": "laptop", "relay": "r2"})
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "relayed pairs (both behind NAT): a relay decrypts and re-encrypts what it forwards, so it sees" in out
    assert "home <-> office    via r2 (chosen; may move when peers with endpoints change, pin with `relay: r2`)" in out
    assert "home <-> laptop    via r2 (pinned: laptop says relay: r2)" in out
    assert "office <-> laptop  via r2 (pinned: laptop says relay: r2)" in out
    assert "never relaying (relay_allowed: false): r1" in out


def test_check_of_a_mesh_without_relayed_pairs_says_nothing_about_relays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(described(office={"endpoint": "198.51.100.4:51820"}), sort_keys=False))
    assert main(["check", str(path)]) == 0
    assert "relay" not in capsys.readouterr().out


@pytest.mark.parametrize("network", ["10.255.0.0/24", "fd00:255::/64"])
def test_graph_draws_a_relayed_pair_dotted_and_labelled_with_its_relay(network: str) -> None:
    mesh = load_mesh(described(network, home={"relay": "r1"}))
    graph = topology(mesh)
    [edge] = [edge for edge in graph.edges if edge.relay is not None]
    assert (edge.source, edge.target, edge.relay, edge.one_way) == ("home", "office", "r1", False)
    assert len(graph.edges) == 6, "still one edge per pair"
    dot = to_dot(graph)
    assert '"home" -- "office" [dir=both, style=dotted, penwidth=2, color="#c05a00", fontcolor="#c05a00", ' in dot
    assert 'label="relayed by r1 (sees it in clear)"];' in dot
    mermaid = to_mermaid(graph).splitlines()
    assert "  p_home -.-|relayed by r1 (sees it in clear)| p_office" in mermaid
    links = [line for line in mermaid if " p_" in line and ("--" in line or "-." in line)]
    index = links.index("  p_home -.-|relayed by r1 (sees it in clear)| p_office")
    assert mermaid[-1] == f"  linkStyle {index} stroke:#c05a00,stroke-width:2px,stroke-dasharray:2 4"


def test_verify_script_reports_relayed_peers_and_waits_for_the_relays_handshake() -> None:
    keys = seeded_keys(["r1", "b", "c"])
    script = verify_script(
        "wg0", [("r1", keys.public_key("r1"), ["10.0.0.1"]), ("c", keys.public_key("r1"), ["10.0.0.3"])], relays={"c": "r1"}
    )
    assert "vias=(null '\"r1\"')" in script
    assert f"keys=({keys.public_key('r1')} {keys.public_key('r1')})" in script
