"""The Pulumi stack config (``wgmesh:mesh``), validated into a :class:`StackSpec` before any resource exists.

A stack's mesh is the CLI's mesh description (see :mod:`wgmesh.mesh.validation`, same snake_case fields, same meaning)
plus what the program needs to build or reach each peer::

    wgmesh:mesh:
      network: 10.255.0.0/24
      admin_cidrs: [203.0.113.0/24]        # who may SSH to the AWS peers (the machine running `pulumi up`)
      peers:
        - name: zhy
          kind: aws                        # we create its VPC, instance, Elastic IP ...
          region: cn-northwest-1
          vpc_cidr: 192.168.10.0/24        # routed over the mesh like a subnet
          key_name: ops                    # or ssh_public_key: "ssh-ed25519 ..."
        - name: pub
          kind: external                   # a host we do not create
          ssh_host: 198.51.100.30
          endpoint: 198.51.100.30:51820
          subnets: [10.7.1.0/24]

Pure, like the rest of ``mesh/``: the Pulumi layer (``components/``, ``__main__.py``) only turns a spec into
resources. Every problem is collected (the mesh's and the program's) and raised at once as a
:class:`~wgmesh.mesh.errors.MeshConfigError` whose paths name the stack config keys the user wrote (``vpc_cidr``, not
the ``subnets[0]`` it becomes inside the mesh).

AWS peers are IPv4 only for now (their VPC, route table and security group carry IPv4): a stack with AWS peers
that asks for IPv6 anywhere the AWS side would have to carry it is refused, naming the field, rather than built
with the IPv6 part silently missing (see docs/ipv6.md).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, ip_address, ip_network
from typing import Any

from wgmesh.mesh.addressing import index_of, preferred_index
from wgmesh.mesh.awsplan import QUOTA_FIELDS, AwsPeerPlan, AwsQuotas, plan_peers, quota_problems
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.model import Endpoint, IPNetwork, Mesh
from wgmesh.mesh.sshkeys import parse_ssh_key
from wgmesh.mesh.validation import HOSTNAME, MESH_FIELDS, load_mesh, parse_port

CONFIG_KEY = "wgmesh:mesh"
KINDS = ("aws", "external")
PROGRAM_MESH_FIELDS = frozenset({"admin_cidrs", "tags", "aws_quotas", "route_summaries", "allowed_account_ids", "aws_credentials"})
AWS_FIELDS = frozenset(
    {
        "region",
        "vpc_cidr",
        "subnet_cidr",
        "availability_zone",
        "instance_type",
        "ssh_user",
        "key_name",
        "ssh_public_key",
        "ami_id",
        "ami_owner",
        "ami_name_filter",
        "root_volume_size",
        "rebuild",
    }
)
EXTERNAL_FIELDS = frozenset({"ssh_host", "ssh_user", "ssh_port", "source_cidrs", "ssh_host_key"})
COMMON_FIELDS = frozenset({"kind", "key_version", "ssh_private_key_path", "gone"})
PROGRAM_PEER_FIELDS = AWS_FIELDS | EXTERNAL_FIELDS | COMMON_FIELDS

# Canonical publishes Ubuntu images from a different account in the AWS China partition.
CANONICAL_OWNER = "099720109477"
CANONICAL_OWNER_CHINA = "837727238323"
CANONICAL_OWNERS = {"aws": CANONICAL_OWNER, "aws-cn": CANONICAL_OWNER_CHINA}
UBUNTU_NAME_FILTER = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
DEFAULT_INSTANCE_TYPE = "t3.micro"
DEFAULT_ROOT_VOLUME_GB = 16
# Nitro instances' first ENA interface; older (Xen) types call it eth0. Not a default: wgmesh finds it on the host.
AWS_EGRESS_INTERFACE = "ens5"
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
GRAVITON_FAMILY = re.compile(r"^(a1|[a-z]+\d+[a-z]*g[a-z]*)\.")
KEY_NAME = re.compile(r"^[\x20-\x7e]{1,255}$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
WIREGUARD_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_GENERATED = "wgmesh generates each peer's key pair and keeps it out of stack config; bump key_version to rotate it"
# Key fields the CLI's mesh file knows, or a user may guess: never used by the program, so refused, with the fix.
KEY_FIELDS: dict[str, tuple[str, str]] = {
    "private_key": (
        "a WireGuard private key in stack config is never used (the peer gets a generated key) and sits in plain text in "
        "Pulumi.<stack>.yaml",
        f"remove it and treat that key as exposed: {_GENERATED}",
    ),
    "public_key": (
        "ignored: a peer's public key is derived from the key wgmesh generates",
        f"remove it ({_GENERATED}; `pulumi stack output peers` shows each public key in use)",
    ),
    **{
        key: (
            "preshared keys in stack config are never used (wgmesh derives every pair's from a generated mesh secret) and "
            "sit in plain text in Pulumi.<stack>.yaml",
            "remove it and treat it as exposed: the preshared keys are generated",
        )
        for key in ("preshared_key", "preshared_keys", "psk")
    },
}
KEY_VALUE_FIX = (
    "keys never go in plain stack config: remove it (and treat it as exposed). WireGuard keys are generated (key_version "
    "rotates one peer's); the SSH key that logs in to the peers is a secret: "
    "`pulumi config set --secret wgmesh:sshPrivateKey < ~/.ssh/id_ed25519` (or a per-peer ssh_private_key_path)"
)


PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f")
CREDENTIAL_FIELDS = ("profile", "role_arn", "external_id", "session_name")
SECRET_CREDENTIAL_FIELDS = ("access_key", "secret_key", "access_key_id", "secret_access_key", "token", "session_token")
ROLE_ARN = re.compile(r"^arn:(aws(?:-[a-z]+(?:-[a-z])?)?):iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
PROFILE = re.compile(r"^[\w.@+-]{1,128}$")


def partition_of(region: str) -> str:
    """The AWS partition of a region code: credentials and roles never cross one."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    found = re.match(r"^[a-z]{2}-iso([a-z]?)-", region)
    if found:
        return f"aws-iso-{found.group(1)}" if found.group(1) else "aws-iso"
    return "aws"


@dataclass(frozen=True)
class AwsCredentials:
    """Where a region's provider takes its credentials: a named profile (its own credential set), and/or a role to
    assume with them. Nothing secret: keys stay in the profile's files or the environment."""

    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    session_name: str | None = None


@dataclass(frozen=True)
class AwsPeerSpec:
    """What the program creates for an AWS peer, all in ``region`` under that region's provider."""

    region: str
    vpc_cidr: IPNetwork
    subnet_cidr: IPNetwork
    availability_zone: str | None
    instance_type: str
    ssh_user: str
    key_name: str | None
    ssh_public_key: str | None
    ami_id: str | None
    ami_owner: str | None  # None: Canonical's account in the provider's partition
    ami_name_filter: str
    root_volume_size: int
    rebuild: bool = False  # take the current image and bootstrap on this run (replaces the instance if they changed)


@dataclass(frozen=True)
class ExternalPeerSpec:
    """How the program reaches a host it does not create, and where that host's WireGuard packets come from."""

    ssh_host: str
    ssh_port: int
    ssh_user: str
    source_cidrs: tuple[IPNetwork, ...]
    ssh_host_key: str | None = None  # "ssh-ed25519 AAAA...": pinned; None: learned on first contact


@dataclass(frozen=True)
class PeerSpec:
    """One peer as the program sees it: its kind-specific settings on top of the mesh's :class:`~wgmesh.mesh.model.Peer`."""

    name: str
    kind: str
    key_version: int
    ssh_private_key_path: str | None
    aws: AwsPeerSpec | None = None
    external: ExternalPeerSpec | None = None


@dataclass(frozen=True)
class StackSpec:
    """A validated stack: the mesh (AWS endpoints still pending), each peer's program settings, admin CIDRs, tags."""

    mesh: Mesh
    peers: tuple[PeerSpec, ...]
    admin_cidrs: tuple[IPNetwork, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    probed_addresses: tuple[tuple[str, str], ...] = ()
    quotas: AwsQuotas = field(default_factory=AwsQuotas)
    route_summaries: tuple[IPv4Network, ...] = ()
    allowed_account_ids: tuple[str, ...] = ()
    aws_plans: Mapping[str, AwsPeerPlan] = field(default_factory=dict)
    aws_credentials: Mapping[str, AwsCredentials] = field(default_factory=dict)  # by region or partition
    # Peers marked ``gone: true``: their host is gone for good. They are out of the mesh (the others drop them), and
    # nothing logs in to them: their install resource is kept without commands, so removing it runs none.
    gone: tuple[str, ...] = ()

    def credentials_for(self, region: str) -> AwsCredentials | None:
        """The region's own entry, else its partition's, else None (the ambient credentials)."""
        return self.aws_credentials.get(region) or self.aws_credentials.get(partition_of(region))

    @property
    def regions(self) -> tuple[str, ...]:
        """Every AWS region used, sorted: one explicit provider each."""
        return tuple(sorted({peer.aws.region for peer in self.peers if peer.aws is not None}))

    def peer(self, name: str) -> PeerSpec:
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(name)


def resolve_endpoints(mesh: Mesh, endpoints: Mapping[str, str]) -> Mesh:
    """The mesh with pending endpoints filled in once the cloud has created them (an Elastic IP's address).

    ``endpoints`` maps a peer name to a host; the port is the peer's listen port. Peers not named keep theirs.
    """
    peers = tuple(
        replace(peer, endpoint=Endpoint(endpoints[peer.name], peer.listen_port), endpoint_pending=False) if peer.name in endpoints else peer
        for peer in mesh.peers
    )
    return replace(mesh, peers=peers)


def default_ami_filter(instance_type: str) -> str:
    """Ubuntu 24.04 LTS for the instance type's architecture (Graviton families are arm64)."""
    return UBUNTU_NAME_FILTER.format(arch="arm64" if GRAVITON_FAMILY.match(instance_type) else "amd64")


class _Issues:
    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []

    def add(self, path: str, problem: str, fix: str) -> None:
        self.items.append(ConfigIssue(path, problem, fix))


def load_stack(raw: Any, *, path: str = CONFIG_KEY) -> StackSpec:
    """Validate the ``wgmesh:mesh`` stack config; :class:`MeshConfigError` with every problem otherwise."""
    if not isinstance(raw, Mapping):
        raise MeshConfigError(
            [ConfigIssue(path, f"expected a mapping, got {type(raw).__name__}", "set it in Pulumi.<stack>.yaml; see Pulumi.zhy.yaml")]
        )
    issues = _Issues()
    unknown = sorted(set(raw) - MESH_FIELDS - PROGRAM_MESH_FIELDS)
    for key in unknown:
        issues.add(f"{path}.{key}", "unknown field", f"remove it; known fields: {', '.join(sorted(MESH_FIELDS | PROGRAM_MESH_FIELDS))}")
    key_paths = frozenset(
        f"{path}.peers[{index}].{key}"
        for index, item in enumerate(raw.get("peers") if isinstance(raw.get("peers"), list) else [])
        if isinstance(item, Mapping)
        for key in item
        if key in KEY_FIELDS
    )
    _key_shaped_values(issues, path, raw, key_paths)
    # Where a key was found, other checks' messages could quote it (`'-----BEGIN ...' is not a login name`): only the
    # key's own issue is kept there.
    found_keys = {id(issue): issue.path for issue in issues.items}
    admin_cidrs = _admin_cidrs(issues, path, raw.get("admin_cidrs"))
    tags = _tags(issues, path, raw.get("tags"))
    quotas = _quotas(issues, path, raw.get("aws_quotas"))
    summaries = _summaries(issues, path, raw.get("route_summaries"), admin_cidrs)
    account_ids = _account_ids(issues, path, raw.get("allowed_account_ids"))
    credentials = _credentials(issues, path, raw.get("aws_credentials"))

    raw_peers = raw.get("peers")
    mesh_raw: dict[str, Any] = {key: value for key, value in raw.items() if key in MESH_FIELDS}
    programs: list[tuple[str, str, Any, int]] = []  # (name, kind, settings, subnet offset)
    mesh_peers: list[Any] = []
    pending: list[str] = []
    gone: list[str] = []
    if isinstance(raw_peers, list):
        for index, item in enumerate(raw_peers):
            where = f"{path}.peers[{index}]"
            if isinstance(item, Mapping) and "gone" in item:
                if not isinstance(item["gone"], bool):
                    issues.add(f"{where}.gone", f"{item['gone']!r} is not true or false", "use gone: true once the host is gone for good")
                elif item["gone"]:
                    gone.append(str(item.get("name")))
                    continue
            if not isinstance(item, Mapping):
                mesh_peers.append(item)  # load_mesh reports it
                programs.append(("", "", None, 0))
                continue
            peer_raw, program = _split_peer(issues, where, item)
            mesh_peers.append(peer_raw)
            programs.append(program)
            if program[1] == "aws":
                pending.append(str(item.get("name")))
        mesh_raw["peers"] = mesh_peers
    mesh: Mesh | None = None
    mesh_issues: list[ConfigIssue] = []
    try:
        mesh = load_mesh(mesh_raw, path=path, pending_endpoints=pending)
    except MeshConfigError as exc:
        mesh_issues = [_user_path(issue, path, programs) for issue in exc.issues]
    if mesh is not None and any(kind == "aws" for _, kind, _, _ in programs):
        _check_reachable_sources(issues, path, mesh, programs, admin_cidrs or bool(raw.get("admin_cidrs")))
    if any(kind == "aws" for _, kind, _, _ in programs):
        _check_aws_ipv4_only(issues, path, raw, programs)
        _check_partitions(issues, path, programs, credentials)
    plans: dict[str, AwsPeerPlan] = {}
    if mesh is not None and not issues.items and not mesh_issues:
        plans = _plans(mesh, programs, admin_cidrs, summaries, quotas)
        _check_summaries_avoid_endpoints(issues, path, mesh, programs, summaries)
        for problem in quota_problems(plans, quotas, summaries_given=bool(summaries)):
            issues.add(f"{path}.aws_quotas.{problem.quota}", problem.problem, problem.fix)
    guarded = set(found_keys.values())
    all_issues = [issue for issue in mesh_issues + issues.items if issue.path not in guarded or id(issue) in found_keys]
    if all_issues or mesh is None:
        raise MeshConfigError(sorted(all_issues, key=lambda issue: _path_order(issue.path)))

    specs = tuple(_spec(name, kind, settings) for (name, kind, settings, _) in programs)
    probed = _probed(mesh, raw_peers)
    return StackSpec(
        mesh=mesh,
        peers=specs,
        admin_cidrs=admin_cidrs,
        tags=tags,
        probed_addresses=probed,
        quotas=quotas,
        route_summaries=summaries,
        allowed_account_ids=account_ids,
        aws_plans=plans,
        aws_credentials=credentials,
        gone=tuple(gone),
    )


def _plans(
    mesh: Mesh,
    programs: list[tuple[str, str, Any, int]],
    admin_cidrs: tuple[IPNetwork, ...],
    summaries: tuple[IPv4Network, ...],
    quotas: AwsQuotas,
) -> dict[str, AwsPeerPlan]:
    """Every AWS peer's routes and security groups (see :mod:`wgmesh.mesh.awsplan`), from the validated settings."""
    regions = {name: settings[0]["region"] for name, kind, settings, _ in programs if kind == "aws"}
    sources = {name: _external_sources(mesh, name, settings[0]) for name, kind, settings, _ in programs if kind == "external"}
    return plan_peers(mesh, regions, sources, admin_cidrs=len(admin_cidrs), summaries=summaries, quotas=quotas)


def _external_sources(mesh: Mesh, name: str, settings: Mapping[str, Any]) -> list[str]:
    """Where an external peer's WireGuard packets come from: ``source_cidrs``, else its endpoint's address."""
    if settings["source_cidrs"]:
        return [str(cidr) for cidr in settings["source_cidrs"]]
    endpoint = mesh.peer(name).endpoint
    return [str(ip_network(endpoint.host))] if endpoint is not None and _is_ip(endpoint.host) else []


def _quotas(issues: _Issues, path: str, value: Any) -> AwsQuotas:
    if value is None:
        return AwsQuotas()
    if not isinstance(value, Mapping):
        issues.add(f"{path}.aws_quotas", f"expected a mapping of quota names to numbers, got {value!r:.60}", "e.g. {vpcs_per_region: 60}")
        return AwsQuotas()
    known: dict[str, int] = {}
    for key, item in value.items():
        where = f"{path}.aws_quotas.{key}"
        if key not in QUOTA_FIELDS:
            issues.add(where, "unknown quota", f"use one of {', '.join(QUOTA_FIELDS)}")
        elif isinstance(item, bool) or not isinstance(item, int) or item < 1:
            issues.add(where, f"{item!r} is not a positive integer", "give the quota AWS shows for the account (Service Quotas console)")
        else:
            known[key] = item
    return AwsQuotas(**known)


def _summaries(issues: _Issues, path: str, value: Any, admin_cidrs: tuple[IPNetwork, ...]) -> tuple[IPv4Network, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        issues.add(f"{path}.route_summaries", f"expected a list of CIDRs, got {value!r:.60}", "write e.g. [10.64.0.0/12]")
        return ()
    found: list[IPv4Network] = []
    for index, item in enumerate(value):
        where = f"{path}.route_summaries[{index}]"
        cidr = _cidr(issues, where, item, required=True)
        if cidr is None:
            continue
        if not isinstance(cidr, IPv4Network) or cidr.is_global or cidr.prefixlen < 8:
            issues.add(
                where,
                f"{cidr} is not a private IPv4 block of /8 or longer",
                "summarize the private block the VPCs are planned from, e.g. 10.64.0.0/12 (public addresses stay on the default route)",
            )
            continue
        clash = next((other for other in found if other.overlaps(cidr)), None)
        if clash is not None:
            issues.add(where, f"{cidr} overlaps route_summaries entry {clash}", "list disjoint blocks (or only the larger one)")
            continue
        admin = next((other for other in admin_cidrs if other.overlaps(cidr)), None)
        if admin is not None:
            issues.add(where, f"{cidr} overlaps admin_cidrs entry {admin}", "SSH replies would be routed into the mesh: exclude it")
            continue
        found.append(cidr)
    return tuple(found)


def _check_summaries_avoid_endpoints(
    issues: _Issues, path: str, mesh: Mesh, programs: list[tuple[str, str, Any, int]], summaries: tuple[IPv4Network, ...]
) -> None:
    """A summary covering a peer's endpoint or WireGuard source would route the tunnel's own packets into the tunnel."""
    for index, (name, kind, settings, _) in enumerate(programs):
        if kind != "external":
            continue
        addresses = [ip_network(cidr) for cidr in _external_sources(mesh, name, settings[0])]
        endpoint = mesh.peer(name).endpoint
        if endpoint is not None and _is_ip(endpoint.host):
            addresses.append(ip_network(endpoint.host))
        for summary in summaries:
            hit = next((address for address in addresses if address.overlaps(summary)), None)
            if hit is not None:
                issues.add(
                    f"{path}.route_summaries",
                    f"{summary} covers {hit}, where peer {name!r} (peers[{index}]) sends WireGuard from",
                    "keep public endpoints out of the summaries",
                )


def _account_ids(issues: _Issues, path: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else None
    if not items:
        issues.add(f"{path}.allowed_account_ids", f"expected a non-empty list of account ids, got {value!r:.60}", "e.g. ['123456789012']")
        return ()
    ids: list[str] = []
    for index, item in enumerate(items):
        text = str(item) if isinstance(item, int | str) and not isinstance(item, bool) else ""
        if not ACCOUNT_ID.match(text):
            issues.add(f"{path}.allowed_account_ids[{index}]", f"{item!r} is not a 12-digit AWS account id", "quote it: '012345678901'")
            continue
        ids.append(text)
    return tuple(ids)


def _credentials(issues: _Issues, path: str, value: Any) -> dict[str, AwsCredentials]:
    """``aws_credentials``: per partition (``aws-cn``) or region (``cn-north-1``), a profile and/or a role to assume."""
    if value is None:
        return {}
    where = f"{path}.aws_credentials"
    if not isinstance(value, Mapping):
        issues.add(
            where, f"expected a mapping of partitions or regions to credentials, got {value!r:.60}", "e.g. {aws-cn: {profile: china}}"
        )
        return {}
    found: dict[str, AwsCredentials] = {}
    for key, entry in value.items():
        at = f"{where}.{key}"
        if key not in PARTITIONS and not (isinstance(key, str) and REGION.match(key)):
            issues.add(
                at, f"{key!r} is neither an AWS partition nor a region", f"use a partition ({', '.join(PARTITIONS)}) or a region code"
            )
            continue
        if not isinstance(entry, Mapping):
            issues.add(at, "expected a mapping", "e.g. {profile: china} or {role_arn: 'arn:aws-cn:iam::123456789012:role/wgmesh'}")
            continue
        ok = True
        for field_name in entry:
            if field_name in SECRET_CREDENTIAL_FIELDS:
                issues.add(
                    f"{at}.{field_name}",
                    "access keys in stack config sit in plain text in Pulumi.<stack>.yaml",
                    "remove it (and rotate the key): name a profile from ~/.aws/config (profile: ...), or a role to assume",
                )
                ok = False
            elif field_name not in CREDENTIAL_FIELDS:
                issues.add(f"{at}.{field_name}", "unknown field", f"use {', '.join(CREDENTIAL_FIELDS)}")
                ok = False
        for field_name in CREDENTIAL_FIELDS:
            item = entry.get(field_name)
            if item is not None and (not isinstance(item, str) or not item.strip()):
                issues.add(f"{at}.{field_name}", f"{item!r} is not a non-empty string", "fix the value or leave the field out")
                ok = False
        profile, role = entry.get("profile"), entry.get("role_arn")
        if isinstance(profile, str) and not PROFILE.match(profile):
            issues.add(f"{at}.profile", f"{profile!r} is not a profile name", "name a profile of ~/.aws/config, e.g. china")
            ok = False
        if profile is None and role is None:
            issues.add(at, "names neither a profile nor a role", "give profile: <name in ~/.aws/config>, role_arn: <role>, or both")
            ok = False
        if isinstance(role, str):
            match = ROLE_ARN.match(role)
            expected = key if key in PARTITIONS else partition_of(str(key))
            if match is None:
                issues.add(f"{at}.role_arn", f"{role!r} is not an IAM role ARN", "e.g. arn:aws-cn:iam::123456789012:role/wgmesh-deploy")
                ok = False
            elif match.group(1) != expected:
                issues.add(
                    f"{at}.role_arn",
                    f"the role is in partition {match.group(1)}, but {key} is in {expected}: a role cannot be assumed across partitions",
                    f"name a role of the {expected} partition (arn:{expected}:iam::...)",
                )
                ok = False
        if ok:
            found[str(key)] = AwsCredentials(**{name: entry.get(name) for name in CREDENTIAL_FIELDS})
    return found


def _check_partitions(
    issues: _Issues, path: str, programs: list[tuple[str, str, Any, int]], credentials: Mapping[str, AwsCredentials]
) -> None:
    """Ambient credentials (AWS_PROFILE, the environment, an instance role) belong to one partition: a stack whose AWS
    peers span partitions must give every partition but one a profile of its own, or one of them fails half-way
    through `pulumi up` with an authentication error."""
    regions = sorted({settings[0]["region"] for _, kind, settings, _ in programs if kind == "aws" and settings and settings[0]["region"]})
    partitions: dict[str, list[str]] = {}
    for region in regions:
        partitions.setdefault(partition_of(region), []).append(region)
    if len(partitions) < 2:
        return
    ambient = {
        partition: [region for region in members if not (credentials.get(region) or credentials.get(partition) or AwsCredentials()).profile]
        for partition, members in partitions.items()
    }
    ambient = {partition: members for partition, members in ambient.items() if members}
    if len(ambient) > 1:
        listed = "; ".join(f"{partition}: {', '.join(members)}" for partition, members in sorted(ambient.items()))
        example = ", ".join(f"{partition}: {{profile: <profile for {partition}>}}" for partition in sorted(ambient))
        issues.add(
            f"{path}.aws_credentials",
            f"the AWS peers span partitions ({listed}) that would all use the one ambient credential set, valid in one "
            "partition only (a role_arn alone is assumed with those same credentials)",
            f"give each partition its own profile, e.g. aws_credentials: {{{example}}} (optionally with a role_arn to assume)",
        )


def _path_order(path: str) -> list[Any]:
    """Sort issues by where they are in the file: peers[2] before peers[10]."""
    return [int(part) if part.isdigit() else part for part in re.split(r"\[(\d+)\]", path)]


def _admin_cidrs(issues: _Issues, path: str, value: Any) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        issues.add(f"{path}.admin_cidrs", f"expected a list of CIDRs, got {value!r:.60}", "write e.g. [203.0.113.7/32]")
        return ()
    cidrs: list[IPNetwork] = []
    for index, item in enumerate(value):
        where = f"{path}.admin_cidrs[{index}]"
        try:
            cidr = ip_network(str(item), strict=True)
        except ValueError:
            issues.add(
                where, f"{item!r} is not a CIDR block", "write the public address of the machine running pulumi, e.g. 203.0.113.7/32"
            )
            continue
        if cidr.prefixlen == 0:
            issues.add(where, f"{cidr} opens SSH to the whole internet", "give the addresses you run `pulumi up` from, e.g. 203.0.113.7/32")
            continue
        cidrs.append(cidr)
    return tuple(cidrs)


def _tags(issues: _Issues, path: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str | int) for k, v in value.items()):
        issues.add(f"{path}.tags", f"expected a mapping of tag names to values, got {value!r:.60}", "write e.g. {team: platform}")
        return {}
    return {key: str(item) for key, item in sorted(value.items())}


def _key_fields(issues: _Issues, where: str, item: Mapping[str, Any]) -> None:
    """Key material a stack peer may not carry: the program generates every key, and stack config is plain text."""
    for key in sorted(set(item) & set(KEY_FIELDS)):
        problem, fix = KEY_FIELDS[key]
        issues.add(f"{where}.{key}", problem, fix)


def _key_shaped_values(issues: _Issues, path: str, value: Any, skip: frozenset[str]) -> None:
    """Any plain value anywhere in ``wgmesh:mesh`` shaped like a WireGuard key or an SSH/PEM private key."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}"
            if where not in skip:
                _key_shaped_values(issues, where, item, skip)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _key_shaped_values(issues, f"{path}[{index}]", item, skip)
    elif isinstance(value, str):
        if PRIVATE_KEY_BLOCK.search(value):
            issues.add(path, "holds an SSH or PEM private key, in plain text in Pulumi.<stack>.yaml", KEY_VALUE_FIX)
        elif _is_wireguard_key(value.strip()):
            issues.add(path, "looks like a WireGuard key (44 characters of base64, 32 bytes), in plain text", KEY_VALUE_FIX)


def _is_wireguard_key(text: str) -> bool:
    if not WIREGUARD_KEY.match(text):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _split_peer(issues: _Issues, where: str, item: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, str, Any, int]]:
    """The peer's mesh fields (for :func:`load_mesh`) and its program settings, checked per kind."""
    name = str(item.get("name", ""))
    kind = item.get("kind")
    if kind not in KINDS:
        issues.add(f"{where}.kind", f"{kind!r} is not a peer kind", "use 'aws' (wgmesh creates the host) or 'external' (a host you have)")
        kind = ""
    _key_fields(issues, where, item)
    peer_raw = {key: value for key, value in item.items() if key not in PROGRAM_PEER_FIELDS and key not in KEY_FIELDS}
    allowed = COMMON_FIELDS | (AWS_FIELDS if kind == "aws" else EXTERNAL_FIELDS if kind == "external" else PROGRAM_PEER_FIELDS)
    for key in sorted(set(item) & PROGRAM_PEER_FIELDS - allowed):
        issues.add(f"{where}.{key}", f"not a field of a {kind} peer", f"remove it (fields of {kind} peers: {', '.join(sorted(allowed))})")
    key_version = item.get("key_version", 1)
    if isinstance(key_version, bool) or not isinstance(key_version, int) or key_version < 1:
        issues.add(f"{where}.key_version", f"{key_version!r} is not a positive integer", "use 1, and bump it to rotate this peer's keys")
        key_version = 1
    key_path = item.get("ssh_private_key_path")
    if key_path is not None and (not isinstance(key_path, str) or not key_path):
        issues.add(f"{where}.ssh_private_key_path", f"{key_path!r} is not a file path", "give the path of the SSH private key file")
        key_path = None
    offset = 0
    settings: Any = None
    if kind == "aws":
        settings, vpc = _aws(issues, where, item)
        if "endpoint" in item:
            issues.add(f"{where}.endpoint", "an AWS peer's endpoint is its Elastic IP, created by wgmesh", "remove 'endpoint'")
            peer_raw.pop("endpoint")
        if vpc is not None:
            extra = peer_raw.get("subnets") or []
            peer_raw["subnets"] = [str(vpc), *(extra if isinstance(extra, list) else [extra])]
            offset = 1
    elif kind == "external":
        settings = _external(issues, where, item)
    return peer_raw, (name, kind, (settings, int(key_version), key_path), offset)


def _aws(issues: _Issues, where: str, item: Mapping[str, Any]) -> tuple[dict[str, Any], IPNetwork | None]:
    region = item.get("region")
    if not isinstance(region, str) or not REGION.match(region):
        issues.add(f"{where}.region", f"{region!r} is not an AWS region", "use a region code such as cn-northwest-1 or eu-west-1")
        region = ""
    vpc = _cidr(issues, f"{where}.vpc_cidr", item.get("vpc_cidr"), required=True)
    if vpc is not None and (not isinstance(vpc, IPv4Network) or not 16 <= vpc.prefixlen <= 28):
        issues.add(f"{where}.vpc_cidr", f"{vpc} is not a valid VPC CIDR", "AWS VPCs take an IPv4 block from /16 to /28")
        vpc = None
    subnet = _cidr(issues, f"{where}.subnet_cidr", item.get("subnet_cidr"), required=False)
    if subnet is not None and subnet.version == 6:
        issues.add(f"{where}.subnet_cidr", f"{subnet} is IPv6: AWS peers are IPv4 only in wgmesh", "give an IPv4 block inside vpc_cidr")
        subnet = None
    if subnet is not None and vpc is not None and not subnet.subnet_of(vpc):  # type: ignore[arg-type]
        issues.add(f"{where}.subnet_cidr", f"{subnet} is not inside vpc_cidr {vpc}", "pick a block inside the VPC, or leave it out")
    instance_type = item.get("instance_type", DEFAULT_INSTANCE_TYPE)
    if not isinstance(instance_type, str) or not INSTANCE_TYPE.match(instance_type):
        issues.add(f"{where}.instance_type", f"{instance_type!r} is not an EC2 instance type", "use e.g. t3.micro or t4g.small")
        instance_type = DEFAULT_INSTANCE_TYPE
    ssh_user = _user(issues, f"{where}.ssh_user", item.get("ssh_user", "ubuntu"))
    key_name, public_key = item.get("key_name"), item.get("ssh_public_key")
    if (key_name is None) == (public_key is None):
        issues.add(
            f"{where}.key_name",
            "give exactly one of key_name (an existing EC2 key pair) and ssh_public_key" + (" (both given)" if key_name else ""),
            "set key_name: <pair in the region> or ssh_public_key: 'ssh-ed25519 AAAA...' (a pair is then created)",
        )
    if key_name is not None and (not isinstance(key_name, str) or not KEY_NAME.match(key_name)):
        issues.add(f"{where}.key_name", f"{key_name!r} is not a key pair name", "use the name shown by `aws ec2 describe-key-pairs`")
    if public_key is not None:
        problem = _key_problem(public_key)
        if problem:
            issues.add(
                f"{where}.ssh_public_key",
                f"not an OpenSSH public key: {problem}",
                "paste one line of ~/.ssh/id_ed25519.pub ('ssh-ed25519 AAAA...')",
            )
    volume = item.get("root_volume_size", DEFAULT_ROOT_VOLUME_GB)
    if isinstance(volume, bool) or not isinstance(volume, int) or not 8 <= volume <= 16384:
        issues.add(f"{where}.root_volume_size", f"{volume!r} is not a size in GiB between 8 and 16384", "use e.g. 16")
        volume = DEFAULT_ROOT_VOLUME_GB
    rebuild = item.get("rebuild", False)
    if not isinstance(rebuild, bool):
        issues.add(f"{where}.rebuild", f"{rebuild!r} is not true or false", "write rebuild: true for one `pulumi up`, then remove it")
        rebuild = False
    for key in ("ami_id", "ami_owner", "ami_name_filter", "availability_zone"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            issues.add(f"{where}.{key}", f"{value!r} is not a non-empty string", "fix the value or leave the field out")
    settings = {
        "region": region,
        "vpc_cidr": vpc,
        "subnet_cidr": subnet or vpc,
        "availability_zone": item.get("availability_zone"),
        "instance_type": instance_type,
        "ssh_user": ssh_user,
        "key_name": key_name,
        "ssh_public_key": public_key.strip() if isinstance(public_key, str) else None,
        "ami_id": item.get("ami_id"),
        "ami_owner": item.get("ami_owner"),
        "ami_name_filter": item.get("ami_name_filter") or default_ami_filter(instance_type),
        "root_volume_size": volume,
        "rebuild": rebuild,
    }
    return settings, vpc


def _external(issues: _Issues, where: str, item: Mapping[str, Any]) -> dict[str, Any]:
    host = item.get("ssh_host")
    if host is None and isinstance(item.get("endpoint"), str):
        host = str(item["endpoint"]).rpartition(":")[0].strip("[]") or None
    if not isinstance(host, str) or not (_is_ip(host) or HOSTNAME.match(host)):
        issues.add(f"{where}.ssh_host", f"{host!r} is not an address or host name", "set ssh_host to where `ssh` reaches this host")
        host = ""
    try:
        port = parse_port(item.get("ssh_port", 22))
    except ValueError as exc:
        issues.add(f"{where}.ssh_port", str(exc), "use the host's SSH port, e.g. 22")
        port = 22
    user = _user(issues, f"{where}.ssh_user", item.get("ssh_user", "root"))
    sources: list[IPNetwork] = []
    raw_sources = item.get("source_cidrs")
    if raw_sources is not None:
        if not isinstance(raw_sources, list):
            issues.add(f"{where}.source_cidrs", f"expected a list of CIDRs, got {raw_sources!r:.60}", "write e.g. [198.51.100.30/32]")
        else:
            for index, value in enumerate(raw_sources):
                cidr = _cidr(issues, f"{where}.source_cidrs[{index}]", value, required=True)
                if cidr is not None and cidr.prefixlen == 0:
                    issues.add(
                        f"{where}.source_cidrs[{index}]", f"{cidr} would open WireGuard to everyone", "give the host's public address(es)"
                    )
                elif cidr is not None:
                    sources.append(cidr)
    host_key = item.get("ssh_host_key")
    if host_key is not None:
        problem = _key_problem(host_key)
        if problem:
            issues.add(
                f"{where}.ssh_host_key",
                f"not an SSH host key: {problem}",
                f"paste the host's key as `ssh-keyscan -t ed25519 {host or '<host>'}` prints it (check it on the host's console first)",
            )
            host_key = None
        else:
            host_key = " ".join(parse_ssh_key(host_key))
    return {"ssh_host": host, "ssh_port": port, "ssh_user": user, "source_cidrs": tuple(sources), "ssh_host_key": host_key}


def _key_problem(value: Any) -> str | None:
    """Why ``value`` is not an OpenSSH public key line, or None."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    try:
        parse_ssh_key(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_reachable_sources(issues: _Issues, path: str, mesh: Mesh, programs: list[tuple[str, str, Any, int]], admin: Any) -> None:
    """AWS security groups admit WireGuard only from known addresses: every external peer must have some."""
    if not admin:
        issues.add(f"{path}.admin_cidrs", "missing: AWS peers admit SSH only from these", "list the addresses you run `pulumi up` from")
    for index, (name, kind, settings, _) in enumerate(programs):
        if kind != "external" or settings is None:
            continue
        if settings[0]["source_cidrs"]:
            continue
        endpoint = mesh.peer(name).endpoint
        if endpoint is None or not _is_ip(endpoint.host):
            issues.add(
                f"{path}.peers[{index}].source_cidrs",
                "missing: this peer has no IP endpoint, so AWS security groups cannot admit its WireGuard packets",
                "list the public addresses its packets come from (its NAT gateway), e.g. [198.51.100.7/32]",
            )


def _check_aws_ipv4_only(issues: _Issues, path: str, raw: Mapping[str, Any], programs: list[tuple[str, str, Any, int]]) -> None:
    """Refuse IPv6 that an AWS peer would have to carry: the component builds IPv4 only (VPC, routes, security group).

    An IPv6 tunnel network gives every peer, AWS ones included, an IPv6 tunnel address; an IPv6 subnet on an AWS peer
    needs an IPv6 VPC; an external peer's IPv6 endpoint or source CIDR is one an AWS peer could neither dial nor
    admit in its security group; an IPv6 admin CIDR cannot be an IPv4 SSH rule. Each is named where it was written.
    Values that do not parse are left to the checks that report them.
    """
    aws = [name for name, kind, _, _ in programs if kind == "aws"]
    network = raw.get("network")
    for index, value in enumerate(network if isinstance(network, list) else [network]):
        if _version(value) == 6:
            where = f"{path}.network[{index}]" if isinstance(network, list) else f"{path}.network"
            issues.add(
                where,
                f"IPv6 tunnel network {value} in a mesh with AWS peers ({', '.join(aws)}), which wgmesh builds IPv4 only",
                "remove it (keep the IPv4 tunnel network), or put the dual-stack hosts in a mesh without AWS peers",
            )
    for index, value in enumerate(raw.get("admin_cidrs") if isinstance(raw.get("admin_cidrs"), list) else []):
        if _version(value) == 6:
            issues.add(f"{path}.admin_cidrs[{index}]", f"{value} is IPv6: AWS peers admit SSH over IPv4 only", "give IPv4 addresses")
    peers = raw.get("peers") if isinstance(raw.get("peers"), list) else []
    for index, (item, (_, kind, _, _)) in enumerate(zip(peers, programs, strict=False)):
        if not isinstance(item, Mapping):
            continue
        where = f"{path}.peers[{index}]"
        if kind == "aws":
            subnets = item.get("subnets")
            for number, value in enumerate(subnets if isinstance(subnets, list) else [subnets]):
                if _version(value) == 6:
                    at = f"{where}.subnets[{number}]" if isinstance(subnets, list) else f"{where}.subnets"
                    issues.add(at, f"IPv6 subnet {value} on an AWS peer: its VPC is IPv4 only in wgmesh", "remove it (IPv4 subnets only)")
        elif kind == "external":
            endpoint = item.get("endpoint")
            if isinstance(endpoint, str) and endpoint.startswith("["):
                issues.add(
                    f"{where}.endpoint",
                    f"IPv6 endpoint {endpoint}: the AWS peers ({', '.join(aws)}) reach and admit other peers over IPv4 only",
                    "give this peer an IPv4 endpoint (address:port) while the mesh has AWS peers",
                )
            sources = item.get("source_cidrs")
            for number, value in enumerate(sources if isinstance(sources, list) else []):
                if _version(value) == 6:
                    issues.add(
                        f"{where}.source_cidrs[{number}]",
                        f"{value} is IPv6: AWS security groups admit WireGuard from IPv4 sources only in wgmesh",
                        "list the IPv4 addresses this peer's packets come from",
                    )


def _version(value: Any) -> int | None:
    """The IP version of a CIDR or address as written, None when it is neither (reported elsewhere)."""
    try:
        return ip_network(str(value), strict=False).version
    except ValueError:
        return None


def _cidr(issues: _Issues, where: str, value: Any, *, required: bool) -> IPNetwork | None:
    if value is None:
        if required:
            issues.add(where, "missing", "write a CIDR block such as 192.168.10.0/24")
        return None
    try:
        return ip_network(str(value), strict=True)
    except ValueError:
        issues.add(where, f"{value!r} is not a CIDR block (or has host bits set)", "write a CIDR block such as 192.168.10.0/24")
        return None


def _user(issues: _Issues, where: str, value: Any) -> str:
    if not isinstance(value, str) or not USER_NAME.match(value):
        issues.add(where, f"{value!r} is not a login name", "use the host's SSH user, e.g. ubuntu or root")
        return "root"
    return value


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _user_path(issue: ConfigIssue, path: str, programs: list[tuple[str, str, Any, int]]) -> ConfigIssue:
    """Map ``peers[i].subnets[k]`` of an AWS peer back to what the user wrote: ``vpc_cidr`` or ``subnets[k-1]``."""
    match = re.match(rf"^{re.escape(path)}\.peers\[(\d+)\]\.subnets\[(\d+)\](.*)$", issue.path)

    def remap(text: str) -> str:
        def one(found: re.Match[str]) -> str:
            index, sub = int(found.group(1)), int(found.group(2))
            if index < len(programs) and programs[index][3]:
                return f"{path}.peers[{index}]." + ("vpc_cidr" if sub == 0 else f"subnets[{sub - 1}]")
            return found.group(0)

        return re.sub(rf"{re.escape(path)}\.peers\[(\d+)\]\.subnets\[(\d+)\]", one, text)

    if match is None and "subnets[" not in issue.problem:
        return issue
    return ConfigIssue(remap(issue.path), remap(issue.problem), issue.fix)


def _spec(name: str, kind: str, settings: tuple[Any, int, str | None]) -> PeerSpec:
    values, key_version, key_path = settings
    if kind == "aws":
        return PeerSpec(name, kind, key_version, key_path, aws=AwsPeerSpec(**values))
    return PeerSpec(name, kind, key_version, key_path, external=ExternalPeerSpec(**values))


def _probed(mesh: Mesh, raw_peers: Any) -> tuple[tuple[str, str], ...]:
    """Allocated tunnel addresses that are not their peer's hashed slot (it collided with another peer's).

    The CLI pins allocations in its key file; a Pulumi program has no such file, so the program warns about
    these: such an address could move if the peer it collided with is removed. Pinning it (``address:``) fixes it.
    """
    explicit = {str(item.get("name")) for item in raw_peers if isinstance(item, Mapping) and item.get("address") is not None}
    probed: list[tuple[str, str]] = []
    for peer in mesh.peers:
        if peer.name in explicit:
            continue
        for address in peer.addresses:
            network = next(network for network in mesh.networks if address.ip in network)
            if index_of(network, address) != preferred_index(peer.name, network):
                probed.append((peer.name, str(address.ip)))
    return tuple(probed)
