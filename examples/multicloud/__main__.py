"""A Pulumi project of its own that uses wgmesh's ``Mesh`` component (``pip install git+<wgmesh repo>``).

Two AWS peers (us-east-1 and eu-west-1, each with its own VPC, created here) and an on-premises host reached over
SSH, in one description: routes, security-group plans, egress interfaces, endpoints and tags are derived from it.
The providers are this project's own (one per region); the mesh puts every resource under itself.
"""

import pulumi
import pulumi_aws as aws

from wgmesh.components import Mesh

config = pulumi.Config()
key = config.require("sshPublicKey")
providers = {region: aws.Provider(f"aws-{region}", region=region) for region in ("us-east-1", "eu-west-1")}
mesh = Mesh(
    "wgmesh",
    {
        "network": "10.99.0.0/24",
        "admin_cidrs": [config.require("adminCidr")],
        "peers": [
            {"name": "use1", "kind": "aws", "region": "us-east-1", "vpc_cidr": "10.10.0.0/16", "ssh_public_key": key},
            {"name": "euw1", "kind": "aws", "region": "eu-west-1", "vpc_cidr": "10.20.0.0/16", "ssh_public_key": key},
            {
                "name": "onprem",
                "kind": "external",
                "ssh_host": config.require("onPremAddress"),
                "ssh_user": "admin",
                "endpoint": f"{config.require('onPremAddress')}:51820",
                "subnets": ["172.30.0.0/20"],
            },
        ],
    },
    ssh_private_key=config.require_secret("sshPrivateKey"),
    providers=providers,
    default_tags={"project": "multicloud"},
)
pulumi.export("public_keys", mesh.public_keys)
pulumi.export("endpoints", mesh.endpoints)
pulumi.export("configs", mesh.configs)  # a secret: `pulumi stack output configs --show-secrets`
pulumi.export("verification", mesh.verification)
