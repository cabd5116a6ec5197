"""wgmesh's pure core: model, validation, addressing, keys and wg-quick rendering. No Pulumi import here."""

from wgmesh.mesh.errors import ConfigIssue, MeshConfigError
from wgmesh.mesh.model import Endpoint, Mesh, Peer
from wgmesh.mesh.render import MeshKeys, build_peer_config, render_all, render_peer_config
from wgmesh.mesh.validation import load_mesh

__all__ = [
    "ConfigIssue",
    "Endpoint",
    "Mesh",
    "MeshConfigError",
    "MeshKeys",
    "Peer",
    "build_peer_config",
    "load_mesh",
    "render_all",
    "render_peer_config",
]
