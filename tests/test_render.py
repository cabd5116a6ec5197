"""The firewall hooks of rendered files: wgmesh's own chains, jumped to first, allowing only what the mesh needs.

Per family, PostUp fills four chains named after the interface (``wgmesh-%i-in``, ``-fwd``, ``-mangle``, ``-nat``)
in one ``iptables-restore --noflush`` and jumps to each from the first position of its built-in chain; PostDown
removes the jumps and the chains. These tests pin the rules, when each family gets them, that they do not grow
with the mesh (only with the peer's own subnets), that nothing from the tunnel is forwarded outside the mesh's
prefixes, and how interface names are configured or found. ``tests/test_interop.py`` runs them for real.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from tests.conftest import seeded_keys
from wgmesh.mesh import load_mesh
from wgmesh.mesh.render import forwarding_rules, render_all, render_peer_config
from wgmesh.mesh.wgconf import parse_config


def hooks(raw: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    mesh = load_mesh(raw)
    return forwarding_rules(mesh, mesh.peer(name))


def restored(up: list[str], binary: str = "iptables") -> list[str]:
    """The rules a family's PostUp loads with ``<binary>-restore`` (table headers, chains and rules), in order."""
    (command,) = [command for command in up if f"| {binary}-restore " in command]
    printed = command.split("printf '%s\\n' ", 1)[1].split(f" | {binary}-restore", 1)[0]
    return shlex.split(printed)


def rules(up: list[str], binary: str = "iptables") -> list[str]:
    return [line for line in restored(up, binary) if line.startswith("-A ")]


def big_mesh(size: int, subnets_per_peer: int = 3) -> dict[str, Any]:
    return {
        "network": "10.255.0.0/20",
        "peers": [
            {
                "name": f"p{index}",
                "endpoint": f"203.0.113.{index % 250 + 1}:{51820 + index}",
                "subnets": [f"172.{16 + index // 200}.{(index % 200)}.{32 * n}/27" for n in range(subnets_per_peer)],
                "egress_interface": "ens5",
            }
            for index in range(size)
        ],
    }


def test_exact_rules_of_the_example(three_peers: dict[str, Any]) -> None:
    up, down = hooks(three_peers, "zhy")
    assert up[0].startswith(": wgmesh-check; ") and up[1] == "sysctl -q -w net.ipv4.ip_forward=1"
    assert restored(up) == [
        "*filter",
        ":wgmesh-%i-in - [0:0]",
        ":wgmesh-%i-fwd - [0:0]",
        "-A wgmesh-%i-in -i $u -p udp --dport 51820 -j ACCEPT",
        "-A wgmesh-%i-in -i %i -p icmp --icmp-type echo-request -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -o %i -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -d 192.168.10.0/24 -j ACCEPT",
        "-A wgmesh-%i-fwd -o %i -s 192.168.10.0/24 -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -j DROP",
        "COMMIT",
        "*mangle",
        ":wgmesh-%i-mangle - [0:0]",
        "-A wgmesh-%i-mangle -o %i -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-A wgmesh-%i-mangle -i %i -o $l1 -d 192.168.10.0/24 -j MARK --set-xmark 0x1000000/0x1000000",
        "COMMIT",
        "*nat",
        ":wgmesh-%i-nat - [0:0]",
        "-A wgmesh-%i-nat -o $l1 -d 192.168.10.0/24 -m mark --mark 0x1000000/0x1000000 -j MASQUERADE",
        "-A wgmesh-%i-nat -s 10.255.0.0/24 -o $l1 -d 192.168.10.0/24 -j MASQUERADE",
        "COMMIT",
    ]
    # Configured: zhy's egress_interface is ens5, its uplink is found (the default route's interface).
    assert "u=$(ip -o -4 route show default " in up[2] and "; l1=ens5; " in up[2]
    for table, builtin, suffix in (
        ("filter", "INPUT", "in"),
        ("filter", "FORWARD", "fwd"),
        ("mangle", "FORWARD", "mangle"),
        ("nat", "POSTROUTING", "nat"),
    ):
        assert f"j {table} {builtin} wgmesh-%i-{suffix}" in up[2]
        assert f"-t {table} -D {builtin} -m comment --comment wgmesh -j wgmesh-%i-{suffix} " in down[0]
        assert f"-t {table} -X wgmesh-%i-{suffix} " in down[0]
    assert "-I $2 1 -m comment --comment wgmesh -j $3" in up[2], "jumped to first, marked as wgmesh's"
    assert len(down) == 1


def test_rules_grow_with_own_subnets_only() -> None:
    small_up, small_down = hooks(big_mesh(3), "p0")
    large_up, large_down = hooks(big_mesh(300), "p0")
    assert small_up == large_up and small_down == large_down, "the same text: the rules do not depend on the other peers"
    assert len(rules(large_up)) == 3 + 2 * 3 + 1 + 1 + 3 + 2 * 3
    assert not any("172.16.1." in command for command in large_up), "no rule names another peer's subnet"


def test_nothing_from_the_tunnel_leaves_for_outside_the_mesh(three_peers: dict[str, Any]) -> None:
    """The forward chain accepts tunnel -> own subnets, own subnets -> tunnel and tunnel -> tunnel (relays); the
    rest of what the tunnel delivers is dropped there, before any host rule could accept it or NAT it."""
    up, _ = hooks(three_peers, "pub")
    forward = [rule for rule in rules(up) if rule.startswith("-A wgmesh-%i-fwd ")]
    assert forward[-1] == "-A wgmesh-%i-fwd -i %i -j DROP"
    accepted = [rule for rule in forward if rule.endswith("-j ACCEPT")]
    assert accepted == [
        "-A wgmesh-%i-fwd -i %i -o %i -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -d 192.168.30.0/24 -j ACCEPT",
        "-A wgmesh-%i-fwd -o %i -s 192.168.30.0/24 -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -d 10.7.1.0/24 -j ACCEPT",
        "-A wgmesh-%i-fwd -o %i -s 10.7.1.0/24 -j ACCEPT",
    ]
    nat = [rule for rule in rules(up) if "MASQUERADE" in rule]
    assert nat and all(re.search(r" -d (192\.168\.30|10\.7\.1)\.0/24 ", rule) for rule in nat), "NAT towards own subnets only"


def test_every_peer_of_a_large_mesh_has_two_masquerades_per_own_subnet() -> None:
    mesh = load_mesh(big_mesh(120))
    for text in render_all(mesh, seeded_keys(mesh.names, psk=False)).values():
        assert text.count("-j MASQUERADE") == 2 * 3


@pytest.mark.parametrize("mark", [0x10, 0x80000000, "0x2000000"])
def test_nat_mark_is_the_mesh_field(three_peers: dict[str, Any], mark: Any) -> None:
    three_peers["nat_mark"] = mark
    bit = f"{int(mark, 0) if isinstance(mark, str) else mark:#x}"
    up, _ = hooks(three_peers, "bjs")
    assert any(f"--set-xmark {bit}/{bit}" in rule for rule in rules(up))
    assert any(f"-m mark --mark {bit}/{bit} -j MASQUERADE" in rule for rule in rules(up))


def test_nat_false_keeps_forwarding_and_drops_mark_and_masquerade(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["nat"] = False
    up, down = hooks(three_peers, "zhy")
    assert not any("MARK" in rule or "MASQUERADE" in rule for rule in rules(up))
    assert "-A wgmesh-%i-fwd -i %i -d 192.168.10.0/24 -j ACCEPT" in rules(up)
    assert any("TCPMSS" in rule for rule in rules(up)), "MSS clamping does not depend on NAT"
    assert len(down) == 1


def test_dual_stack_gets_the_same_rules_with_ip6tables(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    three_peers["peers"][0]["subnets"].append("fd00:10::/64")
    up, down = hooks(three_peers, "zhy")
    assert "sysctl -q -w net.ipv6.conf.all.forwarding=1" in up
    assert rules(up, "ip6tables") == [
        "-A wgmesh-%i-in -i $u -p udp --dport 51820 -j ACCEPT",
        "-A wgmesh-%i-in -i %i -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -o %i -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -d fd00:10::/64 -j ACCEPT",
        "-A wgmesh-%i-fwd -o %i -s fd00:10::/64 -j ACCEPT",
        "-A wgmesh-%i-fwd -i %i -j DROP",
        "-A wgmesh-%i-mangle -o %i -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        "-A wgmesh-%i-mangle -i %i -o $l2 -d fd00:10::/64 -j MARK --set-xmark 0x1000000/0x1000000",
        "-A wgmesh-%i-nat -o $l2 -d fd00:10::/64 -m mark --mark 0x1000000/0x1000000 -j MASQUERADE",
        "-A wgmesh-%i-nat -s fd00:255::/64 -o $l2 -d fd00:10::/64 -j MASQUERADE",
    ]
    assert len(down) == 2 and down[1].startswith("while ip6tables ")


ACCEPT_RA = '[ "$(sysctl -n net/ipv6/conf/$u/accept_ra 2>/dev/null)" != 1 ] || sysctl -q -w net/ipv6/conf/$u/accept_ra=2'


def test_ipv6_keeps_router_advertisements_on_the_uplink_before_forwarding(three_peers: dict[str, Any]) -> None:
    """accept_ra 1 -> 2 on the uplink, right before IPv6 forwarding turns on (which drops RA routes at once)."""
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    up, down = hooks(three_peers, "zhy")
    index = up.index("sysctl -q -w net.ipv6.conf.all.forwarding=1")
    assert up[index - 1].endswith(ACCEPT_RA) and "u=$(ip -o -4 route show default" in up[index - 1]
    assert sum("accept_ra" in command for command in up) == 1 and not any("accept_ra" in command for command in down)
    three_peers["peers"][0] |= {"uplink_interface": "eth0.100"}  # a VLAN name, configured
    configured, _ = hooks(three_peers, "zhy")
    assert configured[configured.index("sysctl -q -w net.ipv6.conf.all.forwarding=1") - 1].startswith("u=eth0.100; ")


def test_an_ipv4_mesh_leaves_router_advertisements_alone(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    for text in render_all(mesh, seeded_keys(mesh.names)).values():
        assert "accept_ra" not in text and "net.ipv6" not in text


def test_a_family_routed_only_by_remote_subnets_gets_its_chains(three_peers: dict[str, Any]) -> None:
    """IPv6 subnets behind bjs but no IPv6 tunnel network: zhy still forwards IPv6 (and drops what is not mesh)."""
    three_peers["peers"][1]["subnets"].append("fd00:20::/64")
    up, _ = hooks(three_peers, "zhy")
    assert rules(up, "ip6tables")[-2:] == [
        "-A wgmesh-%i-fwd -i %i -j DROP",
        "-A wgmesh-%i-mangle -o %i -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
    ]


def test_interfaces_are_found_unless_configured_and_checked_first(three_peers: dict[str, Any]) -> None:
    up, _ = hooks(three_peers, "pub")  # nothing configured
    check = up[0]
    assert check.startswith(": wgmesh-check; ")
    assert "l1=$(ip -o -4 route get 192.168.30.255 " in check and "l2=$(ip -o -4 route get 10.7.1.255 " in check
    assert 'f "no default route to find the uplink by: set uplink_interface"' in check
    assert 'f "no interface of this host routes subnet 10.7.1.0/24: set egress_interface"' in check
    three_peers["peers"][2] |= {"uplink_interface": "enp0s3", "egress_interface": "enp0s8"}
    up, _ = hooks(three_peers, "pub")
    assert "u=enp0s3; l1=enp0s8; l2=enp0s8" in up[0]
    assert 'f "uplink_interface enp0s3 does not exist on this host"' in up[0]
    assert 'f "egress_interface enp0s8 does not exist on this host"' in up[0]


def test_the_mtu_is_explicit_by_default_and_overridable(three_peers: dict[str, Any]) -> None:
    """1420 = the Internet's 1500 less WireGuard over IPv6 (80): whatever MTU the host's own uplink has."""
    mesh = load_mesh(three_peers)
    assert {peer.mtu for peer in mesh.peers} == {1420}
    assert "\nMTU = 1420\n" in render_peer_config(mesh, "zhy", seeded_keys(mesh.names))
    three_peers["underlay_mtu"] = 9001
    assert {peer.mtu for peer in load_mesh(three_peers).peers} == {8921}
    three_peers["mtu"] = 1380
    three_peers["peers"][1]["mtu"] = 1280
    assert [peer.mtu for peer in load_mesh(three_peers).peers] == [1380, 1280, 1380]


def test_every_postup_has_one_postdown_per_family(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    mesh = load_mesh(three_peers)
    for name in mesh.names:
        config = parse_config(render_peer_config(mesh, name, seeded_keys(mesh.names)))
        restores = [command for command in config.get_all("PostUp") if "-restore -w 5 --noflush" in command]
        assert len(restores) == len(config.get_all("PostDown")) == 2
