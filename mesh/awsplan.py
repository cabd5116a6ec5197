"""What each AWS peer's route table and security groups will hold, and whether that fits the account's quotas.

Pure, like the rest of ``mesh/``: the same plan is checked at validation (so a mesh that cannot fit is refused
before any resource is registered, not half-way through ``pulumi up``) and then built by ``components/``.

* Routes: a peer's VPC sends the tunnel networks and every other peer's subnets to its instance. ``route_summaries``
  replaces every such route that lies inside a summary by the summary itself, so a mesh whose VPCs are planned from
  one block needs one route for all of them (the VPC's own local route is more specific and still wins).
* Security groups: every rule is an inline entry of one CIDR, so adding or removing an address authorizes or revokes
  that entry alone. The peer's main group holds SSH from each ``admin_cidrs`` entry, everything from its own VPC,
  and egress; WireGuard's port is open only to the other peers' public addresses, which fill the rest of the main
  group and then as many more groups as the per-group quota asks for, in mesh order (an appended peer moves no one).
  No ICMP rule: mesh ICMP travels inside the tunnel and never reaches the interface as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from ipaddress import IPv4Network, ip_network

from wgmesh.mesh.model import IPNetwork, Mesh


@dataclass(frozen=True)
class AwsQuotas:
    """The account's quotas that a mesh can exhaust, each defaulting to AWS's default (raise one here once AWS has)."""

    vpcs_per_region: int = 5
    internet_gateways_per_region: int = 5
    elastic_ips_per_region: int = 5
    routes_per_table: int = 50
    inbound_rules_per_security_group: int = 60
    security_groups_per_interface: int = 5


QUOTA_FIELDS = tuple(item.name for item in fields(AwsQuotas))
# Entries of a peer's route table besides the mesh routes: the VPC's local route and the default route.
FIXED_ROUTES = 2
# Inbound entries of a peer's main group besides one per admin CIDR: its VPC's own traffic.
FIXED_MAIN_INBOUND = 1


@dataclass(frozen=True)
class Source:
    """A WireGuard source of another peer: a literal CIDR (an external host) or the Elastic IP of an AWS peer."""

    peer: str
    cidr: str | None = None  # None: the AWS peer's Elastic IP, known once created


@dataclass(frozen=True)
class AwsPeerPlan:
    """One AWS peer's routes (through its instance) and WireGuard sources, one tuple per security group (the first
    is the main group, after its ``main_group_inbound`` fixed entries)."""

    name: str
    region: str
    routes: tuple[str, ...]
    wireguard_groups: tuple[tuple[Source, ...], ...]
    main_group_inbound: int

    @property
    def route_entries(self) -> int:
        return len(self.routes) + FIXED_ROUTES

    @property
    def security_groups(self) -> int:
        return len(self.wireguard_groups)


def summarize(routes: Sequence[IPNetwork], summaries: Sequence[IPv4Network]) -> tuple[str, ...]:
    """``routes`` with each one inside a summary replaced by that summary: first appearance order, no duplicates."""
    out: dict[str, None] = {}
    for route in routes:
        summary = next((s for s in summaries if route.version == 4 and route.subnet_of(s)), None)  # type: ignore[arg-type]
        out[str(summary or route)] = None
    return tuple(out)


def mesh_routes(mesh: Mesh, name: str, summaries: Sequence[IPv4Network] = ()) -> tuple[str, ...]:
    """IPv4 CIDRs a peer's VPC reaches through its instance: the tunnel networks and every other peer's subnets."""
    routes = [network for network in mesh.networks if network.version == 4]
    routes += [subnet for other in mesh.others(name) for subnet in other.subnets if subnet.version == 4]
    return summarize(routes, summaries)


def wireguard_sources(aws_peers: Sequence[str], external_sources: Mapping[str, Sequence[str]], mesh: Mesh, name: str) -> list[Source]:
    """Every other peer's IPv4 WireGuard sources in mesh order, a literal CIDR admitted once."""
    sources: list[Source] = []
    seen: set[str] = set()
    for other in mesh.others(name):
        if other.name in aws_peers:
            sources.append(Source(other.name))
            continue
        for cidr in external_sources.get(other.name, ()):
            if ip_network(cidr).version == 4 and cidr not in seen:
                seen.add(cidr)
                sources.append(Source(other.name, cidr))
    return sources


def group_sizes(count: int, capacity: int, first_taken: int) -> list[int]:
    """How ``count`` entries spread over groups of ``capacity``, the first of which already holds ``first_taken``."""
    first = max(0, min(count, capacity - first_taken))
    rest = count - first
    return [first] + [min(capacity, rest - index * capacity) for index in range(math.ceil(rest / capacity))]


def chunks(items: Sequence[Source], capacity: int, first_taken: int) -> tuple[tuple[Source, ...], ...]:
    """``items`` in consecutive groups as :func:`group_sizes` spreads them (the first group may hold none)."""
    out: list[tuple[Source, ...]] = []
    start = 0
    for size in group_sizes(len(items), capacity, first_taken):
        out.append(tuple(items[start : start + size]))
        start += size
    return tuple(out)


def plan_peers(
    mesh: Mesh,
    regions: Mapping[str, str],
    external_sources: Mapping[str, Sequence[str]],
    *,
    admin_cidrs: int,
    summaries: Sequence[IPv4Network] = (),
    quotas: AwsQuotas = AwsQuotas(),
) -> dict[str, AwsPeerPlan]:
    """The plan of every AWS peer (``regions``: AWS peer name -> region), in mesh order."""
    plans: dict[str, AwsPeerPlan] = {}
    for peer in mesh.peers:
        if peer.name not in regions:
            continue
        sources = wireguard_sources(list(regions), external_sources, mesh, peer.name)
        plans[peer.name] = AwsPeerPlan(
            name=peer.name,
            region=regions[peer.name],
            routes=mesh_routes(mesh, peer.name, summaries),
            wireguard_groups=chunks(sources, quotas.inbound_rules_per_security_group, admin_cidrs + FIXED_MAIN_INBOUND),
            main_group_inbound=admin_cidrs + FIXED_MAIN_INBOUND,
        )
    return plans


@dataclass(frozen=True)
class QuotaProblem:
    """A quota the mesh exceeds: which one, what it needs, and what to do."""

    quota: str
    problem: str
    fix: str


def quota_problems(plans: Mapping[str, AwsPeerPlan], quotas: AwsQuotas, *, summaries_given: bool) -> list[QuotaProblem]:
    """Every quota the planned mesh exceeds, each reported once (with its worst case and how many it affects)."""
    found: list[QuotaProblem] = []
    per_region: dict[str, int] = {}
    for plan in plans.values():
        per_region[plan.region] = per_region.get(plan.region, 0) + 1
    for quota, what, service_name in (
        ("vpcs_per_region", "VPCs", "VPCs per Region"),
        ("internet_gateways_per_region", "internet gateways", "Internet gateways per Region"),
        ("elastic_ips_per_region", "Elastic IPs", "EC2-VPC Elastic IPs"),
    ):
        limit = getattr(quotas, quota)
        for region, count in sorted(per_region.items()):
            if count > limit:
                found.append(
                    QuotaProblem(
                        quota,
                        f"{count} AWS peers in {region} need {count} {what}, the quota is {limit}",
                        f"ask AWS to raise '{service_name}' in {region} (Service Quotas) to at least {count} plus what the "
                        f"account already uses there, then set aws_quotas.{quota}; or place fewer peers in {region}",
                    )
                )

    def worst(quota: str, measure: str, limit: int, values: dict[str, int], fix: str) -> None:
        over = {name: value for name, value in values.items() if value > limit}
        if over:
            name = max(over, key=lambda key: (over[key], key))
            others = f" (and {len(over) - 1} other peers)" if len(over) > 1 else ""
            found.append(QuotaProblem(quota, f"peer {name!r}{others} needs {over[name]} {measure}, the quota is {limit}", fix))

    route_fix = (
        "plan the VPCs (and the other peers' subnets) inside one private block and list it in route_summaries, e.g. "
        "[10.64.0.0/12] (docs/aws.md), or ask AWS to raise 'Routes per route table' and set aws_quotas.routes_per_table"
    )
    if summaries_given:
        route_fix = "cover more of the routed subnets with route_summaries, or raise 'Routes per route table' (aws_quotas.routes_per_table)"
    worst("routes_per_table", "route table entries", quotas.routes_per_table, {n: p.route_entries for n, p in plans.items()}, route_fix)
    worst(
        "inbound_rules_per_security_group",
        "inbound entries in its main security group (one per admin CIDR, one for its VPC)",
        quotas.inbound_rules_per_security_group,
        {n: p.main_group_inbound for n, p in plans.items()},
        "list fewer admin_cidrs (summarize them), or raise 'Inbound or outbound rules per security group'",
    )
    worst(
        "security_groups_per_interface",
        f"security groups on its interface (its WireGuard sources at {quotas.inbound_rules_per_security_group} entries per group)",
        quotas.security_groups_per_interface,
        {n: p.security_groups for n, p in plans.items()},
        "raise 'Inbound or outbound rules per security group' (aws_quotas.inbound_rules_per_security_group) or "
        "'Security groups per network interface' (aws_quotas.security_groups_per_interface), or give externals fewer source_cidrs",
    )
    return found
