"""The mesh model: validated, immutable descriptions of a WireGuard full mesh.

Instances are produced by :func:`wgmesh.mesh.validation.load_mesh`, which guarantees the invariants documented here
(unique names, non-overlapping subnets, tunnel addresses inside the tunnel networks, ...). Everything downstream
(rendering, the Pulumi components, the lab) can therefore trust them without re-checking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface

DEFAULT_LISTEN_PORT = 51820
DEFAULT_KEEPALIVE = 25
DEFAULT_INTERFACE = "wg0"
# None: found on the host at install time (the interface of the default route; for subnets, the interface that
# routes each one), see wgmesh.mesh.render.forwarding_rules. A name is checked on the host before anything changes.
DEFAULT_EGRESS_INTERFACE: str | None = None
# The MTU of the path between peers that wgmesh assumes unless told (mesh-wide ``underlay_mtu``): the Internet's
# 1500, whatever the hosts' own links carry (9001 on EC2). A tunnel packet is the inner packet plus WireGuard's 32
# bytes, UDP's 8 and the outer IP header: 20 for IPv4, 40 for IPv6. The tunnel MTU is sized for the larger, so one
# MTU fits whichever family the underlay uses: 1500 - 80 = 1420, wg-quick's own choice on a 1500-byte uplink.
DEFAULT_UNDERLAY_MTU = 1500
TUNNEL_OVERHEAD = 80
DEFAULT_MTU = DEFAULT_UNDERLAY_MTU - TUNNEL_OVERHEAD
# The packet-mark bit that tags traffic forwarded from the WireGuard interface to the egress interface, so that one
# MASQUERADE rule per family covers every remote peer (see wgmesh.mesh.render.forwarding_rules). Bit 24: outside wg-quick's
# fwmark 51820 (0xca6c), kube-proxy's 0x4000/0x8000, the CNI portmap plugin's 0x2000, Cilium's 0x0f00, the AWS VPC
# CNI's 0x80 and Tailscale's 0xff0000 mask.
DEFAULT_NAT_MARK = 0x1000000


@dataclass(frozen=True)
class Endpoint:
    """Where a peer's WireGuard socket can be reached from the other peers: a host (IP or DNS name) and a UDP port."""

    host: str
    port: int

    def __str__(self) -> str:
        """The ``Endpoint =`` form wg-quick expects; IPv6 literals are bracketed."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Peer:
    """One mesh member.

    ``addresses`` holds one tunnel address per tunnel network, each carrying that network's prefix length
    (``10.255.0.1/24``), which is the form wg-quick's ``Address`` wants. ``endpoint`` is ``None`` for a peer
    behind NAT; ``endpoint_pending`` marks a peer whose endpoint exists but is only known once the cloud has
    created it (an Elastic IP), so it counts as reachable when the mesh is checked before creation. ``relay`` names
    the peer this one (behind NAT) talks to other NAT peers through; ``relay_allowed`` says whether other pairs may
    be relayed through this peer (a relay sees what it forwards in the clear). See :mod:`wgmesh.mesh.relays`.
    """

    name: str
    addresses: tuple[IPInterface, ...]
    endpoint: Endpoint | None = None
    endpoint_pending: bool = False
    listen_port: int = DEFAULT_LISTEN_PORT
    subnets: tuple[IPNetwork, ...] = ()
    keepalive: int | None = None
    mtu: int | None = None
    egress_interface: str | None = DEFAULT_EGRESS_INTERFACE
    uplink_interface: str | None = None
    nat: bool = True
    post_up: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    table: str | None = None
    relay: str | None = None
    relay_allowed: bool = True
    public_key: str | None = None
    private_key: str | None = field(default=None, repr=False)

    @property
    def reachable(self) -> bool:
        """Whether other peers can start a handshake towards this peer (it has, or will have, an endpoint)."""
        return self.endpoint is not None or self.endpoint_pending

    @cached_property
    def allowed_ips(self) -> tuple[IPNetwork, ...]:
        """What other peers route to this peer: its tunnel addresses as host routes, then its subnets.

        Cached (every other peer's config asks for it); fine on a frozen instance since it derives from fields only.
        """
        hosts = tuple(address.network.__class__(f"{address.ip}/{address.max_prefixlen}") for address in self.addresses)
        return hosts + self.subnets


@dataclass(frozen=True)
class Mesh:
    """A validated full mesh: its tunnel networks, interface name and members in the order they were given.

    ``nat_mark`` is a single bit of the packet mark, set on traffic forwarded from the tunnel to a peer's egress
    interface so that one MASQUERADE rule per family NATs it, whatever the number of peers. ``relays`` holds every
    pair of peers that are both behind NAT as ``(first, second, relay)``, the pair in mesh order: those two talk
    through ``relay`` (chosen by :func:`wgmesh.mesh.relays.assign_relays`), never directly.
    """

    networks: tuple[IPNetwork, ...]
    peers: tuple[Peer, ...]
    interface: str = DEFAULT_INTERFACE
    default_keepalive: int = DEFAULT_KEEPALIVE
    nat_mark: int = DEFAULT_NAT_MARK
    relays: tuple[tuple[str, str, str], ...] = ()

    def peer(self, name: str) -> Peer:
        """The peer called ``name``; ``KeyError`` names the known peers when there is none."""
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(f"no peer named {name!r} in the mesh (peers: {', '.join(self.names)})")

    @cached_property
    def subnet_owners(self) -> dict[int, frozenset[str]]:
        """IP version -> names of the peers routing a subnet of that version.

        Cached: every peer's PostUp asks whether some *other* peer routes that family, which would otherwise cost
        O(N) per file and O(N^2) per mesh. Fine on a frozen instance, since it derives from fields only.
        """
        owners: dict[int, set[str]] = {}
        for peer in self.peers:
            for subnet in peer.subnets:
                owners.setdefault(subnet.version, set()).add(peer.name)
        return {version: frozenset(names) for version, names in owners.items()}

    @cached_property
    def relayed(self) -> dict[str, dict[str, str]]:
        """Peer name -> {other peer reached through a relay: that relay}; peers with no relayed pair are absent.

        Cached: both the renderer and the describers ask per peer. Fine on a frozen instance (derives from fields).
        """
        index: dict[str, dict[str, str]] = {}
        for first, second, relay in self.relays:
            index.setdefault(first, {})[second] = relay
            index.setdefault(second, {})[first] = relay
        return index

    def relay_between(self, first: str, second: str) -> str | None:
        """The relay two peers talk through, or ``None`` when they talk directly."""
        return self.relayed.get(first, {}).get(second)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(peer.name for peer in self.peers)

    def others(self, name: str) -> tuple[Peer, ...]:
        """Every member but ``name``, in mesh order: the ``[Peer]`` sections of ``name``'s config."""
        return tuple(peer for peer in self.peers if peer.name != name)

    def keepalive_between(self, local: Peer, remote: Peer) -> int | None:
        """PersistentKeepalive ``local`` sends towards ``remote``.

        An explicit per-peer value wins. Otherwise keepalives are needed only where one side has no endpoint:
        the side behind NAT must keep its NAT mapping open so that the other side can reach it at all.
        """
        if local.keepalive is not None:
            return local.keepalive or None
        if not local.reachable or not remote.reachable:
            return self.default_keepalive
        return None
