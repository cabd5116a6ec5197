"""Rendering one peer's wg-quick configuration from a validated mesh and its key material.

The rendered file is what ``pulumi up`` installs, what the CLI writes and what the lab runs, so it is built
only here. PostUp/PostDown turn on forwarding and NAT idempotently: every iptables rule is added only if
``iptables -C`` does not find it, so ``wg-quick`` restarts never stack duplicate rules. NAT costs a fixed handful
of rules per file, not one per remote subnet (see :func:`forwarding_rules`).

Two peers behind NAT talk through a relay (:mod:`wgmesh.mesh.relays`): in each one's file the other has no ``[Peer]``
section, and its tunnel addresses and subnets are listed in the relay's ``AllowedIPs`` instead (WireGuard routes a
prefix to one peer only). The relay's own file is unchanged: it lists both, and its ``FORWARD -i %i`` rule
forwards ``wg0 -> wg0`` without NAT (the mark and MASQUERADE rules only match traffic leaving by the egress
interface), so each side sees the other's real tunnel address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_network

from wgmesh.mesh.keys import PresharedKeyDeriver, public_key
from wgmesh.mesh.model import IPNetwork, Mesh, Peer
from wgmesh.mesh.wgconf import NAME_COMMENT, Entry, WgConfig, WgPeerSection, format_config

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
        pair = (public_a, public_b) if public_a < public_b else (public_b, public_a)
        cached = self._psk_cache.get(pair)
        if cached is None:
            cached = self._psk_cache[pair] = self._derive()(*pair)
        return cached

    def _derive(self) -> PresharedKeyDeriver:
        """The deriver of this mesh secret's preshared keys, made once (its HKDF extract step runs only then)."""
        assert self.mesh_secret is not None
        if not self._deriver:
            self._deriver.append(PresharedKeyDeriver(self.mesh_secret))
        return self._deriver[0]


CHAIN_PREFIX = "wgmesh-%i-"
# Where each of wgmesh's chains is jumped to from, first thing: (table, built-in chain, our chain's suffix).
JUMPS = (("filter", "INPUT", "in"), ("filter", "FORWARD", "fwd"), ("mangle", "FORWARD", "mangle"), ("nat", "POSTROUTING", "nat"))
# The text of the interface a route goes through, from `ip -o route ...` output (POSIX sed: hooks run anywhere).
_DEV = "sed -n 's/.* dev \\([^ ]*\\).*/\\1/p' | head -n 1"


def _detect(argv: str) -> str:
    return f"$(ip -o {argv} 2>/dev/null | {_DEV})"


def _resolve(uplink: str | None, egress: str | None, subnets: tuple[str, ...]) -> str:
    """Shell that sets ``u`` (the uplink) and ``l1``, ``l2``, ... (the interface of each own subnet, in order):
    the configured names, else found on the host: the uplink is the interface of the default route (IPv4, else
    IPv6), a subnet's interface the one its last address is routed through."""
    parts = [f"u={uplink}" if uplink else f'u={_detect("-4 route show default")}; [ -n "$u" ] || u={_detect("-6 route show default")}']
    for index, subnet in enumerate(subnets, 1):
        family = "-6" if ":" in subnet else "-4"
        # Its last address: never the host's own in practice, and not IPv6's subnet-router anycast address (the
        # first), which the local table routes to lo on a host with an address in the subnet.
        probe = ip_network(subnet).broadcast_address
        parts.append(f"l{index}={egress}" if egress else f"l{index}={_detect(f'{family} route get {probe}')}")
    return "; ".join(parts)


def _check(uplink: str | None, egress: str | None, subnets: tuple[str, ...]) -> str:
    """The PostUp line that checks, before anything changes, that every interface the rules name exists here.

    It starts with ``: wgmesh-check;`` (a no-op), by which the install script knows it may run it before it
    applies a config: it changes nothing, and a config whose interfaces are wrong is refused there."""
    fail = "f() { echo \"wgmesh: $* (interfaces here: $(ls /sys/class/net | tr '\\n' ' '))\" >&2; exit 1; }"
    lines = [": wgmesh-check", fail, _resolve(uplink, egress, subnets)]
    if uplink:
        lines.append(f'ip link show dev "$u" >/dev/null 2>&1 || f "uplink_interface {uplink} does not exist on this host"')
    else:
        lines.append('[ -n "$u" ] || f "no default route to find the uplink by: set uplink_interface"')
    for index, subnet in enumerate(subnets, 1):
        if egress:
            if index == 1:
                lines.append(f'ip link show dev "$l1" >/dev/null 2>&1 || f "egress_interface {egress} does not exist on this host"')
            continue
        lines.append(f'case "$l{index}" in ""|lo|%i) f "no interface of this host routes subnet {subnet}: set egress_interface";; esac')
    return "; ".join(lines)


def forwarding_rules(mesh: Mesh, local: Peer) -> tuple[list[str], list[str]]:
    """PostUp and PostDown commands: forwarding on, and wgmesh's firewall in chains of its own, jumped to first.

    Per IP family, four chains named after the interface (``wgmesh-%i-in``, ``-fwd``, ``-mangle``, ``-nat``),
    filled in one atomic ``iptables-restore --noflush`` (refilled the same way on every sync: no moment without
    them) and jumped to from the first position of INPUT, FORWARD, mangle FORWARD and nat POSTROUTING, so that a
    host firewall's DROP policy or final REJECT (ufw, firewalld, Oracle's images) never sees mesh traffic first.
    They allow only what the mesh needs:

    * ``-in``: WireGuard's UDP port on the uplink, and pings arriving through the tunnel (verification);
    * ``-fwd``: tunnel to tunnel (a relay), tunnel to this peer's own subnets, own subnets to the tunnel; anything
      else arriving through the tunnel is dropped: no peer is an exit towards the rest of the world;
    * ``-mangle``: the TCP MSS of connections leaving through the tunnel clamped to its MTU (hosts behind a peer
      do not know the tunnel's MTU, and ICMP "fragmentation needed" is often filtered); with NAT, the ``nat_mark``
      bit on what the tunnel forwards to each own subnet;
    * ``-nat``: MASQUERADE, on the subnet's interface, of what carries the mark (came through this interface) and
      of the host's own traffic from its tunnel address, towards own subnets only.

    WireGuard only accepts from a peer sources inside that peer's AllowedIPs, so "came through %i" is exactly "sent
    by a peer from a mesh prefix". The uplink and each subnet's interface are the configured names, else found on
    the host when the hooks run (:func:`_resolve`); the first PostUp checks them (:func:`_check`). For IPv6, the
    uplink keeps accepting router advertisements first (:func:`keep_router_advertisements`).
    """
    families = {address.version for address in local.addresses} | set(mesh.subnet_owners)
    subnets = tuple(_text(subnet) for subnet in local.subnets)
    networks = tuple(_text(network) for network in mesh.networks)
    up, down = _forwarding_rules(
        tuple(sorted(families)),
        subnets,
        networks,
        local.uplink_interface,
        local.egress_interface,
        local.nat,
        local.listen_port,
        mesh.nat_mark,
    )
    return list(up), list(down)


def keep_router_advertisements(uplink: str) -> str:
    """PostUp command: the uplink keeps accepting IPv6 router advertisements once forwarding is on.

    ``accept_ra=1`` (the default) means "only while not forwarding": the moment ``net.ipv6.conf.all.forwarding``
    turns on, Linux drops the default routes learned from router advertisements on every interface with
    ``accept_ra=1`` (it does not even wait for their lifetime), and ignores the next advertisements; a host whose
    IPv6 default route comes by SLAAC (many clouds, home networks) loses its IPv6 uplink. So this runs *before*
    the forwarding sysctl and turns 1 into 2 ("accept even when forwarding"). It changes only a 1: a 0 (the
    operator configured the interface statically, or refuses advertisements) stays 0, and an absent interface or
    a host without IPv6 makes it a no-op. Idempotent, so wg-quick restarts and hitless re-syncs may repeat it.

    No PostDown: forwarding stays on when the interface goes down (nothing turns it off), so putting 1 back would
    bring the problem back; and with forwarding off, 2 behaves exactly like 1. The ``/`` form of the key keeps
    interface names with dots (VLANs such as ``eth0.100``) intact. ``uplink`` may be shell (``$u``).
    """
    key = f"net/ipv6/conf/{uplink}/accept_ra"
    return f'[ "$(sysctl -n {key} 2>/dev/null)" != 1 ] || sysctl -q -w {key}=2'


@lru_cache(maxsize=1024)
def _forwarding_rules(
    families: tuple[int, ...],
    subnets: tuple[str, ...],
    networks: tuple[str, ...],
    uplink: str | None,
    egress: str | None,
    nat: bool,
    port: int,
    mark: int,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """:func:`forwarding_rules` from what they depend on, so peers alike share the text."""
    resolve = _resolve(uplink, egress, subnets)
    up: list[str] = [_check(uplink, egress, subnets)]
    down: list[str] = []
    bit = f"{mark:#x}/{mark:#x}"
    for family in families:
        binary = "iptables" if family == 4 else "ip6tables"
        if family == 6:
            up.append(f"{resolve}; {keep_router_advertisements('$u')}")
        up.append(f"sysctl -q -w net.ipv{family}.{'ip_forward' if family == 4 else 'conf.all.forwarding'}=1")
        ping = "-p icmp --icmp-type echo-request" if family == 4 else "-p ipv6-icmp --icmpv6-type echo-request"
        chain = {suffix: CHAIN_PREFIX + suffix for _, _, suffix in JUMPS}
        rules = [
            f"-A {chain['in']} -i $u -p udp --dport {port} -j ACCEPT",
            f"-A {chain['in']} -i %i {ping} -j ACCEPT",
            f"-A {chain['fwd']} -i %i -o %i -j ACCEPT",
        ]
        own = [(index, subnet) for index, subnet in enumerate(subnets, 1) if (":" in subnet) == (family == 6)]
        for _, subnet in own:
            rules.append(f"-A {chain['fwd']} -i %i -d {subnet} -j ACCEPT")
            rules.append(f"-A {chain['fwd']} -o %i -s {subnet} -j ACCEPT")
        rules.append(f"-A {chain['fwd']} -i %i -j DROP")
        mangle = [f"-A {chain['mangle']} -o %i -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"]
        masquerade = []
        if nat:
            sources = [network for network in networks if (":" in network) == (family == 6)]
            for index, subnet in own:
                mangle.append(f"-A {chain['mangle']} -i %i -o $l{index} -d {subnet} -j MARK --set-xmark {bit}")
                masquerade.append(f"-A {chain['nat']} -o $l{index} -d {subnet} -m mark --mark {bit} -j MASQUERADE")
                masquerade += [f"-A {chain['nat']} -s {source} -o $l{index} -d {subnet} -j MASQUERADE" for source in sources]
        payload = [
            *("*filter", f":{chain['in']} - [0:0]", f":{chain['fwd']} - [0:0]", *rules, "COMMIT"),
            *("*mangle", f":{chain['mangle']} - [0:0]", *mangle, "COMMIT"),
            *("*nat", f":{chain['nat']} - [0:0]", *masquerade, "COMMIT"),
        ]
        spec = f"-m comment --comment {MARK} -j $3"
        jump = f"j() {{ {binary} -w 5 -t $1 -C $2 {spec} 2>/dev/null || {binary} -w 5 -t $1 -I $2 1 {spec}; }}"
        jumps = "; ".join(f"j {table} {builtin} {chain[suffix]}" for table, builtin, suffix in JUMPS)
        printed = " ".join(f'"{line}"' for line in payload)
        up.append(f"{resolve}; {jump}; printf '%s\\n' {printed} | {binary}-restore -w 5 --noflush || exit 1; {jumps}")
        undo = [
            f"while {binary} -w 5 -t {table} -D {builtin} -m comment --comment {MARK} -j {chain[suffix]} 2>/dev/null; do :; done"
            for table, builtin, suffix in JUMPS
        ]
        undo += [
            f"{binary} -w 5 -t {table} -F {name} 2>/dev/null; {binary} -w 5 -t {table} -X {name} 2>/dev/null"
            for table, _, suffix in JUMPS
            for name in (chain[suffix],)
        ]
        down.append("; ".join(undo) + "; true")
    return tuple(up), tuple(down)


@lru_cache(maxsize=65536)
def _text(network: IPNetwork) -> str:
    """``str(network)``, memoized: an N-peer mesh prints each subnet's text N-1 times (in every other AllowedIPs)."""
    return str(network)


def relay_routes(mesh: Mesh, name: str) -> dict[str, tuple[IPNetwork, ...]]:
    """Relay name -> the prefixes peer ``name`` routes through it besides the relay's own: the tunnel addresses and
    subnets of every peer it reaches through that relay, in mesh order. Empty for a peer with no relayed pair."""
    relayed = mesh.relayed.get(name)
    if not relayed:
        return {}
    routes: dict[str, list[IPNetwork]] = {}
    for peer in mesh.peers:
        relay = relayed.get(peer.name)
        if relay is not None:
            routes.setdefault(relay, []).extend(peer.allowed_ips)
    return {relay: tuple(prefixes) for relay, prefixes in routes.items()}


def build_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> WgConfig:
    """The structured wg-quick config of peer ``name``: its interface and one ``[Peer]`` per member it talks to
    directly (every other one but those it reaches through a relay, whose prefixes its relay's section carries)."""
    local = mesh.peer(name)
    sections: list[WgPeerSection] = []
    local_public = keys.public_key(name)
    with_psk = keys.mesh_secret is not None and name in keys.private_keys
    interface = _interface_entries(mesh, local, keys)
    relayed = mesh.relayed.get(name, {})
    carried = relay_routes(mesh, name)
    for remote in mesh.others(name):
        if remote.name in relayed:
            continue
        public = keys.public_key(remote.name)
        entries: list[Entry] = [("PublicKey", public)]
        if with_psk and remote.name in keys.private_keys:
            entries.append(("PresharedKey", keys._pair_key(local_public, public)))
        allowed = remote.allowed_ips + carried.get(remote.name, ())
        entries.append(("AllowedIPs", ", ".join(_text(network) for network in allowed)))
        if remote.endpoint is not None:
            entries.append(("Endpoint", str(remote.endpoint)))
        keepalive = mesh.keepalive_between(local, remote)
        if keepalive:
            entries.append(("PersistentKeepalive", str(keepalive)))
        sections.append(WgPeerSection(remote.name, tuple(entries)))
    return WgConfig(tuple(interface), tuple(sections))


def _interface_entries(mesh: Mesh, local: Peer, keys: MeshKeys) -> list[Entry]:
    """The ``[Interface]`` entries of ``local``'s config, in file order."""
    interface: list[Entry] = [("Address", ", ".join(str(address) for address in local.addresses))]
    interface.append(("PrivateKey", keys.private_key(local.name)))
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
    return interface


def header_for(mesh: Mesh, name: str) -> str:
    return f"{mesh.interface}.conf of peer {name}, generated by wgmesh: edits are overwritten.\nKeep mode 0600: it holds private keys."


# A remote peer's [Peer] block as text, minus what differs between the files it appears in: its public key, the
# block up to the PublicKey line, the AllowedIPs/Endpoint lines, whether we hold its private key (it then gets a
# derived PresharedKey) and whether it is reachable (the only thing keepalive_between reads of the remote).
_Block = tuple[str, str, str, bool, bool]


def _render_text(mesh: Mesh, local: Peer, keys: MeshKeys, blocks: dict[str, _Block], psks: dict[str, dict[str, str]]) -> str:
    """The wg-quick text of ``local``: ``format_config(build_peer_config(...), header=header_for(...))``, byte for byte.

    Written straight to text instead, because in a mesh of N peers each remote's block is the same in all N-1
    files but for its PresharedKey and PersistentKeepalive lines: ``blocks`` keeps each remote's shared text
    across the files of one render, so the per-pair work is a few appends. ``psks`` maps a file's peer to the
    preshared keys derived while writing it, so the other file of each pair looks its key up rather than deriving
    it again (the derivation is most of the work left at hundreds of peers). The header and ``[Interface]`` still
    go through :func:`format_config`; ``tests/test_properties.py`` holds the result equal to the structured path.
    """
    name = local.name
    head = format_config(WgConfig(tuple(_interface_entries(mesh, local, keys)), ()), header=header_for(mesh, name), verify=False)
    parts = [head[:-1]]  # format_config ends the file with one "\n", which comes after the [Peer] blocks
    local_public = keys.public_key(name)
    with_psk = keys.mesh_secret is not None and name in keys.private_keys
    derive = keys._derive() if with_psk else None
    derived = psks.setdefault(name, {})
    keepalive_lines: dict[bool, str] = {}
    relayed = mesh.relayed.get(name, {})
    carried = relay_routes(mesh, name)
    for remote in mesh.peers:
        if remote.name == name or remote.name in relayed:
            continue
        block = blocks.get(remote.name)
        if remote.name in carried:
            # This file routes relayed peers through ``remote``: its AllowedIPs line is this file's own.
            block = _block(remote, keys, carried[remote.name])
        elif block is None:
            block = blocks[remote.name] = _block(remote, keys)
        public, opening, tail, keyed, reachable = block
        parts.append(opening)
        if derive is not None and keyed:
            earlier = psks.get(remote.name)
            psk = None if earlier is None else earlier.get(name)
            if psk is None:
                psk = derived[remote.name] = derive(local_public, public)
            parts.append("\nPresharedKey = " + psk)
        parts.append(tail)
        keepalive = keepalive_lines.get(reachable)
        if keepalive is None:
            value = mesh.keepalive_between(local, remote)
            keepalive = keepalive_lines[reachable] = f"\nPersistentKeepalive = {value}" if value else ""
        if keepalive:
            parts.append(keepalive)
    parts.append("\n")
    return "".join(parts)


def _block(remote: Peer, keys: MeshKeys, carried: tuple[IPNetwork, ...] = ()) -> _Block:
    """``remote``'s shared ``[Peer]`` text, with ``carried`` (prefixes relayed through it) after its own AllowedIPs."""
    public = keys.public_key(remote.name)
    tail = "\nAllowedIPs = " + ", ".join(_text(network) for network in remote.allowed_ips + carried)
    if remote.endpoint is not None:
        tail += f"\nEndpoint = {remote.endpoint}"
    opening = f"\n\n[Peer]\n{NAME_COMMENT}{remote.name}\nPublicKey = {public}"
    return (public, opening, tail, remote.name in keys.private_keys, remote.reachable)


def render_peer_config(mesh: Mesh, name: str, keys: MeshKeys) -> str:
    """The wg-quick text of peer ``name``. Byte-identical for the same mesh and keys."""
    return _render_text(mesh, mesh.peer(name), keys, {}, {})


def render_all(mesh: Mesh, keys: MeshKeys) -> dict[str, str]:
    """Every peer's config, keyed by peer name, in mesh order; each remote's shared text and each pair's key once."""
    blocks: dict[str, _Block] = {}
    psks: dict[str, dict[str, str]] = {}
    return {peer.name: _render_text(mesh, peer, keys, blocks, psks) for peer in mesh.peers}


def config_digest(text: str) -> str:
    """A short stable hash of a rendered config: the Pulumi trigger that re-installs only changed peers."""
    return hashlib.sha256(text.encode()).hexdigest()
