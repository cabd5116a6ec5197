"""Smoke tests of the pure core's contract; the thorough suites live beside this file."""

from wgmesh.mesh import MeshKeys, load_mesh, render_all
from wgmesh.mesh.keys import generate_mesh_secret, generate_private_key
from wgmesh.mesh.wgconf import parse_config

RAW = {
    "network": "10.255.0.0/24",
    "peers": [
        {"name": "zhy", "address": "10.255.0.1", "endpoint": "203.0.113.10:51820", "subnets": ["192.168.10.0/24"]},
        {"name": "bjs", "address": "10.255.0.2", "endpoint": "203.0.113.20:51820", "subnets": ["192.168.20.0/24"]},
        {"name": "pub", "address": "10.255.0.3", "endpoint": "203.0.113.30:51820", "subnets": ["192.168.30.0/24", "10.7.1.0/24"]},
    ],
}


def test_every_peer_lists_every_other_peer_with_its_routes() -> None:
    mesh = load_mesh(RAW)
    keys = MeshKeys({peer.name: generate_private_key() for peer in mesh.peers}, generate_mesh_secret())
    configs = {name: parse_config(text) for name, text in render_all(mesh, keys).items()}
    assert configs["zhy"].peer("pub").get("AllowedIPs") == "10.255.0.3/32, 192.168.30.0/24, 10.7.1.0/24"
    assert configs["zhy"].peer("pub").get("PresharedKey") == configs["pub"].peer("zhy").get("PresharedKey")
    assert [section.name for section in configs["bjs"].peers] == ["zhy", "pub"]
