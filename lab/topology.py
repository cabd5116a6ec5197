"""The lab's layout: names and addresses of every namespace, and the Pulumi stack file that describes it.

Pure (no subprocess): the runner (:mod:`lab.netns`) builds exactly what :func:`plan` describes, and tests and the
stack file read the same plan, so an address is written down in one place only.

Layout for host ``i`` (1-based)::

    root ns (198.51.100.1, veth wgl-root) ──┐
                                            │  wgl-inet: bridge br0, "the internet", 198.51.100.0/24 (TEST-NET-2)
    wgl-h<i>   eth0 198.51.100.<10+i> ──────┤
               lan0 10.201.<i>.1/24 ──── wgl-h<i>-lan  eth0 10.201.<i>.10 (default via .1)   "the VPC"

    behind NAT (--nat-peer [N], the last N hosts, each behind its own router):
    wgl-h<i>-nat eth0 198.51.100.<10+i> ────┘  MASQUERADE for 100.64.<i>.0/24, DNAT tcp/22 -> 100.64.<i>.2
                 priv0 100.64.<i>.1/24 ──── wgl-h<i>  eth0 100.64.<i>.2 (default via .1), lan0 as above

    harsh hosts (the default; --gentle for the old, friendly world): like real fleets, not like a lab --
    * links inside a host's world (uplink, LAN, NAT router) carry 9001-byte frames, as on EC2, while the internet
      bridge's ports carry 1500 and silently drop bigger frames: no router on that path ever sends ICMP
      "fragmentation needed", and the NAT routers drop it besides (a PMTUD black hole);
    * each host has a profile (PROFILES, by index): a firewall (ufw-like: INPUT and FORWARD policy DROP, SSH,
      ping and established allowed; firewalld/Oracle-like: the same ACCEPTs then a final REJECT; or none), uplink
      and LAN interface names (eth0/lan0, ens5/ens6, enp0s3/enp0s8) and root's login shell (bash with a noisy
      profile, or dash, whose profile is noisy too); public hosts have a default route to the internet bridge's
      gateway 198.51.100.254 (in wgl-inet, which forwards nothing), so the uplink can be found by it.

    dual stack (--dual-stack), IPv6 beside every IPv4 address above (documentation and ULA ranges, inside the
    namespaces only; the root namespace stays IPv4, so SSH and the program's management path do not change):
    wgl-h<i>   eth0 2001:db8:100::<10+i>/64 on the bridge (none behind NAT: the NAT router is IPv4 only, like
               many home routers), lan0 fd00:201:<i>::1/64 ── wgl-h<i>-lan eth0 fd00:201:<i>::10 (default via ::1)
    tunnel network fd00:255::/64 beside 10.255.0.0/24, host i at fd00:255::<i>
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PREFIX = "wgl-"
INET_NETNS = f"{PREFIX}inet"
INET_CIDR = "198.51.100.0/24"
INET_PREFIXLEN = 24
ROOT_LINK = f"{PREFIX}root"
ROOT_ADDRESS = "198.51.100.1"
BRIDGE = "br0"
PUBLIC_IF = "eth0"
LAN_IF = "lan0"
# The internet's gateway: an address of the bridge in wgl-inet, which does not forward (a dead end, by design).
INET_GATEWAY = "198.51.100.254"
HARSH_MTU = 9001  # the hosts' own links, as on EC2
PATH_MTU = 1500  # the internet bridge's ports: bigger frames are dropped without a word
NAT_PRIVATE_IF = "priv0"
LAN_CLIENT_IF = "eth0"
TUNNEL_NETWORK = "10.255.0.0/24"
# Dual stack: documentation prefix (RFC 3849) for the internet, unique local addresses (RFC 4193) inside.
INET6_PREFIX = "2001:db8:100::"
INET6_PREFIXLEN = 64
TUNNEL_NETWORK6 = "fd00:255::/64"
WG_INTERFACE = "wg0"
WG_PORT = 51820
SSH_PORT = 22
MAX_PEERS = 200


@dataclass(frozen=True)
class Profile:
    """How unfriendly a harsh host is: its firewall, its interface names and root's login shell."""

    name: str
    firewall: str  # "ufw", "firewalld" or "none"
    uplink: str
    lan: str
    shell: str  # "bash" or "dash"


# Host i gets PROFILES[(i - 1) % 3]: every lab of three or more mixes them all.
PROFILES = (
    Profile("ufw-dash", "ufw", "ens5", "ens6", "dash"),
    Profile("firewalld-bash", "firewalld", "enp0s3", "enp0s8", "bash"),
    Profile("plain", "none", PUBLIC_IF, LAN_IF, "bash"),
)
GENTLE = Profile("gentle", "none", PUBLIC_IF, LAN_IF, "bash")
# Interfaces the lab itself makes inside a host namespace: a reboot deletes every other one (wg0 and the like).
HOST_BASE_LINKS = frozenset({"lo", PUBLIC_IF, LAN_IF} | {name for profile in PROFILES for name in (profile.uplink, profile.lan)})
_HOST_NAME = re.compile(r"^h([1-9][0-9]{0,2})$")


@dataclass(frozen=True)
class Host:
    """One lab host ("a server in some cloud") with its LAN, and its NAT router when it sits behind one."""

    index: int
    behind_nat: bool = False
    dual_stack: bool = False
    harsh: bool = True

    @property
    def profile(self) -> Profile:
        return PROFILES[(self.index - 1) % len(PROFILES)] if self.harsh else GENTLE

    @property
    def uplink(self) -> str:
        """The host's own uplink (towards the internet bridge, or its NAT router)."""
        return self.profile.uplink

    @property
    def lan_if(self) -> str:
        return self.profile.lan

    @property
    def mtu(self) -> int:
        """The MTU of the host's own links (uplink, LAN, NAT router); the internet bridge carries PATH_MTU."""
        return HARSH_MTU if self.harsh else PATH_MTU

    @property
    def name(self) -> str:
        """The peer name in the stack file, and what ``lab exec`` / ``lab reboot`` take."""
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def lan_netns(self) -> str:
        return f"{PREFIX}{self.name}-lan"

    @property
    def nat_netns(self) -> str | None:
        return f"{PREFIX}{self.name}-nat" if self.behind_nat else None

    @property
    def bridge_port(self) -> str:
        """The host's (or its NAT router's) port on the internet bridge, named after the host."""
        return self.name

    @property
    def public_address(self) -> str:
        """Where the internet reaches this host: its own address, or its NAT router's."""
        return f"198.51.100.{10 + self.index}"

    @property
    def address(self) -> str:
        """The address on the host's own ``eth0``: private (100.64.<i>.2, RFC 6598) when it is behind NAT."""
        return f"100.64.{self.index}.2" if self.behind_nat else self.public_address

    @property
    def address_prefixlen(self) -> int:
        return 24

    @property
    def nat_inside_address(self) -> str:
        return f"100.64.{self.index}.1"

    @property
    def lan_subnet(self) -> str:
        return f"10.201.{self.index}.0/24"

    @property
    def lan_gateway(self) -> str:
        """The host's address on its LAN (``lan0``): the LAN client's default gateway."""
        return f"10.201.{self.index}.1"

    @property
    def lan_client(self) -> str:
        return f"10.201.{self.index}.10"

    @property
    def tunnel_address(self) -> str:
        return f"10.255.0.{self.index}"

    # IPv6 beside the IPv4 addresses: the plan exists for every host, a lab builds it only with ``dual_stack``.
    @property
    def public_address6(self) -> str | None:
        """The host's IPv6 address on the internet bridge; None behind NAT (its router is IPv4 only)."""
        return None if self.behind_nat else f"{INET6_PREFIX}{10 + self.index}"

    @property
    def lan_subnet6(self) -> str:
        return f"fd00:201:{self.index}::/64"

    @property
    def lan_gateway6(self) -> str:
        return f"fd00:201:{self.index}::1"

    @property
    def lan_client6(self) -> str:
        return f"fd00:201:{self.index}::10"

    @property
    def tunnel_address6(self) -> str:
        return f"fd00:255::{self.index}"

    @property
    def endpoint6(self) -> str | None:
        """The ``[v6]:port`` endpoint of a dual-stack host (IPv6 as the underlay); none behind NAT."""
        return None if self.public_address6 is None else f"[{self.public_address6}]:{WG_PORT}"

    @property
    def ssh_host(self) -> str:
        """What the program's SSH (in the root namespace) dials: behind NAT, the router's port-forward."""
        return self.public_address

    @property
    def endpoint(self) -> str | None:
        """The WireGuard endpoint other peers dial; none behind NAT (the host dials out and keeps the path alive)."""
        return None if self.behind_nat else f"{self.public_address}:{WG_PORT}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.netns, self.lan_netns) + ((self.nat_netns,) if self.nat_netns else ())


def plan(peers: int, *, nat_peer: int = 0, dual_stack: bool = False, harsh: bool = True) -> list[Host]:
    """The hosts of a lab with ``peers`` hosts; the last ``nat_peer`` of them (``True`` is one) sit behind NAT, each
    behind a NAT router of its own, so that two of them can only talk through a relay; with ``dual_stack`` every
    host, LAN and the tunnel get IPv6 beside IPv4."""
    if not 1 <= peers <= MAX_PEERS:
        raise ValueError(f"--peers must be between 1 and {MAX_PEERS}, not {peers}")
    if not 0 <= nat_peer < peers:
        raise ValueError(
            f"--nat-peer {int(nat_peer)} needs at least {int(nat_peer) + 1} peers: hosts behind NAT talk through a host with an endpoint"
        )
    return [Host(index, behind_nat=index > peers - nat_peer, dual_stack=dual_stack, harsh=harsh) for index in range(1, peers + 1)]


def host_index(name: str) -> int | None:
    """``h7`` -> 7; None for anything else."""
    match = _HOST_NAME.match(name)
    return int(match.group(1)) if match else None


def mesh_description(hosts: list[Host]) -> dict[str, Any]:
    """The ``wgmesh:mesh`` value (contracts.md §2): every host as an external peer reached over the lab's SSH.

    A dual-stack lab describes a dual-stack mesh: two tunnel networks, two tunnel addresses and two LAN subnets
    per peer. Endpoints stay IPv4 (what most meshes use); a test swaps in :attr:`Host.endpoint6` to prove the
    IPv6 underlay."""
    dual = any(host.dual_stack for host in hosts)
    peers: list[dict[str, Any]] = []
    for host in hosts:
        peer: dict[str, Any] = {
            "name": host.name,
            "kind": "external",
            "ssh_host": host.ssh_host,
            "ssh_port": SSH_PORT,
            "ssh_user": "root",
            "address": [host.tunnel_address, host.tunnel_address6] if dual else host.tunnel_address,
        }
        if host.endpoint is not None:
            peer["endpoint"] = host.endpoint
        peer["subnets"] = [host.lan_subnet, host.lan_subnet6] if dual else [host.lan_subnet]
        # No interface names: wgmesh finds each host's uplink and LAN interface on the host.
        peers.append(peer)
    network: str | list[str] = [TUNNEL_NETWORK, TUNNEL_NETWORK6] if dual else TUNNEL_NETWORK
    return {"network": network, "interface": WG_INTERFACE, "keepalive": 25, "peers": peers}


def stack_config(hosts: list[Host], ssh_key_path: Path) -> dict[str, Any]:
    """The whole ``Pulumi.lab.yaml`` document; the key path is absolute so the file works from any directory."""
    return {"config": {"wgmesh:sshPrivateKeyPath": str(ssh_key_path), "wgmesh:mesh": mesh_description(hosts)}}


def stack_yaml(hosts: list[Host], ssh_key_path: Path) -> str:
    header = (
        "# Written by `wgmesh lab up`: the local network-namespace lab as a wgmesh stack.\n"
        "# `pulumi up --stack lab` builds the mesh on it (SSH from this machine's root namespace).\n"
    )
    return header + yaml.safe_dump(stack_config(hosts, ssh_key_path), sort_keys=False, default_flow_style=None, width=140)


def target_namespace(hosts: Mapping[str, Host], target: str) -> tuple[Host | None, str]:
    """What ``lab exec TARGET`` enters: (the host when TARGET is a host, else None; the network namespace).

    TARGET is ``h<i>`` (a host: its network and mount namespaces), ``h<i>-lan`` (its LAN client), ``h<i>-nat``
    (its NAT router) or ``inet`` (the internet bridge); a ``wgl-`` prefix is accepted too.
    """
    name = target.removeprefix(PREFIX)
    if name == "inet":
        return None, INET_NETNS
    base, _, role = name.partition("-")
    host = hosts.get(base)
    if host is not None:
        if role == "":
            return host, host.netns
        if role == "lan":
            return None, host.lan_netns
        if role == "nat" and host.nat_netns:
            return None, host.nat_netns
    choices = ", ".join(sorted(hosts, key=lambda key: int(key[1:])))
    raise KeyError(f"no such lab target {target!r}: use a host ({choices}), <host>-lan, <host>-nat for the NAT router, or inet")
