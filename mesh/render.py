"""Rendering one peer's wg-quick configuration from a validated mesh and its key material.

The rendered file is what ``pulumi up`` installs, what the CLI writes and what the lab runs, so it is built
only here. PostUp/PostDown turn on forwarding and NAT idempotently: every iptables rule is added only if
``iptables -C`` does not find it, so ``wg-quick`` restarts never stack duplicate rules. NAT costs a fixed handful
of rules per file, not one per remote subnet (see :func:`forwarding_rules`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from mesh.keys import PresharedKeyDeriver, public_key
from mesh.model import IPNetwork, Mesh, Peer
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
    # Each pair's key is asked for by both of its peers' configs: derive it once (not part of equality or repr).
    _psk_cache: dict[tuple[str, str], str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _deriver: list[PresharedKeyDeriver] = field(default_factory=list, init=False, repr=False, compare=False)

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
        return self._pair_key(self.public_key(a), self.public_key(b))

    def _pair_key(self, public_a: str, public_b: str) -> str:
        """The preshared key of two peers whose private keys we hold, by their public keys; derived once per pair."""
        assert self.mesh_secret is not None
        pair = (public_a, public_b) if public_a < public_b else (public_b, public_a)
        cached = self._psk_cache.get(pair)
        if cached is None:
            if not self._deriver:
                self._deriver.append(PresharedKeyDeriver(self.mesh_secret))
            cached = self._psk_cache[pair] = self._deriver[0](*pair)
        return cached


@lru_cache(maxsize=65536)
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

    NAT (MASQUERADE on the egress interface of everything that came through the tunnel) lets hosts in this peer's
    VPC answer remote peers without routes back; with ``nat: false`` (Kubernetes overlays, or routes in the VPC
    route table) sources stay visible. Per IP family, and whatever the size of the mesh, NAT is three rules:

    * mangle FORWARD ``-i %i -o <egress> -j MARK --set-xmark <bit>/<bit>``: tags what the tunnel forwards to the
      egress interface with the mesh's ``nat_mark`` bit, leaving the mark's other bits alone. WireGuard only
      accepts from a peer sources inside that peer's AllowedIPs, so "came through %i" is exactly "sourced in the
      tunnel network or another peer's subnets", which is what one ``-s`` rule per remote subnet used to say.
      Marking in FORWARD (not PREROUTING) happens after the routing decision and only on packets leaving through
      the egress interface, so the bit can never steer ``ip rule fwmark`` lookups.
    * nat POSTROUTING ``-o <egress> -m mark --mark <bit>/<bit> -j MASQUERADE``: NATs the tagged connections.
    * nat POSTROUTING ``-s <tunnel network> -o <egress> -j MASQUERADE``: the host's own traffic sourced from its
      tunnel address, which never crosses FORWARD.

    The mark and masquerade rules are present for a family only when some remote peer has addresses of it.
    """
    families = {address.version for address in local.addresses} | set(mesh.subnet_owners)
    remote = frozenset(
        family
        for family in families
        if any(network.version == family for network in mesh.networks) or mesh.subnet_owners.get(family, frozenset()) - {local.name}
    )
    networks = tuple(_text(network) for network in mesh.networks)
    up, down = _forwarding_rules(tuple(sorted(families)), remote, networks, local.egress_interface if local.nat else None, mesh.nat_mark)
    return list(up), list(down)


@lru_cache(maxsize=1024)
def _forwarding_rules(
    families: tuple[int, ...], remote: frozenset[int], networks: tuple[str, ...], egress: str | None, mark: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """:func:`forwarding_rules` from what they depend on, so peers sharing an egress interface share the text."""
    up: list[str] = []
    down: list[str] = []
    bit = f"{mark:#x}/{mark:#x}"
    for family in families:
        binary = "iptables" if family == 4 else "ip6tables"
        up.append(f"sysctl -q -w net.ipv{family}.{'ip_forward' if family == 4 else 'conf.all.forwarding'}=1")
        rules = [("filter", "FORWARD", "-i %i -j ACCEPT"), ("filter", "FORWARD", "-o %i -j ACCEPT")]
        if egress is not None:
            if family in remote:
                rules.append(("mangle", "FORWARD", f"-i %i -o {egress} -j MARK --set-xmark {bit}"))
                rules.append(("nat", "POSTROUTING", f"-o {egress} -m mark --mark {bit} -j MASQUERADE"))
            sources = [network for network in networks if (":" in network) == (family == 6)]
            rules += [("nat", "POSTROUTING", f"-s {source} -o {egress} -j MASQUERADE") for source in sources]
        for table, chain, match in rules:
            add, remove = _iptables(binary, table, chain, match)
            up.append(add)
            down.append(remove)
    return tuple(up), tuple(down)


@lru_cache(maxsize=65536)
def _text(network: IPNetwork) -> str:
    """``str(network)``, memoized: an N-peer mesh prints each subnet's text N-1 times (in every other AllowedIPs)."""
    return str(network)


def build_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> WgConfig:
    """The structured wg-quick config of peer ``name``: its interface and one ``[Peer]`` per other member."""
    return _build_peer_config(mesh, name, keys, {})


def _build_peer_config(mesh: Mesh, name: str, keys: MeshKeys, texts: dict[str, tuple[str, str, str | None, bool]]) -> WgConfig:
    """:func:`build_peer_config`, sharing each remote's AllowedIPs and Endpoint text across the configs of one mesh."""
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
    local_public = keys.public_key(name)
    with_psk = keys.mesh_secret is not None and name in keys.private_keys
    for remote in mesh.others(name):
        remote_texts = texts.get(remote.name)
        if remote_texts is None:
            allowed = ", ".join(_text(network) for network in remote.allowed_ips)
            endpoint = None if remote.endpoint is None else str(remote.endpoint)
            remote_texts = texts[remote.name] = (keys.public_key(remote.name), allowed, endpoint, remote.name in keys.private_keys)
        entries: list[Entry] = [("PublicKey", remote_texts[0])]
        if with_psk and remote_texts[3]:
            entries.append(("PresharedKey", keys._pair_key(local_public, remote_texts[0])))
        entries.append(("AllowedIPs", remote_texts[1]))
        if remote_texts[2] is not None:
            entries.append(("Endpoint", remote_texts[2]))
        keepalive = mesh.keepalive_between(local, remote)
        if keepalive:
            entries.append(("PersistentKeepalive", str(keepalive)))
        sections.append(WgPeerSection(remote.name, tuple(entries)))
    return WgConfig(tuple(interface), tuple(sections))


def header_for(mesh: Mesh, name: str) -> str:
    return f"{mesh.interface}.conf of peer {name}, generated by wgmesh: edits are overwritten.\nKeep mode 0600: it holds private keys."


def render_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> str:
    """The wg-quick text of peer ``name``. Byte-identical for the same mesh and keys."""
    return format_config(build_peer_config(mesh, name, keys), header=header_for(mesh, name), verify=False)


def render_all(mesh: Mesh, keys: MeshKeys) -> dict[str, str]:
    """Every peer's config, keyed by peer name, in mesh order."""
    texts: dict[str, tuple[str, str, str | None, bool]] = {}
    return {
        peer.name: format_config(_build_peer_config(mesh, peer.name, keys, texts), header=header_for(mesh, peer.name), verify=False)
        for peer in mesh.peers
    }


def config_digest(text: str) -> str:
    """A short stable hash of a rendered config: the Pulumi trigger that re-installs only changed peers."""
    return hashlib.sha256(text.encode()).hexdigest()
