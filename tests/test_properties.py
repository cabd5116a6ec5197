"""Property tests (hypothesis) over generated meshes: random names, disjoint random subnets, IPv4 and dual stack,
given or allocated addresses, peers behind NAT, and the knobs that change the rendered text.

Example counts stay modest (the whole module runs in a few seconds); the generators build valid meshes by
construction (each subnet lives in its own /16 or /48 block) instead of filtering, so no example is wasted.
"""

from __future__ import annotations

from ipaddress import ip_interface, ip_network
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import seeded_keys
from wgmesh.mesh import load_mesh
from wgmesh.mesh.addressing import allocate
from wgmesh.mesh.awsplan import summarize
from wgmesh.mesh.render import MeshKeys, build_peer_config, forwarding_rules, header_for, render_all, render_peer_config
from wgmesh.mesh.wgconf import WgConfig, WgPeerSection, format_config, parse_config

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names_strategy = st.lists(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True), min_size=2, max_size=8, unique=True)


@st.composite
def subnet_lists(draw: st.DrawFn, count: int, dual: bool) -> list[list[str]]:
    """``count`` lists of subnets, pairwise disjoint: every subnet lies in its own block, 10.<b>.0.0/16 for IPv4
    and fd00:<b>::/48 for IPv6, at a random prefix length and offset inside it."""
    blocks = iter(draw(st.permutations(range(1, 254)))[: count * 3])
    result = []
    for _ in range(count):
        subnets = []
        for _ in range(draw(st.integers(0, 3))):
            block = ip_network(f"fd00:{next(blocks):x}::/48") if dual and draw(st.booleans()) else ip_network(f"10.{next(blocks)}.0.0/16")
            prefix = draw(st.integers(block.prefixlen, block.prefixlen + 12))
            offset = draw(st.integers(0, 2 ** (prefix - block.prefixlen) - 1))
            start = int(block.network_address) + offset * 2 ** (block.max_prefixlen - prefix)
            subnets.append(str(ip_network((start, prefix))))
        result.append(subnets)
    return result


@st.composite
def meshes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid raw mesh description."""
    names = draw(names_strategy)
    dual = draw(st.booleans())
    prefix = draw(st.integers(20, 27))
    network = f"10.255.0.0/{prefix}"
    subnets = draw(subnet_lists(len(names), dual))
    # Any number of peers behind NAT but one: pairs of them are relayed through the others.
    behind_nat = set(draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names) - 1)))
    hosts = draw(st.lists(st.integers(1, 2 ** (32 - prefix) - 2), min_size=len(names), max_size=len(names), unique=True))
    peers = []
    for index, name in enumerate(names):
        peer: dict[str, Any] = {"name": name, "subnets": subnets[index]}
        if name not in behind_nat:
            peer["endpoint"] = f"203.0.113.{index + 1}:{draw(st.integers(1024, 65535))}"
        if draw(st.booleans()):
            peer["address"] = str(ip_network(network).network_address + hosts[index])
        if draw(st.booleans()):
            peer["keepalive"] = draw(st.integers(0, 120))
        peer["nat"] = draw(st.booleans())
        peer["egress_interface"] = draw(st.sampled_from([None, "eth0", "ens5"]))
        peers.append(peer)
    raw: dict[str, Any] = {"network": [network, "fd00:255::/64"] if dual else network, "peers": peers}
    if draw(st.booleans()):
        raw["mtu"] = draw(st.integers(1280, 9000))
    return raw


def parsed_configs(raw: dict[str, Any]) -> tuple[Any, dict[str, WgConfig]]:
    mesh = load_mesh(raw)
    keys = seeded_keys(mesh.names)
    return mesh, {name: parse_config(text) for name, text in render_all(mesh, keys).items()}


@SETTINGS
@given(meshes())
def test_every_peer_appears_exactly_once_in_every_other_peers_file(raw: dict[str, Any]) -> None:
    mesh, configs = parsed_configs(raw)
    keys = seeded_keys(mesh.names)
    for name, config in configs.items():
        direct = [other for other in mesh.names if other != name and mesh.relay_between(name, other) is None]
        assert [section.name for section in config.peers] == direct
        listed = [section.get("PublicKey") for section in config.peers]
        assert sorted(listed) == sorted(keys.public_key(other) for other in direct)
        assert keys.public_key(name) not in listed


@SETTINGS
@given(meshes())
def test_every_other_peers_prefixes_are_routed_once_through_its_relay_when_relayed(raw: dict[str, Any]) -> None:
    """Each file routes every prefix of every other peer exactly once: to that peer, or to the pair's relay when
    both are behind NAT (a public peer, which lists both NAT peers itself)."""
    mesh, configs = parsed_configs(raw)
    for name, config in configs.items():
        routed = {ip_network(text.strip()): section.name for section in config.peers for text in section.get("AllowedIPs").split(",")}
        expected = {
            prefix: mesh.relay_between(name, other.name) or other.name for other in mesh.others(name) for prefix in other.allowed_ips
        }
        assert routed == expected
    assert all(mesh.peer(relay).reachable and not mesh.peer(first).reachable for first, _, relay in mesh.relays)


@SETTINGS
@given(meshes())
def test_allowed_ips_never_overlap_inside_one_file(raw: dict[str, Any]) -> None:
    _, configs = parsed_configs(raw)
    for config in configs.values():
        networks = [ip_network(text.strip()) for section in config.peers for text in section.get("AllowedIPs").split(",")]
        for index, first in enumerate(networks):
            for second in networks[index + 1 :]:
                assert first.version != second.version or not first.overlaps(second), (first, second)
        own = [ip_interface(text.strip()).ip for text in config.get("Address").split(",")]
        assert not any(address in network for address in own for network in networks), "no route covers our own address"


@SETTINGS
@given(meshes())
def test_rendering_is_deterministic(raw: dict[str, Any]) -> None:
    first = render_all(load_mesh(raw), seeded_keys([peer["name"] for peer in raw["peers"]]))
    second = render_all(load_mesh(raw), seeded_keys([peer["name"] for peer in raw["peers"]]))
    assert first == second


@SETTINGS
@given(meshes())
def test_parse_of_render_is_the_structure(raw: dict[str, Any]) -> None:
    mesh = load_mesh(raw)
    keys = seeded_keys(mesh.names)
    for name in mesh.names:
        structure = build_peer_config(mesh, name, keys)
        assert parse_config(format_config(structure, header="anything\nat all")) == structure


@SETTINGS
@given(meshes(), st.sampled_from(["psk", "no-psk", "public-only"]))
def test_rendered_text_is_the_formatted_structure_byte_for_byte(raw: dict[str, Any], keying: str) -> None:
    """render_all and render_peer_config write text directly (sharing each remote's block between files): they
    must give exactly what formatting the structured config gives, the one layout wgconf defines."""
    mesh = load_mesh(raw)
    keys = seeded_keys(mesh.names, psk=keying != "no-psk")
    if keying == "public-only":
        last = mesh.names[-1]
        keys = MeshKeys({name: keys.private_key(name) for name in mesh.names[:-1]}, keys.mesh_secret, {last: keys.public_key(last)})
    expected = {
        name: format_config(build_peer_config(mesh, name, keys), header=header_for(mesh, name))
        for name in mesh.names
        if name in keys.private_keys
    }
    assert {name: render_peer_config(mesh, name, keys) for name in expected} == expected
    if keying != "public-only":
        assert render_all(mesh, keys) == expected


@SETTINGS
@given(meshes())
def test_the_firewall_names_own_subnets_only_and_nats_only_towards_them(raw: dict[str, Any]) -> None:
    """Per family present: one restore into wgmesh's chains and one PostDown; a MARK and two MASQUERADEs (one
    without a tunnel network of that family) per own subnet of that family when NAT is on, none otherwise; the
    forward chain ends by dropping the rest of what the tunnel delivers; no rule names another peer's subnet."""
    mesh = load_mesh(raw)
    for peer in mesh.peers:
        up, down = forwarding_rules(mesh, peer)
        others = {str(subnet) for other in mesh.others(peer.name) for subnet in other.subnets} - {str(s) for s in peer.subnets}
        families = sorted({address.version for address in peer.addresses} | set(mesh.subnet_owners))
        assert len(down) == len(families)
        for family, binary in ((4, "iptables"), (6, "ip6tables")):
            restores = [command for command in up if f"| {binary}-restore " in command]
            assert len(restores) == (family in families)
            if not restores:
                continue
            own = [subnet for subnet in peer.subnets if subnet.version == family]
            tunnel = any(network.version == family for network in mesh.networks)
            text = restores[0]
            assert text.count("-j MARK --set-xmark") == (len(own) if peer.nat else 0)
            assert text.count("-j MASQUERADE") == (len(own) * (1 + tunnel) if peer.nat else 0)
            assert '"-A wgmesh-%i-fwd -i %i -j DROP" "COMMIT"' in text
        assert not any(f" {subnet} " in command for subnet in others for command in up + down)
        # IPv6 forwarding always comes right after the uplink is told to keep accepting router advertisements.
        accept_ra = [index for index, command in enumerate(up) if "accept_ra" in command]
        forwarding6 = [index for index, command in enumerate(up) if command == "sysctl -q -w net.ipv6.conf.all.forwarding=1"]
        assert [index + 1 for index in accept_ra] == forwarding6


value_text = st.from_regex(r"[A-Za-z0-9+/=%.:,\-_ ]{0,30}[A-Za-z0-9+/=%.:,\-_]", fullmatch=True).map(str.strip).filter(bool)
entries = st.lists(st.tuples(st.sampled_from(["Address", "PostUp", "DNS", "X-Custom", "AllowedIPs", "Endpoint"]), value_text), max_size=6)


@settings(max_examples=60, deadline=None)
@given(entries, st.lists(st.tuples(st.one_of(st.none(), value_text.filter(lambda text: "=" not in text)), entries), max_size=4))
def test_parse_of_format_is_identity_for_any_writable_config(interface: list[Any], peers: list[Any]) -> None:
    config = WgConfig(tuple(interface), tuple(WgPeerSection(name, tuple(section)) for name, section in peers))
    assert parse_config(format_config(config)) == config


@settings(max_examples=60, deadline=None)
@given(
    names_strategy,
    st.lists(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True), min_size=1, max_size=3),
    st.integers(0, 7),
    st.integers(24, 28),
)
def test_allocation_is_stable_under_add_and_remove_with_pinning(names: list[str], added: list[str], removed: int, prefix: int) -> None:
    networks = [ip_network(f"10.255.0.0/{prefix}"), ip_network("fd00:255::/120")]
    before = allocate(networks, names, {}).addresses
    pinned = before
    survivors = [name for index, name in enumerate(names) if index != removed % len(names)]
    new_names = [name for name in added if name not in names]
    after = allocate(networks, survivors + new_names, {}, pinned).addresses
    assert all(after[name] == before[name] for name in survivors)
    assert len({address for addresses in after.values() for address in addresses}) == 2 * len(after), "all distinct"


@SETTINGS
@given(meshes(), st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True))
def test_adding_a_peer_to_a_pinned_mesh_moves_nobody(raw: dict[str, Any], newcomer: Any) -> None:
    mesh = load_mesh(raw)
    pinned = {peer.name: [str(address) for address in peer.addresses] for peer in mesh.peers}
    if newcomer in mesh.names:
        return
    grown = {**raw, "peers": [*raw["peers"], {"name": newcomer, "endpoint": "198.51.100.1:51820"}]}
    bigger = load_mesh(grown, pinned_addresses=pinned)
    assert all(bigger.peer(peer.name).addresses == peer.addresses for peer in mesh.peers)
    remaining = raw["peers"][1:] if len(raw["peers"]) > 2 and any("endpoint" in peer for peer in raw["peers"][1:]) else raw["peers"]
    smaller = load_mesh({**raw, "peers": remaining}, pinned_addresses=pinned)
    assert all(peer.addresses == mesh.peer(peer.name).addresses for peer in smaller.peers)


# --- route summaries (wgmesh.mesh.awsplan) -------------------------------------------------------------------------------


@given(
    st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(16, 28)), min_size=1, max_size=40),
    st.lists(st.tuples(st.integers(0, 255), st.integers(8, 16)), max_size=4),
)
def test_summarized_routes_cover_every_route_once_and_add_only_summaries(raw_routes: list, raw_summaries: list) -> None:
    routes = [ip_network(f"10.{a}.{b}.0/{length}", strict=False) for a, b, length in raw_routes]
    summaries: list = []
    for a, length in raw_summaries:
        candidate = ip_network(f"10.{a}.0.0/{length}", strict=False)
        if not any(candidate.overlaps(other) for other in summaries):
            summaries.append(candidate)
    out = [ip_network(text) for text in summarize(routes, summaries)]
    assert len(out) == len(set(out))
    for route in routes:  # every route still goes to the instance, through itself or its summary
        assert any(route.subnet_of(entry) for entry in out)
    for entry in out:  # and nothing else is routed: each entry is a route or a summary holding one
        assert entry in routes or (entry in summaries and any(route.subnet_of(entry) for route in routes))
    assert len(out) <= len(set(routes))
