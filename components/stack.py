"""From a validated stack config to resources: one explicit ``aws.Provider`` per region, the peers, the mesh.

Kept apart from ``__main__.py`` so that other programs (and the tests) build the same thing from a
:class:`~mesh.stackconfig.StackSpec` without reading Pulumi config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.mesh_component import MeshArgs, MeshComponent
from components.peer import AwsHostArgs, ExternalHostArgs, WireGuardPeer, WireGuardPeerArgs
from mesh.awsplan import mesh_routes
from mesh.stackconfig import PeerSpec, StackSpec

__all__ = ["DeployedMesh", "deploy_stack", "mesh_routes"]


@dataclass
class DeployedMesh:
    """What :func:`deploy_stack` made: providers by region, peers by name, and the mesh."""

    providers: dict[str, aws.Provider]
    peers: dict[str, WireGuardPeer]
    mesh: MeshComponent


def deploy_stack(
    spec: StackSpec,
    *,
    ssh_private_key: pulumi.Input[str] | None,
    ssh_private_keys: Mapping[str, pulumi.Input[str]] | None = None,
    name: str = "wgmesh",
    verify: bool = True,
) -> DeployedMesh:
    """Create every resource of the stack. ``spec`` is already validated, so nothing here can fail half-way on input."""
    # allowed_account_ids: a stack pointed at the wrong account stops at the provider, before anything is created.
    accounts = list(spec.allowed_account_ids) or None
    providers = {region: aws.Provider(f"aws-{region}", region=region, allowed_account_ids=accounts) for region in spec.regions}
    peers = {peer.name: WireGuardPeer(peer.name, _peer_args(spec, peer, providers)) for peer in spec.peers}
    mesh = MeshComponent(
        name,
        MeshArgs(
            mesh=spec.mesh,
            peers=peers,
            ssh_private_key=ssh_private_key,
            ssh_private_keys=dict(ssh_private_keys or {}),
            verify=verify,
            gone=spec.gone,
        ),
    )
    return DeployedMesh(providers=providers, peers=peers, mesh=mesh)


def _peer_args(spec: StackSpec, peer: PeerSpec, providers: Mapping[str, aws.Provider]) -> WireGuardPeerArgs:
    member = spec.mesh.peer(peer.name)
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
            key_name=settings.key_name,
            ssh_public_key=settings.ssh_public_key,
            ami_id=settings.ami_id,
            ami_owner=settings.ami_owner,
            ami_name_filter=settings.ami_name_filter,
            root_volume_size=settings.root_volume_size,
            tags=dict(spec.tags),
        )
    else:
        assert peer.external is not None
        host = ExternalHostArgs(
            ssh_host=peer.external.ssh_host,
            ssh_port=peer.external.ssh_port,
            ssh_user=peer.external.ssh_user,
            endpoint_host=member.endpoint.host if member.endpoint is not None else None,
            source_cidrs=[str(cidr) for cidr in peer.external.source_cidrs],
            ssh_host_key=peer.external.ssh_host_key,
        )
    plan = spec.aws_plans.get(peer.name)
    return WireGuardPeerArgs(
        host=host,
        listen_port=member.listen_port,
        key_version=peer.key_version,
        mesh_routes=plan.routes if plan is not None else mesh_routes(spec.mesh, peer.name),
        wireguard_groups=len(plan.wireguard_groups) if plan is not None else 1,
        rules_per_group=spec.quotas.inbound_rules_per_security_group,
    )
