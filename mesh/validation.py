"""Turning a raw mesh description (parsed YAML or Pulumi stack config) into a validated :class:`~wgmesh.mesh.model.Mesh`.

Every check runs and every problem is collected before anything is raised, so a user sees all of them at once,
each with the field path and what to do. Nothing else in wgmesh runs on an unvalidated description.

The raw form::

    network: 10.255.0.0/24            # or a list: [10.255.0.0/24, fd00:255::/64]
    interface: wg0                    # optional
    listen_port: 51820                # optional default for peers
    keepalive: 25                     # sent where one side of a pair has no endpoint
    nat_mark: 0x1000000               # optional: the packet-mark bit NAT uses (below)
    peers:
      - name: zhy
        address: 10.255.0.1           # optional: allocated from the network when absent
        endpoint: 52.82.1.10:51820    # optional: a peer behind NAT has none
        subnets: [192.168.10.0/24]
        egress_interface: ens5        # NAT towards the VPC goes out here
      - name: home                    # no endpoint: behind NAT
        relay: zhy                    # optional: the relay towards other NAT peers (else chosen, see wgmesh.mesh.relays)
        relay_allowed: false          # optional (also mesh-wide): never relay other pairs through this peer

``nat_mark`` is the one packet-mark bit a peer's PostUp sets (mangle FORWARD, ``-i <wg> -o <egress>``) on traffic
from the tunnel towards its VPC, so that a single ``-m mark --mark <bit>/<bit> -j MASQUERADE`` per family NATs
every remote peer's traffic. It must be a single bit (a power of two below 2**32, as an integer or a ``0x..``
string) and may not be one of wg-quick's fwmark 51820 (0xca6c, which contains kube-proxy's 0x4000 and 0x8000):
change it only when another tool on the hosts already uses bit 24 (e.g. Calico's default 0xffff0000 mark mask).
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network
from typing import Any

from wgmesh.mesh.addressing import AllocationError, allocate, usable_hosts
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.keys import decode_key, public_key
from wgmesh.mesh.model import (
    DEFAULT_EGRESS_INTERFACE,
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_LISTEN_PORT,
    DEFAULT_NAT_MARK,
    DEFAULT_UNDERLAY_MTU,
    TUNNEL_OVERHEAD,
    Endpoint,
    IPInterface,
    IPNetwork,
    Mesh,
    Peer,
)
from wgmesh.mesh.relays import assign_relays

MESH_FIELDS = frozenset(
    {
        "network",
        "interface",
        "listen_port",
        "keepalive",
        "mtu",
        "underlay_mtu",
        "peers",
        "egress_interface",
        "uplink_interface",
        "nat",
        "nat_mark",
        "relay_allowed",
    }
)
# Mark bits nat_mark may not use, by owner: wg-quick marks its own encrypted packets with fwmark 51820 (0xca6c) and
# matches that value exactly; kube-proxy uses 0x4000 to request masquerading and 0x8000 to drop.
RESERVED_MARK_BITS = {
    0x4000: "kube-proxy's masquerade bit 0x4000",
    0x8000: "kube-proxy's drop bit 0x8000",
    0xCA6C: "wg-quick's fwmark 51820 (0xca6c)",
}
PEER_FIELDS = frozenset(
    {
        "name",
        "address",
        "endpoint",
        "listen_port",
        "subnets",
        "keepalive",
        "mtu",
        "egress_interface",
        "uplink_interface",
        "nat",
        "post_up",
        "post_down",
        "dns",
        "table",
        "public_key",
        "private_key",
        "relay",
        "relay_allowed",
    }
)
# A peer name becomes ``<name>.conf``, which ``wg-quick up ./<name>.conf`` turns into an interface name: so it must
# also be a valid Linux interface name (at most 15 characters).
PEER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")
INTERFACE_NAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
MIN_MTU, MAX_MTU = 1280, 9000


@dataclass(frozen=True)
class _Located:
    """A value found at a field path, kept with its path so later cross-checks can still name it."""

    path: str
    value: Any


class _Collector:
    """Accumulates issues; ``check`` runs a parser and records its ``ValueError`` instead of stopping."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def add(self, path: str, problem: str, fix: str) -> None:
        self.issues.append(ConfigIssue(path, problem, fix))

    def check(self, path: str, parse: Callable[[Any], Any], value: Any, fix: str) -> Any:
        try:
            return parse(value)
        except (ValueError, TypeError) as exc:
            self.add(path, str(exc), fix)
            return None


def parse_endpoint(text: Any) -> Endpoint:
    """``host:port`` or ``[v6]:port`` into an :class:`Endpoint`; ``ValueError`` says what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"an endpoint is a 'host:port' string, got {text!r}")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not '[IPv6]:port'")
        if not isinstance(ip_address(host), IPv6Address):
            raise ValueError(f"{host!r} in brackets is not an IPv6 address")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} has no port")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 endpoint as '[address]:port'")
        if not _is_ipv4(host) and not HOSTNAME.match(host):
            raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return Endpoint(host, parse_port(port_text))


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ip_address(text), IPv4Address)
    except ValueError:
        return False


def parse_port(value: Any) -> int:
    """A UDP port number 1..65535 from an int or a decimal string."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port number")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} is not a port number between 1 and 65535")
    return value


def _parse_int(low: int, high: int, what: str) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{value!r} is not {what} between {low} and {high}")
        return value

    return parse


def parse_nat_mark(value: Any) -> int:
    """One bit of the 32-bit packet mark, from an int or a decimal/``0x`` string, that no known user claims."""
    if isinstance(value, str):
        try:
            value = int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 0x80000000:
        raise ValueError(f"{value!r} is not a 32-bit packet mark bit")
    if value & (value - 1):
        raise ValueError(f"{value:#x} sets {value.bit_count()} bits, not one")
    for bits, owner in RESERVED_MARK_BITS.items():
        if value & bits:
            raise ValueError(f"{value:#x} is a bit of {owner}")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _parse_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"a CIDR is a string such as '10.0.0.0/16', got {value!r}")
    try:
        return ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise ValueError(f"{value!r} has host bits set (did you mean {ip_network(value, strict=False)}?)") from None
        raise ValueError(f"{value!r} is not a CIDR block") from None


def _parse_address(value: Any) -> IPInterface:
    if not isinstance(value, str):
        raise ValueError(f"a tunnel address is a string such as '10.255.0.1', got {value!r}")
    try:
        return ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _parse_dns(value: Any) -> str:
    """A ``DNS =`` entry: a resolver's IP address or a search domain."""
    if isinstance(value, str):
        try:
            return str(ip_address(value))
        except ValueError:
            if HOSTNAME.match(value):
                return value
    raise ValueError(f"{value!r} is neither a resolver IP address nor a search domain")


def _parse_key(value: Any) -> str:
    decode_key(value)
    return value.strip()


def _as_list(value: Any) -> list[Any]:
    """A scalar or a list, as a list: lets ``network: 10.0.0.0/24`` and ``network: [..]`` both work."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _is_config_value(item: Any) -> bool:
    """Whether ``item`` survives a trip through a wg-quick file: one line, no '#' (wg-quick cuts comments there)."""
    return isinstance(item, str) and bool(item.strip()) and not any(char in item for char in "\n\r#")


def _string_list(collector: _Collector, path: str, value: Any) -> tuple[str, ...]:
    items = _as_list(value)
    for index, item in enumerate(items):
        if not _is_config_value(item):
            collector.add(
                f"{path}[{index}]",
                f"{item!r} is not a non-empty one-line string without '#'",
                "write each entry as a single line; wg-quick drops everything after a '#'",
            )
    return tuple(item.strip() for item in items if _is_config_value(item))


def _unknown_fields(collector: _Collector, path: str, raw: Mapping[str, Any], known: Collection[str]) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(sorted(known))}"
            collector.add(f"{path}.{key}", "unknown field", hint)


def load_mesh(
    raw: Any,
    *,
    path: str = "mesh",
    extra_peer_fields: Iterable[str] = (),
    pending_endpoints: Iterable[str] = (),
    pinned_addresses: Mapping[str, Iterable[str]] | None = None,
) -> Mesh:
    """Validate a raw description and build the :class:`Mesh`, or raise :class:`MeshConfigError` with every issue.

    ``extra_peer_fields`` are peer fields another layer owns (the Pulumi program's ``kind``, ``region``, ...): they
    are allowed here and ignored. ``pending_endpoints`` names peers whose endpoint is created later (an AWS peer's
    Elastic IP). ``pinned_addresses`` are addresses allocated earlier and kept in state, which allocation keeps.
    """
    collector = _Collector()
    if not isinstance(raw, Mapping):
        raise MeshConfigError([ConfigIssue(path, f"expected a mapping, got {type(raw).__name__}", "see examples/mesh.yaml")])
    _unknown_fields(collector, path, raw, MESH_FIELDS)

    networks = _networks(collector, path, raw.get("network"))
    interface = raw.get("interface", DEFAULT_INTERFACE)
    if not isinstance(interface, str) or not INTERFACE_NAME.match(interface):
        collector.add(
            f"{path}.interface", f"{interface!r} is not a usable interface name", "use 1-15 of letters, digits and _=+.- such as 'wg0'"
        )
    keepalive = collector.check(
        f"{path}.keepalive", _parse_int(0, 65535, "a keepalive interval in seconds"), raw.get("keepalive", DEFAULT_KEEPALIVE), "use e.g. 25"
    )
    default_port = collector.check(
        f"{path}.listen_port", parse_port, raw.get("listen_port", DEFAULT_LISTEN_PORT), "use a UDP port such as 51820"
    )
    nat_mark = collector.check(
        f"{path}.nat_mark",
        parse_nat_mark,
        raw.get("nat_mark", DEFAULT_NAT_MARK),
        f"use a single free bit such as {DEFAULT_NAT_MARK:#x} (the default), or leave nat_mark out",
    )
    defaults = _peer_defaults(collector, path, raw)
    defaults["listen_port"] = default_port or DEFAULT_LISTEN_PORT

    raw_peers = raw.get("peers")
    if not isinstance(raw_peers, list) or len(raw_peers) < 2:
        collector.add(
            f"{path}.peers", f"expected a list of at least two peers, got {raw_peers!r:.60}", "list every mesh member under 'peers'"
        )
        raw_peers = raw_peers if isinstance(raw_peers, list) else []
    pending = set(pending_endpoints)
    known_fields = PEER_FIELDS | frozenset(extra_peer_fields)
    drafts = [
        _peer_draft(collector, f"{path}.peers[{index}]", item, defaults, known_fields, pending) for index, item in enumerate(raw_peers)
    ]
    drafts = [draft for draft in drafts if draft is not None]

    _check_unique_names(collector, drafts)
    _check_keys(collector, drafts)
    _check_subnets(collector, path, networks, drafts)
    explicit = _check_addresses(collector, path, networks, drafts)
    _check_relays(collector, drafts)
    _check_endpoint_routes(collector, drafts)

    if collector.issues:
        raise MeshConfigError(collector.issues)

    pinned = {name: [ip_interface(text) for text in texts] for name, texts in (pinned_addresses or {}).items()}
    try:
        allocation = allocate(networks, [d["name"] for d in drafts], explicit, pinned)
    except AllocationError as exc:
        raise MeshConfigError([ConfigIssue(f"{path}.network", str(exc), "use a larger tunnel network (a shorter prefix)")]) from None
    peers = tuple(
        Peer(**{key: value for key, value in draft.items() if not key.startswith("_")}, addresses=allocation.addresses[draft["name"]])
        for draft in drafts
    )
    return Mesh(
        networks=tuple(networks),
        peers=peers,
        interface=interface,
        default_keepalive=keepalive if keepalive is not None else DEFAULT_KEEPALIVE,
        nat_mark=nat_mark if nat_mark is not None else DEFAULT_NAT_MARK,
        relays=assign_relays(peers),
    )


def _peer_defaults(collector: _Collector, path: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Mesh-wide defaults for peer fields, checked here so that a bad default is reported once, at its own path."""
    underlay = collector.check(
        f"{path}.underlay_mtu",
        _parse_int(MIN_MTU + TUNNEL_OVERHEAD, 65535, "an underlay MTU"),
        raw.get("underlay_mtu", DEFAULT_UNDERLAY_MTU),
        "the MTU of the path between the hosts: 1500 across the Internet (the default), more only on a network you own",
    )
    # The tunnel MTU every peer gets unless it sets its own: explicit, else what the underlay leaves (see model).
    mtu = raw.get("mtu")
    if mtu is not None:
        mtu = collector.check(
            f"{path}.mtu", _parse_int(MIN_MTU, MAX_MTU, "an MTU"), mtu, "use e.g. 1420, or leave it out for underlay_mtu - 80"
        )
    if mtu is None:
        mtu = (underlay or DEFAULT_UNDERLAY_MTU) - TUNNEL_OVERHEAD
    interfaces = {}
    for key, hint in (("egress_interface", "the interface of the hosts' subnets"), ("uplink_interface", "the hosts' uplink")):
        value = raw.get(key, DEFAULT_EGRESS_INTERFACE)
        if value is not None and (not isinstance(value, str) or not INTERFACE_NAME.match(value)):
            collector.add(f"{path}.{key}", f"{value!r} is not an interface name", f"name {hint} (e.g. 'ens5'), or leave it out to find it")
            value = None
        interfaces[key] = value
    nat = collector.check(f"{path}.nat", _parse_bool, raw.get("nat", True), "use true or false")
    relay_allowed = collector.check(f"{path}.relay_allowed", _parse_bool, raw.get("relay_allowed", True), "use true or false")
    return {"mtu": mtu, **interfaces, "nat": True if nat is None else nat, "relay_allowed": relay_allowed is not False}


def _networks(collector: _Collector, path: str, value: Any) -> list[IPNetwork]:
    items = _as_list(value)
    if not items:
        collector.add(f"{path}.network", "missing", "set the tunnel network, e.g. 'network: 10.255.0.0/24'")
        return []
    networks: list[IPNetwork] = []
    for index, item in enumerate(items):
        where = f"{path}.network" if not isinstance(value, list) else f"{path}.network[{index}]"
        network = collector.check(where, _parse_network, item, "write a CIDR such as 10.255.0.0/24 or fd00:255::/64")
        if network is None:
            continue
        if usable_hosts(network) < 2:
            collector.add(where, f"{network} has room for fewer than two peers", "use a larger tunnel network such as a /24")
        elif any(other.version == network.version for other in networks):
            collector.add(where, f"a second IPv{network.version} tunnel network", "give at most one IPv4 and one IPv6 tunnel network")
        else:
            networks.append(network)
    return networks


def _peer_draft(
    collector: _Collector,
    path: str,
    raw: Any,
    defaults: Mapping[str, Any],
    known_fields: Collection[str],
    pending: set[str],
) -> dict[str, Any] | None:
    """The fields of one peer, parsed; private entries (``_path``, ``_subnets``) carry paths for the cross-checks."""
    if not isinstance(raw, Mapping):
        collector.add(path, f"expected a mapping with at least 'name', got {raw!r:.60}", "write each peer as a mapping")
        return None
    _unknown_fields(collector, path, raw, known_fields)
    name = raw.get("name")
    if not isinstance(name, str) or not PEER_NAME.match(name):
        collector.add(
            f"{path}.name",
            f"{name!r} is not a usable peer name",
            "use 1-15 lowercase letters, digits and inner '-' (it becomes a file, resource and interface name)",
        )
        name = None
    endpoint = None
    if raw.get("endpoint") is not None:
        endpoint = collector.check(
            f"{path}.endpoint",
            parse_endpoint,
            raw["endpoint"],
            "write it as 'host:port', e.g. '203.0.113.7:51820' or '[2001:db8::7]:51820'",
        )
    subnets = [
        _Located(
            f"{path}.subnets[{index}]",
            collector.check(f"{path}.subnets[{index}]", _parse_network, item, "write a CIDR such as 192.168.10.0/24"),
        )
        for index, item in enumerate(_as_list(raw.get("subnets")))
    ]
    subnets = [item for item in subnets if item.value is not None]
    address_paths = (
        [f"{path}.address[{index}]" for index in range(len(raw["address"]))]
        if isinstance(raw.get("address"), list)
        else [f"{path}.address"]
    )
    addresses = [
        _Located(
            where,
            collector.check(where, _parse_address, item, "write an address inside the tunnel network, such as 10.255.0.1"),
        )
        for where, item in zip(address_paths, _as_list(raw.get("address")), strict=False)
    ]
    mtu = raw.get("mtu", defaults["mtu"])
    keepalive = raw.get("keepalive")
    table = raw.get("table")
    if table is not None and (not isinstance(table, str | int) or isinstance(table, bool) or not _is_config_value(str(table))):
        collector.add(f"{path}.table", f"{table!r} is not a routing table", "use 'off', 'auto' or a table number/name")
        table = None
    interfaces = {}
    for key, hint in (("egress_interface", "the interface of the host's subnets"), ("uplink_interface", "the host's uplink")):
        value = raw.get(key, defaults[key])
        if value is not None and (not isinstance(value, str) or not INTERFACE_NAME.match(value)):
            collector.add(f"{path}.{key}", f"{value!r} is not an interface name", f"name {hint} (e.g. 'ens5'), or leave it out to find it")
            value = defaults[key]
        interfaces[key] = value
    draft: dict[str, Any] = {
        "name": name,
        "endpoint": endpoint,
        "endpoint_pending": name in pending and endpoint is None,
        # Without an explicit listen_port a peer listens on its endpoint's port: the port the others dial.
        "listen_port": collector.check(
            f"{path}.listen_port",
            parse_port,
            raw.get("listen_port", endpoint.port if endpoint is not None else defaults["listen_port"]),
            "use a UDP port such as 51820",
        )
        or DEFAULT_LISTEN_PORT,
        "subnets": tuple(item.value for item in subnets),
        "keepalive": None
        if keepalive is None
        else collector.check(
            f"{path}.keepalive",
            _parse_int(0, 65535, "a keepalive interval in seconds"),
            keepalive,
            "use e.g. 25, or 0 to turn keepalives off",
        ),
        "mtu": None
        if mtu is None
        else collector.check(f"{path}.mtu", _parse_int(MIN_MTU, MAX_MTU, "an MTU"), mtu, "use e.g. 1420, or leave it out for the mesh's"),
        **interfaces,
        "nat": bool(collector.check(f"{path}.nat", _parse_bool, raw.get("nat", defaults["nat"]), "use true or false")),
        "post_up": _string_list(collector, f"{path}.post_up", raw.get("post_up")),
        "post_down": _string_list(collector, f"{path}.post_down", raw.get("post_down")),
        "dns": tuple(
            value
            for index, item in enumerate(_as_list(raw.get("dns")))
            if (value := collector.check(f"{path}.dns[{index}]", _parse_dns, item, "use e.g. 10.0.0.2 or a search domain")) is not None
        ),
        "table": None if table is None else str(table),
        "relay": _relay_name(collector, f"{path}.relay", raw.get("relay")),
        "relay_allowed": collector.check(
            f"{path}.relay_allowed", _parse_bool, raw.get("relay_allowed", defaults["relay_allowed"]), "use true or false"
        )
        is not False,
        "public_key": None,
        "private_key": None,
        "_path": path,
        "_subnets": subnets,
        "_addresses": [item for item in addresses if item.value is not None],
        "_endpoint_given": raw.get("endpoint") is not None,
        "_raw_keys": {field: raw.get(field) for field in ("public_key", "private_key") if raw.get(field) is not None},
    }
    return draft


def _check_unique_names(collector: _Collector, drafts: list[dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for draft in drafts:
        name = draft["name"]
        if name is None:
            continue
        if name in seen:
            collector.add(f"{draft['_path']}.name", f"duplicate peer name {name!r} (also at {seen[name]})", "give every peer a unique name")
        else:
            seen[name] = draft["_path"]
    drafts[:] = [draft for draft in drafts if draft["name"] is not None]


def _check_keys(collector: _Collector, drafts: list[dict[str, Any]]) -> None:
    """Keys given in the description must be real keys, and a given public key must match a given private key."""
    owners: dict[str, str] = {}
    for draft in drafts:
        path = draft["_path"]
        raw_keys = draft["_raw_keys"]
        for field in ("private_key", "public_key"):
            if field in raw_keys:
                draft[field] = collector.check(
                    f"{path}.{field}", _parse_key, raw_keys[field], "paste the output of `wg genkey` (private) or `wg pubkey` (public)"
                )
        if draft["private_key"] and draft["public_key"] and public_key(draft["private_key"]) != draft["public_key"]:
            collector.add(
                f"{path}.public_key", "does not belong to the given private_key", "remove public_key (it is derived) or fix the pair"
            )
        mine = draft["public_key"] or (public_key(draft["private_key"]) if draft["private_key"] else None)
        if mine is not None:
            if mine in owners:
                collector.add(f"{path}.public_key", f"the same key as {owners[mine]}", "every peer needs its own key pair")
            owners[mine] = path


def _check_subnets(collector: _Collector, path: str, networks: list[IPNetwork], drafts: list[dict[str, Any]]) -> None:
    """No routed subnet may overlap another (AllowedIPs would be ambiguous) or a tunnel network.

    Every overlapping pair is reported, on the later subnet, in description order. Pairs are found with a sweep
    over the subnets sorted by start address (only subnets still open at a start can overlap it), so a mesh of
    hundreds of peers is checked in O(n log n) rather than by comparing every pair.
    """
    located: list[tuple[str, _Located]] = [(draft["name"], item) for draft in drafts for item in draft["_subnets"]]
    overlapping: dict[int, list[int]] = {}
    order = sorted(range(len(located)), key=lambda i: (located[i][1].value.version, int(located[i][1].value.network_address)))
    open_: list[int] = []
    for index in order:
        value = located[index][1].value
        start = int(value.network_address)
        open_ = [
            other
            for other in open_
            if located[other][1].value.version == value.version and int(located[other][1].value.broadcast_address) >= start
        ]
        for other in open_:
            later, earlier = max(index, other), min(index, other)
            overlapping.setdefault(later, []).append(earlier)
        open_.append(index)
    for index, (owner, item) in enumerate(located):
        for network in networks:
            if item.value.version == network.version and item.value.overlaps(network):
                collector.add(
                    item.path,
                    f"{item.value} overlaps the tunnel network {network}",
                    "pick a tunnel network outside every routed subnet, or fix this subnet",
                )
        for earlier in sorted(overlapping.get(index, ())):
            other_owner, other = located[earlier]
            whose = "the same peer" if owner == other_owner else f"peer {other_owner!r}"
            collector.add(
                item.path,
                f"{item.value} overlaps {other.value} of {whose} ({other.path})",
                "routed subnets must be disjoint: renumber one of them",
            )


def _check_addresses(
    collector: _Collector, path: str, networks: list[IPNetwork], drafts: list[dict[str, Any]]
) -> dict[str, list[IPInterface]]:
    explicit: dict[str, list[IPInterface]] = {}
    seen: dict[Any, str] = {}
    for draft in drafts:
        families: set[int] = set()
        for item in draft["_addresses"]:
            address: IPInterface = item.value
            network = next((n for n in networks if n.version == address.version), None)
            if network is None:
                collector.add(
                    item.path,
                    f"{address.ip} is IPv{address.version} but the mesh has no IPv{address.version} tunnel network",
                    "add one to 'network' or drop this address",
                )
                continue
            if address.ip not in network:
                collector.add(
                    item.path,
                    f"{address.ip} is outside the tunnel network {network}",
                    f"pick an address inside {network}, or leave it out to have one allocated",
                )
                continue
            if network.version == 4 and address.ip in (network.network_address, network.broadcast_address):
                collector.add(item.path, f"{address.ip} is the network or broadcast address of {network}", "pick a host address")
                continue
            if network.version == 6 and address.ip == network.network_address:
                collector.add(item.path, f"{address.ip} is the subnet-router anycast address of {network}", "pick a host address")
                continue
            if address.version in families:
                collector.add(item.path, f"a second IPv{address.version} tunnel address", "give one address per tunnel network")
                continue
            families.add(address.version)
            if address.ip in seen:
                collector.add(
                    item.path, f"{address.ip} is already the tunnel address of {seen[address.ip]}", "give every peer its own tunnel address"
                )
                continue
            seen[address.ip] = draft["_path"]
            explicit.setdefault(draft["name"], []).append(address)
    return explicit


def _relay_name(collector: _Collector, path: str, value: Any) -> str | None:
    """A ``relay:`` value: a peer name (whether that peer exists and may relay is checked with the others)."""
    if value is None:
        return None
    if not isinstance(value, str) or not PEER_NAME.match(value):
        collector.add(path, f"{value!r} is not a peer name", "name the peer with a public endpoint that relays for this one")
        return None
    return value


def _check_relays(collector: _Collector, drafts: list[dict[str, Any]]) -> None:
    """Every pair of peers has a path: directly when one side has an endpoint, else through a relay (wgmesh.mesh.relays).

    A named relay must be another peer with an endpoint that allows relaying, and only a peer behind NAT names one;
    so a relay is never itself relayed, and no relay loop can exist. Both peers of a pair naming different relays
    is refused: a pair must use one relay both ways (WireGuard drops a packet that arrives from a peer whose
    AllowedIPs do not hold its source). Pairs with no relay give one issue per peer, not one per pair.
    """
    by_name = {draft["name"]: draft for draft in drafts}

    def reachable(draft: dict[str, Any]) -> bool:
        return bool(draft["_endpoint_given"] or draft["endpoint_pending"])

    for draft in drafts:
        relay = draft["relay"]
        if relay is None:
            continue
        where = f"{draft['_path']}.relay"
        if reachable(draft):
            collector.add(
                where,
                f"peer {draft['name']!r} has an endpoint, so every peer reaches it directly: it never uses a relay",
                "remove 'relay' (only a peer without an endpoint talks to other such peers through one)",
            )
        elif relay == draft["name"]:
            collector.add(
                where, "a peer cannot be its own relay", "name a peer with a public endpoint, or remove 'relay' to have one chosen"
            )
        elif relay not in by_name:
            close = difflib.get_close_matches(relay, list(by_name), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"name one of the peers ({', '.join(sorted(by_name))})"
            collector.add(where, f"no peer named {relay!r}", hint)
        elif not reachable(by_name[relay]):
            collector.add(
                where,
                f"relay {relay!r} has no endpoint (it is behind NAT itself), so no peer can reach it",
                f"name a peer with a public endpoint, or give {relay!r} an 'endpoint'",
            )
        elif not by_name[relay]["relay_allowed"]:
            collector.add(
                where,
                f"relay {relay!r} has relay_allowed: false (it may not see other peers' traffic in the clear)",
                f"name another peer with an endpoint, or allow relaying through {relay!r}",
            )
        elif by_name[relay]["table"] == "off":
            collector.add(
                where,
                f"relay {relay!r} has table: off, so it has no route to forward relayed traffic back into the tunnel",
                f"name another peer with an endpoint, or remove 'table: off' from {relay!r}",
            )
    behind_nat = [draft for draft in drafts if not reachable(draft)]
    for index, second in enumerate(behind_nat):
        for first in behind_nat[:index]:
            if first["relay"] and second["relay"] and first["relay"] != second["relay"]:
                collector.add(
                    f"{second['_path']}.relay",
                    f"peers {first['name']!r} and {second['name']!r} (both behind NAT) name different relays, "
                    f"{first['relay']!r} and {second['relay']!r}, but a pair talks through one relay both ways",
                    "name the same relay on both peers, or remove 'relay' from one of them",
                )
    if any(reachable(draft) and draft["relay_allowed"] and draft["table"] != "off" for draft in drafts):
        return
    reason = (
        "every peer with an endpoint has relay_allowed: false or table: off"
        if any(reachable(draft) for draft in drafts)
        else "no peer has an endpoint to relay through"
    )
    for index, draft in enumerate(behind_nat[1:], start=1):
        stranded = [other for other in behind_nat[:index] if not (other["relay"] or draft["relay"])]
        if stranded:
            others = ", ".join(repr(other["name"]) for other in stranded)
            collector.add(
                f"{draft['_path']}.endpoint",
                f"peer {draft['name']!r} has no endpoint and neither has {others}, and {reason}, so these peers can never reach each other",
                "give one of them a public 'endpoint' (host:port), or add a peer with an endpoint that may relay between them",
            )


def _check_endpoint_routes(collector: _Collector, drafts: list[dict[str, Any]]) -> None:
    """An endpoint IP inside a routed subnet would be routed into the tunnel it carries: a loop that never connects."""
    subnets = sorted(
        (
            (item.value.version, int(item.value.network_address), int(item.value.broadcast_address), item)
            for other in drafts
            for item in other["_subnets"]
        ),
        key=lambda entry: entry[:2],
    )
    starts = [entry[:2] for entry in subnets]
    for draft in drafts:
        endpoint: Endpoint | None = draft["endpoint"]
        if endpoint is None:
            continue
        try:
            host = ip_address(endpoint.host)
        except ValueError:
            continue  # a DNS name: resolved only on the hosts
        # Subnets are disjoint (overlaps are reported above), so only the last one starting at or before the host
        # can hold it.
        position = bisect.bisect_right(starts, (host.version, int(host)))
        if position:
            version, _start, last, item = subnets[position - 1]
            if version == host.version and int(host) <= last:
                collector.add(
                    f"{draft['_path']}.endpoint",
                    f"{host} lies inside {item.value} ({item.path}), which the mesh routes through the tunnel itself",
                    "use the peer's public address as endpoint, or remove that subnet",
                )
