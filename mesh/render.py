"""Rendering one peer's wg-quick configuration from a validated mesh and its key material.

The rendered file is what ``pulumi up`` installs, what the CLI writes and what the lab runs, so it is built
only here. PostUp/PostDown turn on forwarding and NAT idempotently: every iptables rule is added only if
``iptables -C`` does not find it, so ``wg-quick`` restarts never stack duplicate rules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh.keys import derive_preshared_key, public_key
from mesh.model import Mesh, Peer
from mesh.wgconf import Entry, WgConfig, WgPeerSection, format_config

MARK = "wgmesh"


@dataclass(frozen=True)
class MeshKeys:
    """The secrets a mesh needs: every peer's private key and the one secret preshared keys derive from.

    ``mesh_secret`` may be ``None`` to render without preshared keys (WireGuard's default). ``public_keys`` names
    peers keyed elsewhere (their owner ran ``wg genkey``): the others' configs can list them, their own config
    cannot be rendered, and pairs with them get no derived preshared key, since their owner could not derive it.
    """

    private_keys: Mapping[str, str]
    mesh_secret: bytes | None = None
    public_keys: Mapping[str, str] = field(default_factory=dict)

    def private_key(self, name: str) -> str:
        try:
            return self.private_keys[name]
        except KeyError:
            raise KeyError(f"no private key for peer {name!r}") from None

    def public_key(self, name: str) -> str:
        if name not in self.private_keys and name in self.public_keys:
            return self.public_keys[name]
        return public_key(self.private_key(name))

    def preshared_key(self, a: str, b: str) -> str | None:
        if self.mesh_secret is None or a not in self.private_keys or b not in self.private_keys:
            return None
        return derive_preshared_key(self.mesh_secret, self.public_key(a), self.public_key(b))


def _iptables(binary: str, table: str, chain: str, match: str) -> tuple[str, str]:
    """An idempotent (PostUp, PostDown) pair for one rule: check (-C) before append (-A); delete tolerates absence."""
    where = f"-t {table} " if table != "filter" else ""
    spec = f"{chain} {match} -m comment --comment {MARK}"
    return (
        f"{binary} {where}-C {spec} 2>/dev/null || {binary} {where}-A {spec}",
        f"{binary} {where}-D {spec} 2>/dev/null || true",
    )


def forwarding_rules(mesh: Mesh, local: Peer) -> tuple[list[str], list[str]]:
    """PostUp and PostDown commands: forwarding on, FORWARD accepted through %i, and NAT of mesh traffic.

    NAT (MASQUERADE on the egress interface, only for sources from the tunnel networks and the other peers'
    subnets) lets hosts in this peer's VPC answer remote peers without routes back; with ``nat: false``
    (Kubernetes overlays, or routes in the VPC route table) sources stay visible.
    """
    up: list[str] = []
    down: list[str] = []
    families = sorted({address.version for address in local.addresses} | {subnet.version for peer in mesh.peers for subnet in peer.subnets})
    for family in families:
        binary = "iptables" if family == 4 else "ip6tables"
        up.append(f"sysctl -q -w net.ipv{family}.{'ip_forward' if family == 4 else 'conf.all.forwarding'}=1")
        rules = [("filter", "FORWARD", "-i %i -j ACCEPT"), ("filter", "FORWARD", "-o %i -j ACCEPT")]
        if local.nat:
            sources = [str(network) for network in mesh.networks if network.version == family]
            sources += [str(subnet) for peer in mesh.others(local.name) for subnet in peer.subnets if subnet.version == family]
            rules += [("nat", "POSTROUTING", f"-s {source} -o {local.egress_interface} -j MASQUERADE") for source in sources]
        for table, chain, match in rules:
            add, remove = _iptables(binary, table, chain, match)
            up.append(add)
            down.append(remove)
    return up, down


def build_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> WgConfig:
    """The structured wg-quick config of peer ``name``: its interface and one ``[Peer]`` per other member."""
    local = mesh.peer(name)
    interface: list[Entry] = [("Address", ", ".join(str(address) for address in local.addresses))]
    interface.append(("PrivateKey", keys.private_key(name)))
    interface.append(("ListenPort", str(local.listen_port)))
    if local.mtu is not None:
        interface.append(("MTU", str(local.mtu)))
    if local.dns:
        interface.append(("DNS", ", ".join(local.dns)))
    if local.table is not None:
        interface.append(("Table", local.table))
    up, down = forwarding_rules(mesh, local)
    interface += [("PostUp", command) for command in (*up, *local.post_up)]
    interface += [("PostDown", command) for command in (*down, *local.post_down)]

    sections: list[WgPeerSection] = []
    for remote in mesh.others(name):
        entries: list[Entry] = [("PublicKey", keys.public_key(remote.name))]
        psk = keys.preshared_key(name, remote.name)
        if psk is not None:
            entries.append(("PresharedKey", psk))
        entries.append(("AllowedIPs", ", ".join(str(network) for network in remote.allowed_ips)))
        if remote.endpoint is not None:
            entries.append(("Endpoint", str(remote.endpoint)))
        keepalive = mesh.keepalive_between(local, remote)
        if keepalive:
            entries.append(("PersistentKeepalive", str(keepalive)))
        sections.append(WgPeerSection(remote.name, tuple(entries)))
    return WgConfig(tuple(interface), tuple(sections))


def header_for(mesh: Mesh, name: str) -> str:
    return f"{mesh.interface}.conf of peer {name}, generated by wgmesh: edits are overwritten.\nKeep mode 0600: it holds private keys."


def render_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> str:
    """The wg-quick text of peer ``name``. Byte-identical for the same mesh and keys."""
    return format_config(build_peer_config(mesh, name, keys), header=header_for(mesh, name))


def render_all(mesh: Mesh, keys: MeshKeys) -> dict[str, str]:
    """Every peer's config, keyed by peer name, in mesh order."""
    return {peer.name: render_peer_config(mesh, peer.name, keys) for peer in mesh.peers}


def config_digest(text: str) -> str:
    """A short stable hash of a rendered config: the Pulumi trigger that re-installs only changed peers."""
    return hashlib.sha256(text.encode()).hexdigest()
