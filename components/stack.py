"""From a validated stack config to resources: one explicit ``aws.Provider`` per region, the peers, the mesh.

Kept apart from ``__main__.py`` so that other programs (and the tests) build the same thing from a
:class:`~mesh.stackconfig.StackSpec` without reading Pulumi config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.mesh_api import Mesh
from components.peer import WireGuardPeer
from mesh.awsplan import mesh_routes
from mesh.stackconfig import StackSpec

__all__ = ["DeployedMesh", "deploy_stack", "mesh_routes"]


@dataclass
class DeployedMesh:
    """What :func:`deploy_stack` made: providers by region, peers by name, and the mesh."""

    providers: dict[str, aws.Provider]
    peers: dict[str, WireGuardPeer]
    mesh: Mesh


def deploy_stack(
    spec: StackSpec,
    *,
    ssh_private_key: pulumi.Input[str] | None,
    ssh_private_keys: Mapping[str, pulumi.Input[str]] | None = None,
    name: str = "wgmesh",
    verify: bool = True,
) -> DeployedMesh:
    """Create every resource of the stack: one :class:`~components.mesh_api.Mesh`. ``spec`` is already validated.

    The providers stay where this program always made them (the stack's root, ``aws-<region>``), and the mesh adopts
    the unprefixed names the program gave its peers and commands before ``Mesh`` existed (aliases): a stack deployed
    by an earlier wgmesh keeps every resource (``tests/test_urn_stability.py``).
    """
    # allowed_account_ids: a stack pointed at the wrong account stops at the provider, before anything is created.
    accounts = list(spec.allowed_account_ids) or None
    providers = {region: _provider(spec, region, accounts, name) for region in spec.regions}
    mesh = Mesh(
        name,
        spec,
        ssh_private_key=ssh_private_key,
        ssh_private_keys=dict(ssh_private_keys or {}),
        verify=verify,
        providers=providers,
        adopt_unprefixed=True,
    )
    return DeployedMesh(providers=providers, peers=mesh.peers, mesh=mesh)


def _provider(spec: StackSpec, region: str, accounts: list[str] | None, name: str) -> aws.Provider:
    """The region's provider: its credentials (a profile, a role to assume: ``aws_credentials``, else the ambient ones)
    and default tags, so that every taggable resource under it carries the stack's tags."""
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
        f"aws-{region}",
        region=region,
        allowed_account_ids=accounts,
        profile=credentials.profile if credentials is not None else None,
        assume_roles=role,
        default_tags=aws.ProviderDefaultTagsArgs(tags={**spec.tags, "wgmesh:mesh": name}),
    )
