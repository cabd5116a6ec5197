"""``WireGuardPeer``: one mesh member, either an AWS host wgmesh creates or an external host it only reaches.

Both kinds own their WireGuard key pair (kept in state, see :mod:`wgmesh.components.keys`) and expose what the mesh
needs to configure and reach them: public key, endpoint host, SSH connection details, and the public addresses
their WireGuard packets come from (for the AWS security groups of the other peers).

An AWS peer is a small router for its VPC: its instance forwards between the VPC and ``wg0``, so its route table
sends every other peer's subnets (and the tunnel network) to the instance's network interface, and the interface
has source/dest check off. The interface is a separate resource so that the route table can name it before the
instance exists: the instance then boots into a subnet that already has its internet route (cloud-init installs
WireGuard from the Ubuntu archive) and its Elastic IP. Because the interface outlives the instance, the instance
is deleted before its replacement is created (the interface can be attached to one instance only).

Security groups (see :mod:`wgmesh.mesh.awsplan`): every rule is an inline entry of one CIDR, so a peer joining or leaving
authorizes or revokes its own entries in place and no rule is replaced. The main group admits SSH from each
``admin_cidrs`` entry and everything from the peer's own VPC; WireGuard's port is admitted only from the other peers'
addresses, in the main group and ``wireguard_groups - 1`` more. The mesh gives those addresses once every peer exists
(:meth:`WireGuardPeer.admit_wireguard_from`); a peer used on its own takes them from
``WireGuardPeerArgs.admit_wireguard_from``. The admission rule (docs/aws.md): a peer that gets neither within
``WireGuardPeerArgs.admission_timeout`` seconds of its creation fails the program with an error naming it (Pulumi
would otherwise wait forever for its groups' entries). ``wgmesh.components.mesh_api.Mesh`` builds and admits its peers in
one constructor, so a peer it makes is never waiting.

Every peer also knows its SSH host key: an external host's from its args, otherwise learned on first contact by a
``command.local.Command`` running ``ssh-keyscan`` where ``pulumi up`` runs, kept in state, re-learned only when
the instance is replaced (its id is the command's trigger). The mesh pins it on every SSH connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_command as command

from wgmesh.components.keys import key_pair, random_seed
from wgmesh.hostside.install import user_data_script
from wgmesh.mesh.awsplan import AwsQuotas, group_sizes
from wgmesh.mesh.sshkeys import host_key_scan_script, parse_ssh_key
from wgmesh.mesh.stackconfig import CANONICAL_OWNER, CANONICAL_OWNERS, default_ami_filter

SSH_PORT = 22
ALL_IPV4 = "0.0.0.0/0"
# How long the first contact waits for sshd: a new instance boots for a minute or two.
HOST_KEY_SCAN_TIMEOUT = 900
# The admission rule: an AWS peer that no MeshComponent (and no admit_wireguard_from) admits within this many seconds
# of its creation fails the program, naming itself. Plain wall time: nothing about the SDK's internals is inspected.
ADMISSION_TIMEOUT_SECONDS = 60.0
# What a running instance keeps from its creation unless its peer is rebuilt: its image and its bootstrap.
PINNED_INSTANCE_INPUTS = ("ami", "userData", "userDataBase64")


@dataclass
class AwsHostArgs:
    """An EC2 host wgmesh creates, with its own VPC, in the region of ``provider`` (passed explicitly, never implied)."""

    provider: aws.Provider
    vpc_cidr: str
    admin_cidrs: Sequence[str]
    # key_name, ssh_public_key and ami_id may come from other resources (pulumi Inputs).
    subnet_cidr: str | None = None
    availability_zone: str | None = None
    instance_type: str = "t3.micro"
    ssh_user: str = "ubuntu"
    key_name: pulumi.Input[str] | None = None
    ssh_public_key: pulumi.Input[str] | None = None
    ami_id: pulumi.Input[str] | None = None
    ami_owner: str | None = None  # None: Canonical's account in the provider's partition (aws, aws-cn)
    ami_name_filter: str | None = None
    root_volume_size: int = 16
    tags: Mapping[str, str] = field(default_factory=dict)
    # True: this run takes the current Ubuntu image and bootstrap (user data) for the instance, replacing it when
    # either changed. False (the default): a running instance keeps the image and bootstrap it was created with.
    rebuild: bool = False


@dataclass
class ExternalHostArgs:
    """A host wgmesh does not create (another cloud, on-premises): how to reach it and where its packets come from.

    ``source_cidrs`` default to the endpoint's address: AWS peers admit WireGuard only from these. ``ssh_host_key``
    (``ssh-ed25519 AAAA...``, a ``known_hosts`` line also works) pins the host's key; without it the key is learned
    on first contact. ``ssh_host``, ``endpoint_host`` and ``ssh_host_key`` may come from other resources (pulumi
    Inputs): sources then default to the endpoint's address once it is known.
    """

    ssh_host: pulumi.Input[str]
    endpoint_host: pulumi.Input[str] | None = None
    ssh_port: int = SSH_PORT
    ssh_user: str = "root"
    source_cidrs: Sequence[str] = ()
    ssh_host_key: pulumi.Input[str] | None = None


@dataclass
class WireGuardPeerArgs:
    """A mesh member. ``mesh_routes`` are the CIDRs reached through the mesh from this peer's VPC: the tunnel
    networks and every other peer's subnets (an AWS peer routes them to its instance; see :func:`wgmesh.mesh.awsplan.mesh_routes`)."""

    host: AwsHostArgs | ExternalHostArgs
    listen_port: int = 51820
    key_version: int = 1
    mesh_routes: Sequence[str] = ()
    # An AWS peer's security groups holding WireGuard entries, its own included, and the entries each holds
    # (wgmesh.mesh.awsplan plans both).
    wireguard_groups: int = 1
    rules_per_group: int = AwsQuotas.inbound_rules_per_security_group
    # A peer used without a MeshComponent (AWS only): the CIDRs its WireGuard port admits, at once. A mesh admits its
    # members from each other and refuses a peer that has them.
    admit_wireguard_from: pulumi.Input[Sequence[str]] | None = None
    # The admission rule's limit (see ADMISSION_TIMEOUT_SECONDS).
    admission_timeout: float = ADMISSION_TIMEOUT_SECONDS
    # The peer's name in the mesh, its tags and descriptions; None: the resource name. wgmesh.components.mesh_api.Mesh
    # prefixes resource names with its own name and keeps the peer's name here, so tags and descriptions (some of
    # which replace a resource when changed) stay as they were.
    peer_name: str | None = None


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
    host_key: pulumi.Output[str]
    provider: aws.Provider | None = None
    security_group: aws.ec2.SecurityGroup | None = None
    instance: aws.ec2.Instance | None = None

    def __init__(self, name: str, args: WireGuardPeerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        peer_name = args.peer_name or name
        _check_keys(peer_name, args.host)
        if args.admit_wireguard_from is not None and not isinstance(args.host, AwsHostArgs):
            raise ValueError(
                f"peer {peer_name!r}: admit_wireguard_from fills an AWS peer's security groups, an external peer has none: drop it"
            )
        super().__init__("wgmesh:index:WireGuardPeer", name, None, opts)
        self._peer = peer_name  # not self._name: the SDK keeps the resource name there
        self.peer_name = peer_name
        self.listen_port = args.listen_port
        self.standalone = args.admit_wireguard_from is not None
        self._groups = 0
        self._fixed_ingress: list[dict[str, Any]] = []
        self._rules_per_group = args.rules_per_group
        # Each group's WireGuard entries, once known: from the args at once, or from the mesh (admit_wireguard_from).
        self._admitted: pulumi.Output[list[list[dict[str, Any]]]] | None = None
        self._refused = False
        self._admission_timeout = args.admission_timeout
        # Resolved by admit_wireguard_from or abandon: what _wait_for_admission awaits (created lazily, in the loop).
        self._admission: asyncio.Future[None] | None = None
        self._abandoned: str | None = None  # why the mesh that was to admit it failed
        self.private_key, self.public_key = key_pair(random_seed(f"{name}-key", key_version=args.key_version, parent=self))
        outputs: dict[str, object] = {"public_key": self.public_key}
        if isinstance(args.host, AwsHostArgs):
            self.kind = "aws"
            outputs.update(self._build_aws(name, args.host, args))
        else:
            self.kind = "external"
            outputs.update(self._build_external(args.host))
        self.host_key = self._learn_host_key(name, args.host)
        outputs.update(kind=self.kind, ssh_host=self.ssh_host, endpoint_host=self.endpoint_host, host_key=self.host_key)
        # What the policy pack's mesh-ports-only-from-mesh-sources reads: the port really used, and where from.
        outputs.update(listen_port=self.listen_port, wireguard_sources=self.wireguard_sources)
        self.register_outputs(outputs)

    def _learn_host_key(self, name: str, host: AwsHostArgs | ExternalHostArgs) -> pulumi.Output[str]:
        """The pinned SSH host key (``type blob``): given, or learned once by ``ssh-keyscan`` (trust on first use).

        The scan's only trigger is the instance's id, so its answer stays in state and a changed key is refused
        until the host itself is replaced (AWS) or the scan is replaced on purpose (``pulumi up --replace``).
        """
        if isinstance(host, ExternalHostArgs) and host.ssh_host_key is not None:
            return pulumi.Output.from_input(host.ssh_host_key).apply(lambda key: " ".join(parse_ssh_key(key)))
        port = self.ssh_port
        scan = command.local.Command(
            f"{name}-host-key",
            create=self.ssh_host.apply(lambda address: host_key_scan_script(address, port, timeout_seconds=HOST_KEY_SCAN_TIMEOUT)),
            triggers=[self.instance.id] if self.instance is not None else None,
            logging=command.local.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.instance] if self.instance is not None else None),
        )
        return scan.stdout

    def _build_external(self, host: ExternalHostArgs) -> dict[str, object]:
        self.ssh_host = pulumi.Output.from_input(host.ssh_host)
        self.ssh_port = host.ssh_port
        self.ssh_user = host.ssh_user
        self.endpoint_host = pulumi.Output.from_input(host.endpoint_host) if host.endpoint_host is not None else None
        sources = list(host.source_cidrs)
        if sources or self.endpoint_host is None:
            self.wireguard_sources = pulumi.Output.from_input(sources)
        else:
            self.wireguard_sources = self.endpoint_host.apply(lambda endpoint: [str(ip_network(endpoint))] if _is_ip(endpoint) else [])
        return {}

    def _build_aws(self, name: str, host: AwsHostArgs, args: WireGuardPeerArgs) -> dict[str, object]:
        self.provider = host.provider
        child = pulumi.ResourceOptions(parent=self, provider=host.provider)
        peer = self.peer_name  # in tags and descriptions; `name` (the resource name) names the resources
        tags = {**host.tags, "wgmesh:peer": peer}

        def named(suffix: str) -> dict[str, str]:
            return {**tags, "Name": f"{peer}-{suffix}"}

        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=host.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True, tags=named("vpc"), opts=child
        )
        # A new availability zone or CIDR replaces the subnet. Its replacement usually takes the same CIDR (by default
        # the whole VPC's), which AWS refuses while the old subnet exists (InvalidSubnet.Conflict): delete it first,
        # with what lives in it (interface, instance, association), then create the new one.
        subnet = aws.ec2.Subnet(
            f"{name}-subnet",
            vpc_id=vpc.id,
            cidr_block=host.subnet_cidr or host.vpc_cidr,
            availability_zone=host.availability_zone,
            map_public_ip_on_launch=False,
            tags=named("public"),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=named("igw"), opts=child)

        self._groups = max(1, args.wireguard_groups)
        self._fixed_ingress = [_entry("tcp", SSH_PORT, SSH_PORT, cidr, "wgmesh ssh from admins") for cidr in host.admin_cidrs]
        # Hosts in the VPC send their mesh-bound traffic through this instance.
        self._fixed_ingress.append(_entry("-1", 0, 0, host.vpc_cidr, "wgmesh everything from its VPC"))
        if args.admit_wireguard_from is not None:
            entries = self._admitted = self._chunked(args.admit_wireguard_from)
        else:
            # The wait yields nothing: the entries come from an apply, which takes an Output as it is (from_input
            # would unwrap every entry into Outputs of its own, doubling the program's time at 100 peers).
            entries = pulumi.Output.from_input(self._wait_for_admission()).apply(lambda _: self._admitted)
        groups = [self._group(name, index, vpc, tags, child, entries) for index in range(self._groups)]
        self.security_group = groups[0]

        interface = aws.ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=subnet.id,
            security_groups=[group.id for group in groups],
            source_dest_check=False,  # it forwards packets for the whole VPC
            description=f"wgmesh peer {peer}",
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
        if host.ssh_public_key is not None:
            key_name = aws.ec2.KeyPair(f"{name}-ssh", public_key=host.ssh_public_key, tags=named("ssh"), opts=child).key_name

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=host.ami_id if host.ami_id is not None else self._ubuntu_ami(host),
            instance_type=host.instance_type,
            key_name=key_name,
            primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(network_interface_id=interface.id),
            source_dest_check=False,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3",
                volume_size=host.root_volume_size,
                encrypted=True,
                delete_on_termination=True,
                tags=named("root"),  # the volume is a resource of its own in EC2: without tags it was the stack's only untagged one
            ),
            user_data=user_data_script(),
            # A changed bootstrap, when it is taken at all (rebuild), is a new instance booting it: cloud-init runs
            # user data once per instance, so an in-place update (a stop and start) would reboot it for nothing.
            user_data_replace_on_change=True,
            tags=named("wireguard"),
            # A newer Ubuntu image or a release's new bootstrap must not replace (or reboot) every running mesh member
            # at once: their changes are ignored, and only an instance created from scratch takes them. The engine
            # keeps an ignored input's old value even when the instance is replaced for another reason (or with
            # `pulumi up --replace`): `rebuild: true` lifts the ignore for one peer, on purpose (docs/aws.md).
            # The interface can be attached to one instance only: delete the old instance first, or its
            # replacement fails with the interface "in use".
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[association, attachment],
                    ignore_changes=[] if host.rebuild else list(PINNED_INSTANCE_INPUTS),
                    delete_before_replace=True,
                ),
            ),
        )
        self.endpoint_host = address.public_ip
        self.ssh_host = address.public_ip
        self.ssh_port = SSH_PORT
        self.ssh_user = host.ssh_user
        self.wireguard_sources = address.public_ip.apply(lambda ip: [f"{ip}/32"])
        self.vpc, self.subnet, self.route_table, self.network_interface, self.elastic_ip = vpc, subnet, table, interface, address
        return {"vpc_id": vpc.id, "instance_id": self.instance.id, "public_ip": address.public_ip, "security_group_id": groups[0].id}

    def _group(
        self,
        name: str,
        index: int,
        vpc: aws.ec2.Vpc,
        tags: Mapping[str, str],
        child: pulumi.ResourceOptions,
        entries: pulumi.Output[list[list[dict[str, Any]]]],
    ) -> aws.ec2.SecurityGroup:
        """Group ``index`` of the peer's interface: the main one (0) with its fixed entries and egress, then more
        WireGuard entries. Inline entries only, never separate rule resources on the same group (the provider would
        fight itself). The egress entry is inline too, so the interface, and the instance after it (its user data
        downloads WireGuard at boot), exist only once the group lets traffic out: the provider strips a new group's
        default egress rule. No ICMP entry: mesh ICMP (the verification's pings, a VPC host pinging a remote subnet)
        travels inside the tunnel and reaches the instance on ``wg0``, never on this interface; ICMP from the VPC itself
        is admitted with the rest of its traffic.
        """
        ingress = entries.apply(lambda groups: groups[index])
        peer = self.peer_name  # a group's description is immutable in EC2: it names the peer, never the resource
        if index == 0:
            return aws.ec2.SecurityGroup(
                f"{name}-sg",
                vpc_id=vpc.id,
                description=f"wgmesh peer {peer}: WireGuard from mesh peers, SSH from admins, forwarding for its VPC",
                ingress=ingress,
                egress=[_entry("-1", 0, 0, ALL_IPV4, "wgmesh all out")],
                tags={**tags, "Name": f"{peer}-sg"},
                opts=child,
            )
        return aws.ec2.SecurityGroup(
            f"{name}-wg-{index}",
            vpc_id=vpc.id,
            description=f"wgmesh peer {peer}: WireGuard from mesh peers ({index + 1})",
            ingress=ingress,
            tags={**tags, "Name": f"{peer}-wg-{index}"},
            opts=child,
        )

    def admit_wireguard_from(self, sources: pulumi.Input[Sequence[str]]) -> None:
        """Admit this peer's WireGuard port from ``sources`` (the other peers' addresses, in mesh order).

        Called once by the mesh when every peer exists (the addresses are other peers' Elastic IPs); a peer used on
        its own gets them from ``WireGuardPeerArgs.admit_wireguard_from`` instead. They fill the groups in order,
        ``rules_per_group`` each; IPv6 addresses are left out (the interface has none).
        """
        if not self._groups:
            return
        if self._admitted is not None:
            given = "WireGuardPeerArgs.admit_wireguard_from" if self.standalone else "another MeshComponent"
            raise ValueError(f"peer {self._peer!r} already admits WireGuard from {given}: a peer belongs to one mesh")
        if self._refused:
            raise ValueError(f"peer {self._peer!r} was admitted too late: give it to its MeshComponent before awaiting anything")
        self._admitted = self._chunked(sources)
        if self._admission is not None and not self._admission.done():
            self._admission.set_result(None)

    def abandon(self, reason: str) -> None:
        """The mesh that was to admit this peer failed with ``reason``: the peer fails at once, saying so.

        Otherwise it would wait out its grace and then report only its own error: Pulumi reports the last failure of
        a program, not the first, so the mesh's error would be lost.
        """
        if self._admitted is None:
            self._abandoned = reason
            if self._admission is not None and not self._admission.done():
                self._admission.set_result(None)

    def _chunked(self, sources: pulumi.Input[Sequence[str]]) -> pulumi.Output[list[list[dict[str, Any]]]]:
        """Each group's entries for ``sources``: the fixed ones first in the main group, then WireGuard's, in order."""
        capacity, port, groups, fixed = self._rules_per_group, self.listen_port, self._groups, self._fixed_ingress

        def chunk(cidrs: Sequence[str]) -> list[list[dict[str, Any]]]:
            kept = list(dict.fromkeys(c for c in cidrs if ip_network(c).version == 4))
            sizes = group_sizes(len(kept), capacity, len(fixed))
            if len(sizes) > groups:
                raise ValueError(
                    f"peer {self._peer!r}: {len(kept)} WireGuard sources need {len(sizes)} security groups of {capacity} "
                    f"entries, it has {groups}: raise WireGuardPeerArgs.wireguard_groups (wgmesh.mesh.awsplan plans it)"
                )
            entries = [_entry("udp", port, port, cidr, "wgmesh wireguard from a mesh peer") for cidr in kept]
            out: list[list[dict[str, Any]]] = []
            start = 0
            for index in range(groups):
                size = sizes[index] if index < len(sizes) else 0  # a group the sources no longer need stays, empty
                out.append((list(fixed) if index == 0 else []) + entries[start : start + size])
                start += size
            return out

        # An Output (the mesh's) is applied as it is: from_input would lift each of its N addresses into an Output
        # of its own, for each of N peers (N^2 Outputs).
        given = sources if isinstance(sources, pulumi.Output) else pulumi.Output.from_input(sources)
        return given.apply(chunk)

    async def _wait_for_admission(self) -> None:
        """Until a mesh admits this peer (its entries are then known); an error naming the peer and the fix if none does.

        The admission rule: a peer built without ``admit_wireguard_from`` must be given to a ``MeshComponent`` within
        ``admission_timeout`` seconds of its creation (a mesh admits its peers in its constructor: in practice within
        milliseconds). Without a limit, Pulumi would wait forever for an input that never resolves, silently
        (pulumi/pulumi#18559). No polling and nothing of the SDK's internals: one future, resolved by
        :meth:`admit_wireguard_from` or :meth:`abandon`, awaited with a timeout.
        """
        if self._admitted is None and self._abandoned is None:
            self._admission = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._admission), self._admission_timeout)
        if self._admitted is not None:
            return
        self._refused = True
        if self._abandoned is not None:
            raise pulumi.RunError(f"WireGuardPeer {self._peer!r} gets no WireGuard entries: {self._abandoned}")
        raise pulumi.RunError(
            f"WireGuardPeer {self._peer!r} was not given to a MeshComponent within {self._admission_timeout:g} s of its "
            "creation, so its security groups cannot get their WireGuard entries: pass it in MeshArgs.peers, build the "
            "whole mesh with wgmesh.components.Mesh (which admits its own peers), or, for a peer used on its own, set "
            "WireGuardPeerArgs.admit_wireguard_from (the CIDRs its WireGuard port admits). If the program raised an "
            "error before building its MeshComponent, that error is the cause: Pulumi reports only its last failure"
        )

    def _ubuntu_ami(self, host: AwsHostArgs) -> pulumi.Output[str]:
        """The newest Ubuntu LTS image of ``host.ami_owner``, by default Canonical's account in the provider's
        partition (it differs in AWS China): the provider says which partition it is in, not the region's name."""
        owner: pulumi.Input[str] = host.ami_owner or aws.get_partition_output(
            opts=pulumi.InvokeOptions(parent=self, provider=host.provider)
        ).partition.apply(lambda partition: CANONICAL_OWNERS.get(partition, CANONICAL_OWNER))
        image = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[owner],
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


def _check_keys(name: str, host: AwsHostArgs | ExternalHostArgs) -> None:
    """Refuse a malformed SSH key before any resource is registered (it would fail half-way through ``pulumi up``)."""
    given = ("ssh_public_key", host.ssh_public_key) if isinstance(host, AwsHostArgs) else ("ssh_host_key", host.ssh_host_key)
    if isinstance(given[1], str) and given[1]:  # an Output is checked when known (parse_ssh_key in the apply)
        try:
            parse_ssh_key(given[1])
        except ValueError as exc:
            raise ValueError(f"peer {name!r}: {given[0]} is not an OpenSSH public key: {exc}") from None


def _entry(protocol: str, from_port: int, to_port: int, cidr: str, description: str) -> dict[str, Any]:
    """One inline security-group entry for one CIDR (so that it is authorized and revoked on its own)."""
    return {"protocol": protocol, "from_port": from_port, "to_port": to_port, "cidr_blocks": [cidr], "description": description}
