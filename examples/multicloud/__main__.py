"""A Pulumi project of its own that uses wgmesh's components (``pip install git+<wgmesh repo>``).

It builds a three-member mesh: an AWS peer in us-east-1, one in eu-west-1 (each with its own VPC, created here)
and an on-premises host we only reach over SSH. Unlike wgmesh's own program it does not read a ``wgmesh:mesh``
stack config: it describes the mesh in code with the pure ``mesh`` package, then hands that description and
the peers to ``MeshComponent``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components import AwsHostArgs, ExternalHostArgs, MeshArgs, MeshComponent, WireGuardPeer, WireGuardPeerArgs
from components.stack import mesh_routes
from mesh import load_mesh

config = pulumi.Config()
admin_cidr = config.require("adminCidr")
ssh_public_key = config.require("sshPublicKey")
on_prem_address = config.require("onPremAddress")

# The mesh in code: the AWS peers' endpoints are their Elastic IPs, known once created ("pending" here).
description = load_mesh(
    {
        "network": "10.99.0.0/24",
        "peers": [
            {"name": "use1", "address": "10.99.0.1", "subnets": ["10.10.0.0/16"], "egress_interface": "ens5"},
            {"name": "euw1", "address": "10.99.0.2", "subnets": ["10.20.0.0/16"], "egress_interface": "ens5"},
            {"name": "onprem", "address": "10.99.0.3", "endpoint": f"{on_prem_address}:51820", "subnets": ["172.30.0.0/20"]},
        ],
    },
    pending_endpoints=["use1", "euw1"],
)

providers = {region: aws.Provider(f"aws-{region}", region=region) for region in ("us-east-1", "eu-west-1")}


def aws_peer(name: str, region: str, vpc_cidr: str) -> WireGuardPeer:
    host = AwsHostArgs(provider=providers[region], vpc_cidr=vpc_cidr, admin_cidrs=[admin_cidr], ssh_public_key=ssh_public_key)
    return WireGuardPeer(name, WireGuardPeerArgs(host=host, mesh_routes=mesh_routes(description, name)))


peers = {
    "use1": aws_peer("use1", "us-east-1", "10.10.0.0/16"),
    "euw1": aws_peer("euw1", "eu-west-1", "10.20.0.0/16"),
    "onprem": WireGuardPeer(
        "onprem",
        WireGuardPeerArgs(
            host=ExternalHostArgs(ssh_host=on_prem_address, endpoint_host=on_prem_address, ssh_user="admin"),
            mesh_routes=mesh_routes(description, "onprem"),
        ),
    ),
}
mesh = MeshComponent("example", MeshArgs(mesh=description, peers=peers, ssh_private_key=config.require_secret("sshPrivateKey")))

pulumi.export("public_keys", {name: peer.public_key for name, peer in peers.items()})
pulumi.export("endpoints", {name: peer.endpoint_host for name, peer in peers.items()})
pulumi.export("configs", mesh.configs)  # a secret: `pulumi stack output configs --show-secrets`
pulumi.export("verification", mesh.verification)
