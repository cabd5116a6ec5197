"""From a validated stack config to resources: one explicit ``aws.Provider`` per region, the peers, the mesh.

Kept apart from ``__main__.py`` so that other programs (and the tests) build the same thing from a
:class:`~wgmesh.mesh.stackconfig.StackSpec` without reading Pulumi config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from wgmesh.components.mesh_api import Mesh, regional_provider
from wgmesh.components.peer import WireGuardPeer
from wgmesh.mesh.awsplan import mesh_routes
from wgmesh.mesh.stackconfig import StackSpec

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
    """Create every resource of the stack: one :class:`~wgmesh.components.mesh_api.Mesh`. ``spec`` is already validated.

    The providers stay where this program always made them (the stack's root, ``aws-<region>``), and the mesh adopts
    the unprefixed names the program gave its peers and commands before ``Mesh`` existed (aliases): a stack deployed
    by an earlier wgmesh keeps every resource (``tests/test_urn_stability.py``).
    """
    providers = {region: regional_provider(f"aws-{region}", spec, region, mesh_name=name, tags=spec.tags) for region in spec.regions}
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
