"""``WireGuardPeer``: one mesh member, either an AWS host wgmesh creates or an external host it only reaches.

Both kinds own their WireGuard key pair (kept in state, see :mod:`components.keys`) and expose what the mesh
needs to configure and reach them: public key, endpoint host, SSH connection details, and the public addresses
their WireGuard packets come from (for the AWS security groups of the other peers).

An AWS peer is a small router for its VPC: its instance forwards between the VPC and ``wg0``, so its route table
sends every other peer's subnets (and the tunnel network) to the instance's network interface, and the interface
has source/dest check off. The interface is a separate resource so that the route table can name it before the
instance exists: the instance then boots into a subnet that already has its internet route (cloud-init installs
WireGuard from the Ubuntu archive) and its Elastic IP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network

import pulumi
import pulumi_aws as aws

from components.keys import key_pair, random_seed
from hostside.install import user_data_script
from mesh.stackconfig import CANONICAL_OWNER, default_ami_filter

SSH_PORT = 22
ALL_IPV4 = "0.0.0.0/0"


@dataclass
class AwsHostArgs:
    """An EC2 host wgmesh creates, with its own VPC, in the region of ``provider`` (passed explicitly, never implied)."""

    provider: aws.Provider
    vpc_cidr: str
    admin_cidrs: Sequence[str]
    subnet_cidr: str | None = None
    availability_zone: str | None = None
    instance_type: str = "t3.micro"
    ssh_user: str = "ubuntu"
    key_name: str | None = None
    ssh_public_key: str | None = None
    ami_id: str | None = None
    ami_owner: str = CANONICAL_OWNER
    ami_name_filter: str | None = None
    root_volume_size: int = 16
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ExternalHostArgs:
    """A host wgmesh does not create (another cloud, on-premises): how to reach it and where its packets come from.

    ``source_cidrs`` default to the endpoint's address: AWS peers admit WireGuard only from these.
    """

    ssh_host: str
    endpoint_host: str | None = None
    ssh_port: int = SSH_PORT
    ssh_user: str = "root"
    source_cidrs: Sequence[str] = ()


@dataclass
class WireGuardPeerArgs:
    """A mesh member. ``mesh_routes`` are the CIDRs reached through the mesh from this peer's VPC: the tunnel
    networks and every other peer's subnets (an AWS peer routes them to its instance and admits ICMP from them)."""

    host: AwsHostArgs | ExternalHostArgs
    listen_port: int = 51820
    key_version: int = 1
    mesh_routes: Sequence[str] = ()


class WireGuardPeer(pulumi.ComponentResource):
    """One mesh member (``wgmesh:index:WireGuardPeer``) with its keys and, for AWS, its whole network and host."""

    kind: str
    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]
    endpoint_host: pulumi.Output[str] | None
    ssh_host: pulumi.Output[str]
    ssh_port: int
    ssh_user: str
    wireguard_sources: pulumi.Output[list[str]]
    listen_port: int
    provider: aws.Provider | None = None
    security_group: aws.ec2.SecurityGroup | None = None
    instance: aws.ec2.Instance | None = None

    def __init__(self, name: str, args: WireGuardPeerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wgmesh:index:WireGuardPeer", name, None, opts)
        self._name = name
        self.listen_port = args.listen_port
        self.private_key, self.public_key = key_pair(random_seed(f"{name}-key", key_version=args.key_version, parent=self))
        outputs: dict[str, object] = {"public_key": self.public_key}
        if isinstance(args.host, AwsHostArgs):
            self.kind = "aws"
            outputs.update(self._build_aws(name, args.host, args))
        else:
            self.kind = "external"
            outputs.update(self._build_external(args.host))
        outputs.update(kind=self.kind, ssh_host=self.ssh_host, endpoint_host=self.endpoint_host)
        self.register_outputs(outputs)

    def _build_external(self, host: ExternalHostArgs) -> dict[str, object]:
        self.ssh_host = pulumi.Output.from_input(host.ssh_host)
        self.ssh_port = host.ssh_port
        self.ssh_user = host.ssh_user
        self.endpoint_host = pulumi.Output.from_input(host.endpoint_host) if host.endpoint_host else None
        sources = list(host.source_cidrs)
        if not sources and host.endpoint_host and _is_ip(host.endpoint_host):
            sources = [str(ip_network(host.endpoint_host))]
        self.wireguard_sources = pulumi.Output.from_input(sources)
        return {}

    def _build_aws(self, name: str, host: AwsHostArgs, args: WireGuardPeerArgs) -> dict[str, object]:
        self.provider = host.provider
        child = pulumi.ResourceOptions(parent=self, provider=host.provider)
        tags = {**host.tags, "wgmesh:peer": name}

        def named(suffix: str) -> dict[str, str]:
            return {**tags, "Name": f"{name}-{suffix}"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=host.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True, tags=named("vpc"), opts=child
        )
        subnet = aws.ec2.Subnet(
            f"{name}-subnet",
            vpc_id=vpc.id,
            cidr_block=host.subnet_cidr or host.vpc_cidr,
            availability_zone=host.availability_zone,
            map_public_ip_on_launch=False,
            tags=named("public"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=named("igw"), opts=child)

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc.id,
            description=f"wgmesh peer {name}: WireGuard from mesh peers, SSH from admins, forwarding for its VPC",
            tags=named("sg"),
            opts=child,
        )
        self.security_group = group
        rules = self._rules(name, host, args, group, child)

        interface = aws.ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=subnet.id,
            security_groups=[group.id],
            source_dest_check=False,  # it forwards packets for the whole VPC
            description=f"wgmesh peer {name}",
            tags=named("eni"),
            opts=child,
        )
        mesh_routes = [route for route in args.mesh_routes if ip_network(route).version == 4]
        table = aws.ec2.RouteTable(
            f"{name}-rt",
            vpc_id=vpc.id,
            # Built inside one apply: N plain route entries serialize far faster than N entries each holding an Output.
            routes=pulumi.Output.all(gateway.id, interface.id).apply(
                lambda ids: (
                    [{"cidr_block": ALL_IPV4, "gateway_id": ids[0]}]
                    + [{"cidr_block": route, "network_interface_id": ids[1]} for route in mesh_routes]
                )
            ),
            tags=named("rt"),
            opts=child,
        )
        association = aws.ec2.RouteTableAssociation(f"{name}-rta", subnet_id=subnet.id, route_table_id=table.id, opts=child)
        address = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags=named("eip"), opts=child)
        attachment = aws.ec2.EipAssociation(
            f"{name}-eipassoc",
            allocation_id=address.id,
            network_interface_id=interface.id,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[gateway])),
        )
        key_name: pulumi.Input[str] | None = host.key_name
        if host.ssh_public_key:
            key_name = aws.ec2.KeyPair(f"{name}-ssh", public_key=host.ssh_public_key, tags=named("ssh"), opts=child).key_name

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=host.ami_id or self._ubuntu_ami(host),
            instance_type=host.instance_type,
            key_name=key_name,
            primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(network_interface_id=interface.id),
            source_dest_check=False,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=host.root_volume_size, encrypted=True, delete_on_termination=True
            ),
            user_data=user_data_script(),
            tags=named("wireguard"),
            # A newer Ubuntu image must not silently replace a running mesh member: upgrade on purpose with
            # `pulumi up --replace <urn>`.
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[association, attachment, rules["all-out"]], ignore_changes=["ami"])
            ),
        )
        self.endpoint_host = address.public_ip
        self.ssh_host = address.public_ip
        self.ssh_port = SSH_PORT
        self.ssh_user = host.ssh_user
        self.wireguard_sources = address.public_ip.apply(lambda ip: [f"{ip}/32"])
        self.vpc, self.subnet, self.route_table, self.network_interface, self.elastic_ip = vpc, subnet, table, interface, address
        return {"vpc_id": vpc.id, "instance_id": self.instance.id, "public_ip": address.public_ip, "security_group_id": group.id}

    def _rules(
        self, name: str, host: AwsHostArgs, args: WireGuardPeerArgs, group: aws.ec2.SecurityGroup, child: pulumi.ResourceOptions
    ) -> dict[str, aws.ec2.SecurityGroupRule]:
        """The rules that do not depend on other peers' addresses (WireGuard's rule is added by the mesh).

        All rules are separate resources, never inline: mixing the two makes the provider fight itself. The
        provider removes a new group's default egress rule, so the instance waits for ``all-out`` (its user data
        downloads WireGuard at boot).
        """
        icmp_sources = sorted({route for route in args.mesh_routes if ip_network(route).version == 4} | {host.vpc_cidr})
        rules = {
            "ssh-in": dict(type="ingress", protocol="tcp", from_port=SSH_PORT, to_port=SSH_PORT, cidr_blocks=list(host.admin_cidrs)),
            "icmp-in": dict(type="ingress", protocol="icmp", from_port=-1, to_port=-1, cidr_blocks=icmp_sources),
            # Hosts in the VPC send their mesh-bound traffic through this instance.
            "vpc-in": dict(type="ingress", protocol="-1", from_port=0, to_port=0, cidr_blocks=[host.vpc_cidr]),
            "all-out": dict(type="egress", protocol="-1", from_port=0, to_port=0, cidr_blocks=[ALL_IPV4]),
        }
        return {
            suffix: aws.ec2.SecurityGroupRule(
                f"{name}-{suffix}", security_group_id=group.id, description=f"wgmesh {suffix}", **rule, opts=child
            )
            for suffix, rule in rules.items()
            if rule["cidr_blocks"]
        }

    def admit_wireguard_from(self, sources: pulumi.Input[Sequence[str]]) -> aws.ec2.SecurityGroupRule | None:
        """Admit this peer's WireGuard UDP port from the other peers' public addresses (one rule, O(1) resources).

        Called by the mesh once every peer exists: the addresses are other peers' Elastic IPs, which would make a
        cycle if the security group were built with them.
        """
        if self.security_group is None:
            return None
        return aws.ec2.SecurityGroupRule(
            f"{self._name}-wireguard-in",
            type="ingress",
            protocol="udp",
            from_port=self.listen_port,
            to_port=self.listen_port,
            cidr_blocks=pulumi.Output.from_input(sources).apply(lambda cidrs: sorted(c for c in cidrs if ip_network(c).version == 4)),
            security_group_id=self.security_group.id,
            description="wgmesh wireguard-in from mesh peers",
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )

    def _ubuntu_ami(self, host: AwsHostArgs) -> pulumi.Output[str]:
        """The newest Ubuntu LTS image of ``host.ami_owner`` in the provider's region (owner differs in AWS China)."""
        image = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[host.ami_owner],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[host.ami_name_filter or default_ami_filter(host.instance_type)]),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
            opts=pulumi.InvokeOptions(parent=self, provider=host.provider),
        )
        return image.id


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an address a security group can admit (a DNS name is not: give ``source_cidrs``)."""
    try:
        ip_network(host)
    except ValueError:
        return False
    return True
