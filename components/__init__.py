"""wgmesh's Pulumi components: reusable from any Pulumi project (``pip install git+<this repo>``).

``WireGuardPeer`` is one mesh member (an AWS host wgmesh creates, or an external host), ``MeshComponent`` renders
and installs every member's WireGuard config over SSH, and :func:`deploy_stack` builds both from a validated stack
config, as this repository's own ``__main__.py`` does.
"""

from components.mesh_component import MeshArgs, MeshComponent
from components.peer import AwsHostArgs, ExternalHostArgs, WireGuardPeer, WireGuardPeerArgs
from components.stack import DeployedMesh, deploy_stack

__all__ = [
    "AwsHostArgs",
    "DeployedMesh",
    "ExternalHostArgs",
    "MeshArgs",
    "MeshComponent",
    "WireGuardPeer",
    "WireGuardPeerArgs",
    "deploy_stack",
]
