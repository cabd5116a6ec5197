"""``Mesh``: the whole mesh from one description, the way to build a wgmesh mesh (``wgmesh:index:Mesh``).

The description is the stack config's ``wgmesh:mesh`` (the same snake_case fields, validated by the same
:func:`wgmesh.mesh.stackconfig.load_stack`, every problem at once): the peers, AWS (created here) or external (reached over
SSH), and the mesh settings. Everything else is derived from it: each AWS peer's routes (every other peer's subnets
and the tunnel networks, summarized and planned by :mod:`wgmesh.mesh.awsplan`), security-group plan, egress interface
(``ens5`` on EC2), default tags, endpoints. Values that can come from other resources may be Pulumi Inputs
(:data:`INPUT_FIELDS`): an external host's ``ssh_host``, ``endpoint`` (its host; the port is its ``listen_port``)
and ``ssh_host_key``, an AWS peer's ``ssh_public_key``, ``key_name`` and ``ami_id``; so may the SSH private keys.

Every child is registered under the mesh (``parent=self``) and named after it: peer ``a`` of mesh ``m`` is the
``WireGuardPeer`` ``m-a`` (its resources ``m-a-vpc``, ...), its commands ``m-a-install`` and ``m-a-verify``, so two
meshes fit in one stack. Tags and descriptions keep the peer's own name.

AWS providers: ``providers`` maps a region or a partition (``aws-cn``) to a provider; else an ``aws`` provider in
``opts`` (``provider=`` or ``providers=``) serves every AWS peer; else the mesh makes one per region under itself
(``<mesh>-aws-<region>``) with the description's credentials and ``default_tags``. ``opts`` is the usual
``ResourceOptions`` (aliases, transformations, protect, ...), inherited by every child.

The admission rule (``docs/aws.md``): the mesh builds its AWS peers and admits their WireGuard ports from each other
in this constructor, so no peer of a ``Mesh`` ever waits for its admission.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_aws as aws

from wgmesh.components.mesh_component import MESH_TYPE, MeshArgs, MeshBuilder, _check_args
from wgmesh.components.peer import AwsHostArgs, ExternalHostArgs, WireGuardPeer, WireGuardPeerArgs
from wgmesh.mesh.awsplan import mesh_routes
from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.stackconfig import PeerSpec, StackSpec, load_stack, partition_of

# Fields of a peer that may be a Pulumi Input, by kind, with the stand-in validation sees until the value is known.
INPUT_FIELDS: dict[str, dict[str, Any]] = {
    "external": {"ssh_host": "pending.invalid", "endpoint": None, "ssh_host_key": None},
    "aws": {
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDYC/JGQZXLRMcDONW77193LHhDVNHAri6EpSYJsyceC pending",
        "key_name": "pending",
        "ami_id": "ami-0123456789abcdef0",
    },
}
# Stand-in endpoints (TEST-NET-1) for external peers whose endpoint is an Input: known only once the host exists.
PENDING_ENDPOINT_NETWORK = "192.0.2."


def is_input(value: Any) -> bool:
    """Whether ``value`` is a Pulumi Input that is not a plain value (an Output, an awaitable)."""
    return isinstance(value, pulumi.Output) or inspect.isawaitable(value)


def split_inputs(description: Mapping[str, Any], path: str = "mesh") -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """The description with each Input replaced by its stand-in, and the Inputs by (peer name, field).

    An Input anywhere else is refused, naming its path: the mesh's shape (peers, addresses, subnets) must be known
    when the program runs.
    """
    plain = dict(description)
    inputs: dict[tuple[str, str], Any] = {}
    issues: list[ConfigIssue] = []
    for key, value in plain.items():
        if key != "peers" and is_input(value):
            issues.append(ConfigIssue(f"{path}.{key}", "is another resource's output", "give a plain value: it shapes the mesh"))
    peers = plain.get("peers")
    if isinstance(peers, list):
        plain["peers"] = []
        for index, item in enumerate(peers):
            if not isinstance(item, Mapping):
                plain["peers"].append(item)
                continue
            item = dict(item)
            allowed = INPUT_FIELDS.get(str(item.get("kind")), {})
            for key, value in list(item.items()):
                if not is_input(value):
                    continue
                if key not in allowed:
                    issues.append(
                        ConfigIssue(
                            f"{path}.peers[{index}].{key}",
                            "is another resource's output",
                            f"give a plain value; a {item.get('kind')} peer takes outputs in {', '.join(sorted(allowed)) or 'no field'}",
                        )
                    )
                    continue
                inputs[(str(item.get("name")), key)] = value
                if key == "endpoint":
                    item[key] = f"{PENDING_ENDPOINT_NETWORK}{index + 1}:{item.get('listen_port', description.get('listen_port', 51820))}"
                elif allowed[key] is None:
                    del item[key]
                else:
                    item[key] = allowed[key]
            plain["peers"].append(item)
    if issues:
        raise MeshConfigError(issues)
    return plain, inputs


class Mesh(MeshBuilder, pulumi.ComponentResource):
    """A WireGuard full mesh (``wgmesh:index:Mesh``) of AWS peers it creates and external hosts it reaches over SSH,
    from one description.

    Attributes: ``spec`` (the validated :class:`~wgmesh.mesh.stackconfig.StackSpec`), ``peers`` (``WireGuardPeer`` by peer
    name), ``providers`` (the AWS provider of each region), ``public_keys``, ``endpoints`` (``host:port`` of each peer
    that has one), ``tunnel_addresses``, ``config_digests``, ``verification``, ``relays`` and ``configs`` (a secret).
    """

    def __init__(
        self,
        name: str,
        description: Mapping[str, Any] | StackSpec,
        *,
        ssh_private_key: pulumi.Input[str] | None = None,
        ssh_private_keys: Mapping[str, pulumi.Input[str]] | None = None,
        verify: bool = True,
        providers: Mapping[str, aws.Provider] | None = None,
        default_tags: Mapping[str, str] | None = None,
        adopt_unprefixed: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``adopt_unprefixed``: this mesh takes over a stack whose peers and per-peer commands were named without the
        mesh's prefix (built by wgmesh's program before this component, or by ``WireGuardPeer`` + ``MeshComponent``):
        every moved resource gets an alias, so nothing is replaced."""
        if isinstance(description, StackSpec):
            spec, inputs = description, {}
        else:
            plain, inputs = split_inputs(description)
            spec = load_stack(plain, path="mesh")
            pending = {peer for peer, key in inputs if key == "endpoint"}
            if pending:
                spec = replace(
                    spec,
                    mesh=replace(
                        spec.mesh,
                        peers=tuple(replace(peer, endpoint_pending=True) if peer.name in pending else peer for peer in spec.mesh.peers),
                    ),
                )
        super().__init__(MESH_TYPE, name, None, opts)
        self._peer_prefix = f"{name}-"
        self._alias_unprefixed = adopt_unprefixed
        self.spec = spec
        tags = {**spec.tags, **dict(default_tags or {})}
        self.providers = self._aws_providers(name, spec, dict(providers or {}), opts, tags)
        self.peers: dict[str, WireGuardPeer] = {}
        for peer in spec.peers:
            aliases = [pulumi.Alias(name=peer.name, parent=pulumi.ROOT_STACK_RESOURCE)] if adopt_unprefixed else None
            self.peers[peer.name] = WireGuardPeer(
                f"{name}-{peer.name}",
                _peer_args(spec, peer, self.providers, inputs, tags),
                opts=pulumi.ResourceOptions(parent=self, aliases=aliases),
            )
        args = MeshArgs(
            mesh=spec.mesh,
            peers=self.peers,
            ssh_private_key=ssh_private_key,
            ssh_private_keys=dict(ssh_private_keys or {}),
            verify=verify,
            gone=spec.gone,
        )
        try:
            _check_args(args)
            outputs = self._build_mesh(name, args)
        except Exception as exc:
            for peer_component in self.peers.values():
                peer_component.abandon(f"Mesh {name!r} failed: {exc}")
            raise
        self.endpoints = pulumi.Output.all(
            **{
                member.name: self.peers[member.name].endpoint_host.apply(lambda host, port=member.listen_port: f"{host}:{port}")
                for member in spec.mesh.peers
                if self.peers[member.name].endpoint_host is not None
            }
        )
        self.tunnel_addresses = {member.name: [str(address) for address in member.addresses] for member in spec.mesh.peers}
        outputs.update(public_keys=self.public_keys, endpoints=self.endpoints, tunnel_addresses=self.tunnel_addresses)
        self.register_outputs(outputs)

    def _aws_providers(
        self,
        name: str,
        spec: StackSpec,
        given: dict[str, aws.Provider],
        opts: pulumi.ResourceOptions | None,
        tags: Mapping[str, str],
    ) -> dict[str, aws.Provider]:
        """The AWS provider of each region: given for it or its partition, else ``opts``' aws provider, else a new one."""
        from_opts = _aws_provider_in(opts)
        chosen: dict[str, aws.Provider] = {}
        for region in spec.regions:
            provider = given.get(region) or given.get(partition_of(region)) or from_opts
            chosen[region] = provider or regional_provider(
                f"{name}-aws-{region}", spec, region, mesh_name=name, tags=tags, opts=pulumi.ResourceOptions(parent=self)
            )
        return chosen


def regional_provider(
    resource_name: str,
    spec: StackSpec,
    region: str,
    *,
    mesh_name: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions | None = None,
) -> aws.Provider:
    """A region's provider: its credentials (a profile, a role to assume: ``aws_credentials``, else the ambient ones),
    the stack's allowed accounts (a stack pointed at the wrong account stops here, before anything is created) and
    default tags, so that every taggable resource under it carries the stack's tags and the mesh's name."""
    credentials = spec.credentials_for(region)
    role = (
        [
            aws.ProviderAssumeRoleArgs(
                role_arn=credentials.role_arn, external_id=credentials.external_id, session_name=credentials.session_name
            )
        ]
        if credentials is not None and credentials.role_arn
        else None
    )
    return aws.Provider(
        resource_name,
        region=region,
        allowed_account_ids=list(spec.allowed_account_ids) or None,
        profile=credentials.profile if credentials is not None else None,
        assume_roles=role,
        default_tags=aws.ProviderDefaultTagsArgs(tags={**tags, "wgmesh:mesh": mesh_name}),
        opts=opts,
    )


def _aws_provider_in(opts: pulumi.ResourceOptions | None) -> aws.Provider | None:
    """The ``aws`` provider passed in ``opts.provider`` or ``opts.providers`` (a list or a mapping), if any."""
    if opts is None:
        return None
    candidates: list[Any] = [opts.provider]
    if isinstance(opts.providers, Mapping):
        candidates.append(opts.providers.get("aws"))
    elif opts.providers:
        candidates.extend(opts.providers)
    for provider in candidates:
        if isinstance(provider, aws.Provider):
            return provider
    return None


def _peer_args(
    spec: StackSpec,
    peer: PeerSpec,
    providers: Mapping[str, aws.Provider],
    inputs: Mapping[tuple[str, str], Any],
    tags: Mapping[str, str],
) -> WireGuardPeerArgs:
    """A peer's component args, every default and route derived from the description."""
    member = spec.mesh.peer(peer.name)

    def given(key: str, plain: Any) -> Any:
        return inputs.get((peer.name, key), plain)

    host: AwsHostArgs | ExternalHostArgs
    if peer.aws is not None:
        settings = peer.aws
        host = AwsHostArgs(
            provider=providers[settings.region],
            vpc_cidr=str(settings.vpc_cidr),
            subnet_cidr=str(settings.subnet_cidr),
            admin_cidrs=[str(cidr) for cidr in spec.admin_cidrs],
            availability_zone=settings.availability_zone,
            instance_type=settings.instance_type,
            ssh_user=settings.ssh_user,
            key_name=given("key_name", settings.key_name),
            ssh_public_key=given("ssh_public_key", settings.ssh_public_key),
            ami_id=given("ami_id", settings.ami_id),
            ami_owner=settings.ami_owner,
            ami_name_filter=settings.ami_name_filter,
            root_volume_size=settings.root_volume_size,
            tags=dict(tags),
            rebuild=settings.rebuild,
        )
    else:
        assert peer.external is not None
        endpoint = inputs.get((peer.name, "endpoint"))
        host = ExternalHostArgs(
            ssh_host=given("ssh_host", peer.external.ssh_host),
            ssh_port=peer.external.ssh_port,
            ssh_user=peer.external.ssh_user,
            endpoint_host=endpoint if endpoint is not None else (member.endpoint.host if member.endpoint is not None else None),
            source_cidrs=[str(cidr) for cidr in peer.external.source_cidrs],
            ssh_host_key=given("ssh_host_key", peer.external.ssh_host_key),
        )
    plan = spec.aws_plans.get(peer.name)
    return WireGuardPeerArgs(
        host=host,
        listen_port=member.listen_port,
        key_version=peer.key_version,
        mesh_routes=plan.routes if plan is not None else mesh_routes(spec.mesh, peer.name),
        wireguard_groups=len(plan.wireguard_groups) if plan is not None else 1,
        rules_per_group=spec.quotas.inbound_rules_per_security_group,
        peer_name=peer.name,
    )
