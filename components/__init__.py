"""wgmesh's Pulumi components: reusable from any Pulumi project (``pip install git+<this repo>``).

``Mesh`` is the whole mesh from one description (the stack config's ``wgmesh:mesh``): the way to build one.
Underneath, ``WireGuardPeer`` is one mesh member (an AWS host wgmesh creates, or an external host) and
``MeshComponent`` renders and installs every member's WireGuard config over SSH over peers built by the caller.
:func:`deploy_stack` is this repository's own program's use of ``Mesh``.
"""

from wgmesh.components.mesh_api import Mesh
from wgmesh.components.mesh_component import MeshArgs, MeshComponent
from wgmesh.components.peer import AwsHostArgs, ExternalHostArgs, WireGuardPeer, WireGuardPeerArgs
from wgmesh.components.stack import DeployedMesh, deploy_stack

__all__ = [
    "AwsHostArgs",
    "DeployedMesh",
    "ExternalHostArgs",
    "Mesh",
    "MeshArgs",
    "MeshComponent",
    "WireGuardPeer",
    "WireGuardPeerArgs",
    "deploy_stack",
]
