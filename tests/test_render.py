"""The NAT/forwarding hooks of rendered files: a fixed handful of rules per family, whatever the size of the mesh.

Each file NATs "everything that came through the tunnel and leaves by the egress interface" with a mark bit set in
mangle FORWARD and one MASQUERADE on that bit, plus one MASQUERADE for the host's own tunnel-sourced traffic. These
tests pin the exact rules, when each family gets them, and that their number does not grow with the mesh.
"""

from __future__ import annotations

from typing import Any

import pytest

from mesh import load_mesh
from mesh.render import forwarding_rules, render_all, render_peer_config
from mesh.wgconf import parse_config
from tests.conftest import seeded_keys

COMMENT = "-m comment --comment wgmesh"


def hooks(raw: dict[str, Any], name: str) -> tuple[list[str], list[str]]:
    mesh = load_mesh(raw)
    return forwarding_rules(mesh, mesh.peer(name))


def added_rules(up: list[str]) -> list[str]:
    """The rule specs PostUp appends (the part after ``-A``), in order."""
    return [command.split(" -A ", 1)[1] for command in up if " -A " in command]


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
    assert up == [
        "sysctl -q -w net.ipv4.ip_forward=1",
        f"iptables -C FORWARD -i %i -j ACCEPT {COMMENT} 2>/dev/null || iptables -A FORWARD -i %i -j ACCEPT {COMMENT}",
        f"iptables -C FORWARD -o %i -j ACCEPT {COMMENT} 2>/dev/null || iptables -A FORWARD -o %i -j ACCEPT {COMMENT}",
        f"iptables -t mangle -C FORWARD -i %i -o ens5 -j MARK --set-xmark 0x1000000/0x1000000 {COMMENT} 2>/dev/null"
        f" || iptables -t mangle -A FORWARD -i %i -o ens5 -j MARK --set-xmark 0x1000000/0x1000000 {COMMENT}",
        f"iptables -t nat -C POSTROUTING -o ens5 -m mark --mark 0x1000000/0x1000000 -j MASQUERADE {COMMENT} 2>/dev/null"
        f" || iptables -t nat -A POSTROUTING -o ens5 -m mark --mark 0x1000000/0x1000000 -j MASQUERADE {COMMENT}",
        f"iptables -t nat -C POSTROUTING -s 10.255.0.0/24 -o ens5 -j MASQUERADE {COMMENT} 2>/dev/null"
        f" || iptables -t nat -A POSTROUTING -s 10.255.0.0/24 -o ens5 -j MASQUERADE {COMMENT}",
    ]
    assert down == [command.split(" 2>/dev/null || ")[1].replace(" -A ", " -D ", 1) + " 2>/dev/null || true" for command in up[1:]]


def test_nat_rules_do_not_grow_with_the_mesh() -> None:
    small_up, small_down = hooks(big_mesh(3), "p0")
    large_up, large_down = hooks(big_mesh(300, subnets_per_peer=5), "p0")
    assert len(small_up) == len(large_up) == 6 and len(small_down) == len(large_down) == 5
    assert small_up == large_up and small_down == large_down, "the same text: NAT does not depend on the other peers"
    assert not any("172." in command for command in large_up), "no rule names a subnet"


def test_every_peer_of_a_large_mesh_has_three_masquerade_lines_at_most() -> None:
    mesh = load_mesh(big_mesh(120))
    for text in render_all(mesh, seeded_keys(mesh.names, psk=False)).values():
        assert sum("MASQUERADE" in line for line in text.splitlines()) == 4  # 2 rules, each in PostUp and PostDown


@pytest.mark.parametrize("mark", [0x10, 0x80000000, "0x2000000"])
def test_nat_mark_is_the_mesh_field(three_peers: dict[str, Any], mark: Any) -> None:
    three_peers["nat_mark"] = mark
    bit = f"{int(mark, 0) if isinstance(mark, str) else mark:#x}"
    up, _ = hooks(three_peers, "bjs")
    assert f"--set-xmark {bit}/{bit}" in up[3] and f"-m mark --mark {bit}/{bit} -j MASQUERADE" in up[4]


def test_nat_false_keeps_forwarding_and_drops_mark_and_masquerade(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["nat"] = False
    up, down = hooks(three_peers, "zhy")
    assert added_rules(up) == [f"FORWARD -i %i -j ACCEPT {COMMENT}", f"FORWARD -o %i -j ACCEPT {COMMENT}"]
    assert len(down) == 2


def test_dual_stack_gets_the_same_three_rules_with_ip6tables(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    three_peers["peers"][1]["subnets"].append("fd00:20::/64")
    up, down = hooks(three_peers, "zhy")
    v6 = [command for command in up if command.startswith(("ip6tables", "sysctl -q -w net.ipv6"))]
    assert v6[0] == "sysctl -q -w net.ipv6.conf.all.forwarding=1"
    assert [rule.replace(COMMENT, "").strip() for rule in added_rules(v6)] == [
        "FORWARD -i %i -j ACCEPT",
        "FORWARD -o %i -j ACCEPT",
        "FORWARD -i %i -o ens5 -j MARK --set-xmark 0x1000000/0x1000000",
        "POSTROUTING -o ens5 -m mark --mark 0x1000000/0x1000000 -j MASQUERADE",
        "POSTROUTING -s fd00:255::/64 -o ens5 -j MASQUERADE",
    ]
    assert all(" -t mangle " in command for command in v6 if "MARK" in command)
    assert len(down) == len(up) - 3, "the sysctls (forwarding x2, accept_ra) have no PostDown"


ACCEPT_RA = '[ "$(sysctl -n net/ipv6/conf/{0}/accept_ra 2>/dev/null)" != 1 ] || sysctl -q -w net/ipv6/conf/{0}/accept_ra=2'


def test_ipv6_keeps_router_advertisements_on_the_egress_interface_before_forwarding(three_peers: dict[str, Any]) -> None:
    """accept_ra 1 -> 2 on the uplink, right before IPv6 forwarding turns on (which drops RA routes at once)."""
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    up, down = hooks(three_peers, "zhy")
    index = up.index("sysctl -q -w net.ipv6.conf.all.forwarding=1")
    assert up[index - 1] == ACCEPT_RA.format("ens5")
    assert sum("accept_ra" in command for command in up) == 1 and not any("accept_ra" in command for command in down)
    pub_up, _ = hooks(three_peers, "pub")  # no egress_interface: the default uplink
    assert ACCEPT_RA.format("eth0") in pub_up
    three_peers["peers"][0] |= {"nat": False, "egress_interface": "eth0.100"}  # the uplink all the same; a VLAN name
    nat_off, _ = hooks(three_peers, "zhy")
    assert nat_off[nat_off.index("sysctl -q -w net.ipv6.conf.all.forwarding=1") - 1] == ACCEPT_RA.format("eth0.100")


def test_an_ipv4_mesh_leaves_router_advertisements_alone(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    for text in render_all(mesh, seeded_keys(mesh.names)).values():
        assert "accept_ra" not in text and "net.ipv6" not in text


def test_family_routed_only_by_remote_subnets_gets_mark_but_no_tunnel_source_rule(three_peers: dict[str, Any]) -> None:
    """IPv6 subnets behind bjs but no IPv6 tunnel network: IPv6 from the tunnel comes only from bjs's subnets."""
    three_peers["peers"][1]["subnets"].append("fd00:20::/64")
    up, _ = hooks(three_peers, "zhy")
    v6 = [rule for rule in added_rules(up) if "%i -o ens5" in rule or "POSTROUTING" in rule]
    assert sum("--set-xmark" in rule for rule in v6) == 2 and not any("-s fd00" in rule for rule in v6)
    bjs_up, _ = hooks(three_peers, "bjs")
    assert sum(command.startswith("ip6tables") and "MARK" in command for command in bjs_up) == 0, "bjs's own subnet: nothing arrives"
    assert "sysctl -q -w net.ipv6.conf.all.forwarding=1" in bjs_up, "it still forwards its own IPv6 subnet to the tunnel"


def test_every_postup_rule_has_a_postdown_and_a_comment(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    mesh = load_mesh(three_peers)
    for name in mesh.names:
        config = parse_config(render_peer_config(mesh, name, seeded_keys(mesh.names)))
        added = [command.split(" 2>/dev/null || ")[1] for command in config.get_all("PostUp") if " -C " in command]
        removed = [command.removesuffix(" 2>/dev/null || true").replace(" -D ", " -A ", 1) for command in config.get_all("PostDown")]
        assert added == removed and all(command.endswith(COMMENT) for command in added)
        checked = [command.split(" 2>/dev/null")[0].replace(" -C ", " -A ", 1) for command in config.get_all("PostUp") if " -C " in command]
        assert checked == added, "each rule is checked with exactly the spec it appends"
