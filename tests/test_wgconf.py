"""The wg-quick file format: rendering details, the parser, and what both refuse."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import seeded_keys
from wgmesh.mesh import load_mesh
from wgmesh.mesh.keys import public_key
from wgmesh.mesh.render import MeshKeys, build_peer_config, config_digest, forwarding_rules, render_all, render_peer_config
from wgmesh.mesh.wgconf import ConfigSyntaxError, WgConfig, WgPeerSection, format_config, parse_config


def render(raw: dict[str, Any], name: str, **kwargs: Any) -> WgConfig:
    mesh = load_mesh(raw)
    return parse_config(render_peer_config(mesh, name, seeded_keys(mesh.names, **kwargs)))


def test_example_interface_and_peers(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    keys = seeded_keys(mesh.names)
    config = parse_config(render_peer_config(mesh, "zhy", keys))
    assert config.get("Address") == "10.255.0.1/24"
    assert config.get("PrivateKey") == keys.private_key("zhy")
    assert config.get("ListenPort") == "51820"
    assert config.get("MTU") == "1420", "explicit: wg-quick would derive it from the uplink (8921 on a 9001 link)"
    assert [section.name for section in config.peers] == ["bjs", "pub"]
    pub = config.peer("pub")
    assert pub.get("PublicKey") == public_key(keys.private_key("pub"))
    assert pub.get("AllowedIPs") == "10.255.0.3/32, 192.168.30.0/24, 10.7.1.0/24"
    assert pub.get("Endpoint") == "198.51.100.30:51820"
    assert pub.get("PresharedKey") == parse_config(render_peer_config(mesh, "pub", keys)).peer("zhy").get("PresharedKey")
    assert pub.get("PersistentKeepalive") is None, "both sides have endpoints"


def test_postup_enables_forwarding_and_nat_on_the_egress_interface(three_peers: dict[str, Any]) -> None:
    config = render(three_peers, "zhy")
    up = config.get_all("PostUp")
    assert up[0].startswith(": wgmesh-check;") and up[1] == "sysctl -q -w net.ipv4.ip_forward=1"
    masquerade = re.findall(r'"(-A wgmesh-%i-nat [^"]*)"', up[2])
    assert len(masquerade) == 2  # marked tunnel traffic and the tunnel network, towards its own subnet
    assert all("-o $l1 -d 192.168.10.0/24" in rule for rule in masquerade) and "; l1=ens5; " in up[2]
    assert "l1=$(ip -o -4 route get 192.168.30.255 " in render(three_peers, "pub").get_all("PostUp")[2], "pub's is found on its host"
    down = config.get_all("PostDown")
    assert len(down) == 1 and down[0].endswith("; true")


def test_nat_false_keeps_forwarding_but_drops_masquerade(three_peers: dict[str, Any]) -> None:
    three_peers["peers"][0]["nat"] = False
    up = render(three_peers, "zhy").get_all("PostUp")
    assert not any("MASQUERADE" in command for command in up) and any("FORWARD" in command for command in up)


def test_optional_interface_fields_and_user_hooks(three_peers: dict[str, Any]) -> None:
    three_peers["mtu"] = 1420
    three_peers["peers"][0].update(dns=["10.0.0.2", "corp.internal"], table="off", post_up=["echo up %i"], post_down=["echo down"])
    config = render(three_peers, "zhy")
    assert config.get("MTU") == "1420" and config.get("DNS") == "10.0.0.2, corp.internal" and config.get("Table") == "off"
    assert config.get_all("PostUp")[-1] == "echo up %i" and config.get_all("PostDown")[-1] == "echo down"


def test_keepalive_only_where_a_side_has_no_endpoint(three_peers: dict[str, Any]) -> None:
    del three_peers["peers"][2]["endpoint"]  # pub is behind NAT
    assert render(three_peers, "pub").peer("zhy").get("PersistentKeepalive") == "25"
    zhy = render(three_peers, "zhy")
    assert zhy.peer("pub").get("Endpoint") is None and zhy.peer("pub").get("PersistentKeepalive") == "25"
    assert zhy.peer("bjs").get("PersistentKeepalive") is None
    three_peers["peers"][0]["keepalive"] = 0
    assert render(three_peers, "zhy").peer("pub").get("PersistentKeepalive") is None, "0 turns it off"


def test_ipv6_mesh_uses_ip6tables_and_host_routes(three_peers: dict[str, Any]) -> None:
    three_peers["network"] = ["10.255.0.0/24", "fd00:255::/64"]
    three_peers["peers"][1]["address"] = ["10.255.0.2", "fd00:255::2"]
    three_peers["peers"][1]["subnets"].append("fd00:20::/64")
    three_peers["peers"][1]["endpoint"] = "[2001:db8::20]:51820"
    config = render(three_peers, "zhy")
    assert config.get("Address").startswith("10.255.0.1/24, fd00:255:")
    assert config.peer("bjs").get("AllowedIPs") == "10.255.0.2/32, fd00:255::2/128, 192.168.20.0/24, fd00:20::/64"
    assert config.peer("bjs").get("Endpoint") == "[2001:db8::20]:51820"
    up = config.get_all("PostUp")
    assert "sysctl -q -w net.ipv6.conf.all.forwarding=1" in up
    (restore,) = [command for command in up if "| ip6tables-restore " in command]
    assert '"-A wgmesh-%i-fwd -i %i -o %i -j ACCEPT"' in restore and "MASQUERADE" not in restore, "zhy has no IPv6 subnet"


def test_public_only_peer_is_listed_without_preshared_key(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    full = seeded_keys(mesh.names)
    keys = MeshKeys({"zhy": full.private_key("zhy"), "bjs": full.private_key("bjs")}, full.mesh_secret, {"pub": full.public_key("pub")})
    config = build_peer_config(mesh, "zhy", keys)
    assert config.peer("pub").get("PublicKey") == full.public_key("pub") and config.peer("pub").get("PresharedKey") is None
    assert config.peer("bjs").get("PresharedKey") == full.preshared_key("zhy", "bjs")


def test_rendering_is_byte_stable(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    first = render_all(mesh, seeded_keys(mesh.names))
    again = render_all(load_mesh(three_peers), seeded_keys(mesh.names))
    assert first == again and list(first) == ["zhy", "bjs", "pub"]
    assert config_digest(first["zhy"]) == config_digest(again["zhy"]) != config_digest(first["bjs"])
    assert first["zhy"].endswith("\n") and "\r" not in first["zhy"] and "\n\n\n" not in first["zhy"]


def test_forwarding_rules_pair_up_and_down(three_peers: dict[str, Any]) -> None:
    mesh = load_mesh(three_peers)
    up, down = forwarding_rules(mesh, mesh.peer("bjs"))
    chains = sorted(set(re.findall(r"wgmesh-%i-[a-z]+", up[2])))
    assert chains == ["wgmesh-%i-fwd", "wgmesh-%i-in", "wgmesh-%i-mangle", "wgmesh-%i-nat"]
    assert down == [" ".join(down[0].split())] and all(f" -X {chain} " in down[0] for chain in chains)


def test_parser_reads_wg_meshconf_and_handwritten_files() -> None:
    text = """[Interface]
# Name: node1
Address = 10.0.0.1/24
PrivateKey = KEY=   # an inline comment, cut like wg does
listenport=51820

[Peer]
# Name: node2
PublicKey = PUB=
AllowedIPs = 10.0.0.2/32,10.0.1.0/24
[Peer]
#Name=node3
PublicKey = PUB3=
"""
    config = parse_config(text)
    assert config.get("PrivateKey") == "KEY=" and config.get("listenport") == "51820"
    assert [section.name for section in config.peers] == ["node2", "node3"]
    assert config.peer("node2").get("AllowedIPs") == "10.0.0.2/32,10.0.1.0/24"


def test_parser_does_not_take_other_comments_for_names() -> None:
    config = parse_config("[Interface]\nAddress = 10.0.0.1/24\n[Peer]\n# Namespace = x\n# Name =\nPublicKey = P=\n")
    assert config.peers[0].name is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Address = 1\n", "line 1: an entry before any"),
        ("[Interface]\n[Interface]\n", "line 2: a second [Interface]"),
        ("[Interface]\n[Peers]\n", "line 2: unknown section"),
        ("[Interface]\nnonsense\n", "line 2: expected 'Key = Value'"),
        ("[Peer]\nPublicKey = P=\n", "no [Interface] section"),
    ],
)
def test_parser_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigSyntaxError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(text)


@pytest.mark.parametrize("value", ["a # b", "two\nlines", " padded", "trailing "])
def test_format_refuses_values_that_would_not_read_back(value: str) -> None:
    with pytest.raises(ValueError):
        format_config(WgConfig((("PostUp", value),), ()))
    with pytest.raises(ValueError):
        format_config(WgConfig((("Address", "10.0.0.1/24"),), (WgPeerSection(None, (("Endpoint", value),)),)))


def test_header_is_comment_only_and_ignored_by_the_parser() -> None:
    config = WgConfig((("Address", "10.0.0.1/24"),), (WgPeerSection("b", (("PublicKey", "P="),)),))
    text = format_config(config, header="line one\n\nline three")
    assert text.startswith("# line one\n#\n# line three\n[Interface]\n") and parse_config(text) == config
