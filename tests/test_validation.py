"""One test per kind of bad input: each must name the exact field path, and all issues must come at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import seeded_private_key
from wgmesh.mesh import MeshConfigError, load_mesh


def issues_of(raw: Any, **kwargs: Any) -> dict[str, str]:
    """Path -> message of every issue (fails the test if the description is accepted)."""
    with pytest.raises(MeshConfigError) as caught:
        load_mesh(raw, **kwargs)
    return {issue.path: f"{issue.problem}; {issue.fix}" for issue in caught.value.issues}


def test_the_example_is_valid(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    assert mesh.names == ("zhy", "bjs", "pub")
    assert [str(peer.addresses[0]) for peer in mesh.peers] == ["10.255.0.1/24", "10.255.0.2/24", "10.255.0.3/24"]
    assert mesh.peer("zhy").egress_interface == "ens5" and mesh.peer("pub").egress_interface is None  # found on the host
    assert mesh.peer("zhy").listen_port == 51820 and mesh.peer("zhy").mtu == 1420


def test_duplicate_names(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][2]["name"] = "zhy"
    issues = issues_of(three_peers)
    assert "duplicate peer name 'zhy'" in issues["mesh.peers[2].name"] and "mesh.peers[0]" in issues["mesh.peers[2].name"]


@pytest.mark.parametrize("name", ["Zhy", "a_b", "-a", "a-", "a.b", "a/b", "", "x" * 16, None, 7])
def test_names_unusable_as_interface_or_file_names(three_peers: dict[str, Any], name: Any) -> None:
    three_peers["peers"][1]["name"] = name
    assert "not a usable peer name" in issues_of(three_peers)["mesh.peers[1].name"]


def test_fifteen_character_names_are_fine(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][1]["name"] = "a" * 15
    assert load_mesh(three_peers).peers[1].name == "a" * 15


@pytest.mark.parametrize("cidr", ["192.168.20.0/33", "192.168.20.1/24", "not-a-cidr", 42])
def test_invalid_subnet(three_peers: dict[str, Any], cidr: Any) -> None:
    three_peers["peers"][1]["subnets"] = [cidr]
    assert "mesh.peers[1].subnets[0]" in issues_of(three_peers)


def test_host_bits_suggest_the_network(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][1]["subnets"] = ["192.168.20.1/24"]
    assert "did you mean 192.168.20.0/24" in issues_of(three_peers)["mesh.peers[1].subnets[0]"]


def test_overlapping_subnets_between_peers(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][2]["subnets"] = ["10.7.1.0/24", "192.168.10.128/25"]
    message = issues_of(three_peers)["mesh.peers[2].subnets[1]"]
    assert "overlaps 192.168.10.0/24 of peer 'zhy' (mesh.peers[0].subnets[0])" in message


def test_overlapping_subnets_of_one_peer(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][2]["subnets"] = ["10.7.0.0/16", "10.7.1.0/24"]
    assert "of the same peer" in issues_of(three_peers)["mesh.peers[2].subnets[1]"]


def test_subnet_overlapping_the_tunnel_network(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["subnets"] = ["10.255.0.0/16"]
    assert "overlaps the tunnel network 10.255.0.0/24" in issues_of(three_peers)["mesh.peers[0].subnets[0]"]


def test_seed_layout_tunnel_address_inside_the_vpc_is_refused(three_peers: dict[str, Any]) -> None:
    """The seed put zhy's tunnel address 192.168.10.1 inside its VPC: a tunnel network overlapping subnets."""
    three_peers["network"] = "192.168.10.0/24"
    three_peers["peers"][0]["address"] = "192.168.10.1"
    assert "overlaps the tunnel network" in issues_of(three_peers)["mesh.peers[0].subnets[0]"]


@pytest.mark.parametrize("network", ["10.255.0.0/33", "10.255.0.1/24", "10.255.0.0/31", None])
def test_bad_tunnel_network(three_peers: dict[str, Any], network: Any) -> None:
    three_peers["network"] = network
    assert "mesh.network" in issues_of(three_peers)


def test_two_networks_of_one_family(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "10.254.0.0/24"]
    assert "second IPv4" in issues_of(three_peers)["mesh.network[1]"]


def test_tunnel_address_outside_the_network(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][1]["address"] = "10.254.0.2"
    assert "outside the tunnel network 10.255.0.0/24" in issues_of(three_peers)["mesh.peers[1].address"]


@pytest.mark.parametrize("address", ["10.255.0.0", "10.255.0.255"])
def test_network_and_broadcast_addresses_are_not_hosts(three_peers: dict[str, Any], address: str) -> None:
    three_peers["peers"][1]["address"] = address
    assert "network or broadcast" in issues_of(three_peers)["mesh.peers[1].address"]


def test_duplicate_tunnel_address(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][2]["address"] = "10.255.0.1"
    assert "already the tunnel address of mesh.peers[0]" in issues_of(three_peers)["mesh.peers[2].address"]


def test_address_list_paths_are_indexed(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    three_peers["peers"][1]["address"] = ["10.255.0.2", "fd00:254::2"]
    assert "outside the tunnel network fd00:255::/64" in issues_of(three_peers)["mesh.peers[1].address[1]"]


def test_address_of_a_family_without_network(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][1]["address"] = "fd00::2"
    assert "no IPv6 tunnel network" in issues_of(three_peers)["mesh.peers[1].address"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "203.0.113.20",
        "203.0.113.20:0",
        "203.0.113.20:70000",
        "203.0.113.20:port",
        "2001:db8::1:51820",
        "[203.0.113.20]:51820",
        "bad host:1",
        5,
    ],
)
def test_bad_endpoint(three_peers: dict[str, Any], endpoint: Any) -> None:
    three_peers["peers"][1]["endpoint"] = endpoint
    assert "mesh.peers[1].endpoint" in issues_of(three_peers)


def test_good_endpoints(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["endpoint"] = "[2001:db8::10]:51820"
    three_peers["peers"][1]["endpoint"] = "vpn.example.org:4500"
    mesh = load_mesh(three_peers)
    assert str(mesh.peers[0].endpoint) == "[2001:db8::10]:51820"
    assert mesh.peers[1].listen_port == 4500, "without listen_port a peer listens on its endpoint's port"


@pytest.mark.parametrize("port", [0, 65536, "x", True, -1])
def test_bad_listen_port(three_peers: dict[str, Any], port: Any) -> None:
    three_peers["peers"][1]["listen_port"] = port
    assert "port number" in issues_of(three_peers)["mesh.peers[1].listen_port"]


def test_bad_key_material(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["private_key"] = "not a key"
    three_peers["peers"][1]["public_key"] = "A" * 43 + "="[:0] + "B"
    issues = issues_of(three_peers)
    assert "44 base64 characters" in issues["mesh.peers[0].private_key"]
    assert "mesh.peers[1].public_key" in issues


def test_public_key_not_matching_private_key(three_peers: dict[str, Any]) -> None:
    from wgmesh.mesh.keys import public_key

    three_peers["peers"][0]["private_key"] = seeded_private_key("zhy")
    three_peers["peers"][0]["public_key"] = public_key(seeded_private_key("other"))
    assert "does not belong to the given private_key" in issues_of(three_peers)["mesh.peers[0].public_key"]


def test_two_peers_with_one_key(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["private_key"] = three_peers["peers"][2]["private_key"] = seeded_private_key("zhy")
    assert "the same key as mesh.peers[0]" in issues_of(three_peers)["mesh.peers[2].public_key"]


def test_two_peers_without_endpoints_and_no_relay_cannot_reach_each_other(three_peers: dict[str, Any]) -> None:
    del three_peers["peers"][1]["endpoint"]
    del three_peers["peers"][2]["endpoint"]
    three_peers["peers"][0]["relay_allowed"] = False
    message = issues_of(three_peers)["mesh.peers[2].endpoint"]
    assert "'pub' has no endpoint and neither has 'bjs', and every peer with an endpoint has relay_allowed: false or table: off" in message


def test_one_peer_behind_nat_is_fine_and_pending_endpoints_count(three_peers: dict[str, Any]) -> None:
    del three_peers["peers"][1]["endpoint"]
    assert load_mesh(three_peers).peer("bjs").endpoint is None
    del three_peers["peers"][0]["endpoint"]
    mesh = load_mesh(three_peers, pending_endpoints=["zhy"])
    assert mesh.peer("zhy").reachable and not mesh.peer("bjs").reachable


def test_many_nat_peers_give_one_issue_each_not_one_per_pair(three_peers: dict[str, Any]) -> None:
    three_peers["peers"] = [{"name": f"n{index}"} for index in range(10)]
    assert len(issues_of(three_peers)) == 9


def test_endpoint_inside_a_routed_subnet_is_a_routing_loop(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][2]["endpoint"] = "192.168.10.7:51820"
    assert "inside 192.168.10.0/24 (mesh.peers[0].subnets[0])" in issues_of(three_peers)["mesh.peers[2].endpoint"]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("mtu", 100, "mesh.peers[1].mtu"),
        ("keepalive", -1, "mesh.peers[1].keepalive"),
        ("egress_interface", "eth 0", "mesh.peers[1].egress_interface"),
        ("nat", "yes", "mesh.peers[1].nat"),
        ("post_up", ["echo a # b"], "mesh.peers[1].post_up[0]"),
        ("post_down", ["one\ntwo"], "mesh.peers[1].post_down[0]"),
        ("dns", ["10.0.0.2", "not a domain!"], "mesh.peers[1].dns[1]"),
        ("table", "main # x", "mesh.peers[1].table"),
        ("colour", "red", "mesh.peers[1].colour"),
    ],
)
def test_bad_optional_peer_fields(three_peers: dict[str, Any], field: str, value: Any, path: str) -> None:
    three_peers["peers"][1][field] = value
    assert path in issues_of(three_peers)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mtu", 80000), ("egress_interface", "a very long interface"), ("nat", 3), ("keepalive", "x"), ("interface", "w g")],
)
def test_bad_mesh_defaults_are_reported_once_at_their_own_path(three_peers: dict[str, Any], field: str, value: Any) -> None:
    three_peers[field] = value
    assert list(issues_of(three_peers)) == [f"mesh.{field}"]


def test_unknown_field_suggests_the_close_one(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["subnet"] = ["192.168.11.0/24"]
    assert "did you mean 'subnets'" in issues_of(three_peers)["mesh.peers[0].subnet"]


def test_not_a_mapping_and_too_few_peers() -> None:
    assert "mesh" in issues_of(["a"])
    assert (
        "at least two peers" in issues_of({"network": "10.255.0.0/24", "peers": [{"name": "a", "endpoint": "203.0.113.1:1"}]})["mesh.peers"]
    )


def test_every_issue_is_reported_at_once(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["name"] = "Bad"
    three_peers["peers"][1]["subnets"] = ["300.0.0.0/8"]
    three_peers["peers"][2]["endpoint"] = "nowhere"
    three_peers["peers"][2]["address"] = "10.0.0.3"
    with pytest.raises(MeshConfigError) as caught:
        load_mesh(three_peers)
    assert set(caught.value.paths()) >= {
        "mesh.peers[0].name",
        "mesh.peers[1].subnets[0]",
        "mesh.peers[2].endpoint",
        "mesh.peers[2].address",
    }
    assert "4 problem(s)" in str(caught.value)


def test_ipv6_and_dual_stack(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    three_peers["peers"][0]["subnets"].append("fd00:10::/64")
    mesh = load_mesh(three_peers)
    zhy = mesh.peer("zhy")
    assert [address.version for address in zhy.addresses] == [4, 6]
    assert str(zhy.allowed_ips[1]).endswith("/128") and zhy.allowed_ips[1].network_address in mesh.networks[1]


def test_nat_mark_defaults_to_bit_24_and_accepts_ints_and_hex_strings(three_peers: dict[str, Any]) -> None:
    assert load_mesh(three_peers).nat_mark == 0x1000000
    for given, expected in [(0x10, 0x10), ("0x80000000", 0x80000000), ("4096", 4096), (1, 1)]:
        three_peers["nat_mark"] = given
        assert load_mesh(three_peers).nat_mark == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0x3000000, "sets 2 bits, not one"),
        (0, "not a 32-bit packet mark bit"),
        (-0x10, "not a 32-bit packet mark bit"),
        (0x100000000, "not a 32-bit packet mark bit"),
        (True, "not a 32-bit packet mark bit"),
        ("mark", "not a number"),
        (1.5, "not a 32-bit packet mark bit"),
        (0x4000, "kube-proxy's masquerade bit 0x4000"),
        (0x8000, "kube-proxy's drop bit 0x8000"),
        (0x800, "wg-quick's fwmark 51820 (0xca6c)"),
        ("0x4", "wg-quick's fwmark 51820 (0xca6c)"),
    ],
)
def test_bad_nat_mark_names_the_field(three_peers: dict[str, Any], value: Any, problem: str) -> None:
    three_peers["nat_mark"] = value
    issues = issues_of(three_peers)
    assert list(issues) == ["mesh.nat_mark"] and problem in issues["mesh.nat_mark"]
    assert "single free bit such as 0x1000000" in issues["mesh.nat_mark"]
