"""Tunnel address allocation.

A peer's tunnel address is either given or allocated. An allocated address starts at a slot chosen by a hash of
the peer's name (so it does not depend on list order or on the other peers) and probes upwards to the first free
host address. Addresses already held (given explicitly, or ``pinned`` from an earlier allocation kept in state)
are never moved, which is what makes allocation stable: with the previous result pinned, adding or removing a
peer never changes another peer's address.

No pure function of the peer set alone can promise that (two names may hash to the same slot), so callers that
allocate without state are told which peers were moved off their hashed slot (:attr:`Allocation.probed`) and
can pin those addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_interface

from wgmesh.mesh.model import IPInterface, IPNetwork


class AllocationError(ValueError):
    """A tunnel network has no free host address left for a peer that needs one."""


@dataclass
class Allocation:
    """The result of :func:`allocate`: addresses per peer and the peers that did not get their hashed slot."""

    addresses: dict[str, tuple[IPInterface, ...]]
    probed: list[tuple[str, IPInterface]] = field(default_factory=list)


def usable_hosts(network: IPNetwork) -> int:
    """How many host addresses a tunnel network offers (IPv4 excludes the network and broadcast addresses)."""
    if network.version == 4:
        return max(network.num_addresses - 2, 0)
    return network.num_addresses - 1


def host_at(network: IPNetwork, index: int) -> IPInterface:
    """The ``index``-th usable host of ``network`` (0-based), with the network's prefix length."""
    return ip_interface(f"{network.network_address + 1 + index}/{network.prefixlen}")


def preferred_index(name: str, network: IPNetwork) -> int:
    """The hashed slot of a peer name in a network: stable for a name, independent of every other peer."""
    digest = hashlib.sha256(f"{network.version}:{name}".encode()).digest()
    return int.from_bytes(digest[:16], "big") % usable_hosts(network)


def index_of(network: IPNetwork, address: IPInterface) -> int:
    """Inverse of :func:`host_at`."""
    return int(address.ip) - int(network.network_address) - 1


def allocate(
    networks: Sequence[IPNetwork],
    names: Iterable[str],
    explicit: Mapping[str, Sequence[IPInterface]],
    pinned: Mapping[str, Sequence[IPInterface]] | None = None,
) -> Allocation:
    """One tunnel address per network for every name.

    ``explicit`` addresses (from the description) and ``pinned`` ones (from a previous allocation) are kept as
    they are; every other (name, network) pair gets a free host address, names taken in sorted order so that the
    result never depends on list order. Pinned addresses that clash with an explicit one or lie outside the
    network are dropped rather than trusted.
    """
    names = list(names)
    pinned = pinned or {}
    result: dict[str, list[IPInterface]] = {name: [] for name in names}
    probed: list[tuple[str, IPInterface]] = []
    for network in networks:
        taken: set[int] = set()
        chosen: dict[str, IPInterface] = {}
        for name in names:
            for address in explicit.get(name, ()):
                if address.version == network.version and address.ip in network:
                    chosen[name] = ip_interface(f"{address.ip}/{network.prefixlen}")
                    taken.add(index_of(network, chosen[name]))
        for name in sorted(names):
            if name in chosen:
                continue
            for address in pinned.get(name, ()):
                if address.version == network.version and address.ip in network:
                    index = index_of(network, address)
                    if 0 <= index < usable_hosts(network) and index not in taken:
                        chosen[name] = host_at(network, index)
                        taken.add(index)
        size = usable_hosts(network)
        for name in sorted(names):
            if name in chosen:
                continue
            if len(taken) >= size:
                raise AllocationError(f"tunnel network {network} has no free host address left for peer {name!r}")
            start = preferred_index(name, network)
            index = start
            while index in taken:
                index = (index + 1) % size
            chosen[name] = host_at(network, index)
            taken.add(index)
            if index != start:
                probed.append((name, chosen[name]))
        for name in names:
            result[name].append(chosen[name])
    return Allocation({name: tuple(addresses) for name, addresses in result.items()}, probed)
