"""wgmesh's safety rules as plain functions over resources, usable without the Pulumi engine.

Each rule takes a *resource-like* object (anything with ``resource_type``, ``props``, ``urn`` and ``name``, as
:class:`pulumi_policy.ResourceValidationArgs` and :class:`pulumi_policy.PolicyResource` have) and the policy's
config mapping, and returns the violations as messages. ``wgmesh_pack`` wraps them into a Pulumi policy pack;
tests call them with plain objects. Nothing here imports Pulumi, and nothing imports wgmesh's ``mesh`` package:
Pulumi runs a policy pack in its own virtualenv, with only what ``requirements.txt`` lists.

Props are the provider's camelCase names (``metadataOptions.httpTokens``), as the engine hands them to policies.
Messages never quote a secret: a rule that finds key material says what kind and on which line, not the value.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Protocol

Network = IPv4Network | IPv6Network

INSTANCE = "aws:ec2/instance:Instance"
SPOT_INSTANCE = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
NETWORK_INTERFACE = "aws:ec2/networkInterface:NetworkInterface"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
VPC = "aws:ec2/vpc:Vpc"
VPC_CIDR_ASSOCIATION = "aws:ec2/vpcIpv4CidrBlockAssociation:VpcIpv4CidrBlockAssociation"
VPC_IPV6_CIDR_ASSOCIATION = "aws:ec2/vpcIpv6CidrBlockAssociation:VpcIpv6CidrBlockAssociation"
INSTANCES = (INSTANCE, SPOT_INSTANCE)

MESH_COMPONENT = "wgmesh:index:Mesh"
PEER_COMPONENT = "wgmesh:index:WireGuardPeer"
DEFAULT_SSH_PORTS = (22,)
DEFAULT_WIREGUARD_PORTS = (51820,)


class ResourceLike(Protocol):
    """What a rule reads: :class:`pulumi_policy.ResourceValidationArgs` and ``PolicyResource`` both fit."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str


@dataclass(frozen=True)
class Resource:
    """A plain resource-like value, for tests and for callers outside the engine."""

    resource_type: str
    props: Mapping[str, Any]
    name: str = "r"
    urn: str = ""

    def __post_init__(self) -> None:
        if not self.urn:
            object.__setattr__(self, "urn", f"urn:pulumi:stack::wgmesh::{self.resource_type}::{self.name}")


@dataclass(frozen=True)
class StackViolation:
    """A stack rule's finding: the message and the URN of the resource at fault (``None``: the stack as a whole)."""

    message: str
    urn: str | None = None


def _get(props: Mapping[str, Any] | None, *path: str) -> Any:
    """``props[a][b]...`` or ``None`` when any step is missing (inputs leave out what the user did not set)."""
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _truthy(value: Any) -> bool:
    """True, or the string "true" (launch templates spell booleans as strings)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _ports(config: Mapping[str, Any], key: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = config.get(key)
    if value is None:
        return default
    return tuple(int(port) for port in _list(value))


# --- 1. No SSH or WireGuard port open to the whole internet -------------------------------------------------------

PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "-1": "all", "all": "all"}


@dataclass(frozen=True)
class _Ingress:
    """One ingress permission in a provider-neutral form."""

    where: str
    protocol: str  # tcp | udp | all | other
    from_port: int | None
    to_port: int | None
    cidrs: tuple[str, ...]

    def covers(self, protocol: str, port: int) -> bool:
        if self.protocol == "all":
            return True
        if self.protocol != protocol:
            return False
        if self.from_port is None or self.to_port is None:
            return True
        low, high = sorted((self.from_port, self.to_port))
        return low <= port <= high


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ingresses(resource: ResourceLike) -> list[_Ingress]:
    props = resource.props
    if resource.resource_type == SECURITY_GROUP:
        found = []
        for index, rule in enumerate(_list(_get(props, "ingress"))):
            if isinstance(rule, Mapping):
                cidrs = tuple(str(c) for c in _list(rule.get("cidrBlocks")) + _list(rule.get("ipv6CidrBlocks")))
                protocol = PROTOCOLS.get(str(rule.get("protocol", "")).lower(), "other")
                found.append(
                    _Ingress(f"ingress[{index}]", protocol, _int_or_none(rule.get("fromPort")), _int_or_none(rule.get("toPort")), cidrs)
                )
        return found
    if resource.resource_type == SECURITY_GROUP_RULE:
        if str(props.get("type", "")).lower() != "ingress":
            return []
        cidrs = tuple(str(c) for c in _list(props.get("cidrBlocks")) + _list(props.get("ipv6CidrBlocks")))
        protocol = PROTOCOLS.get(str(props.get("protocol", "")).lower(), "other")
        return [_Ingress("rule", protocol, _int_or_none(props.get("fromPort")), _int_or_none(props.get("toPort")), cidrs)]
    if resource.resource_type == INGRESS_RULE:
        cidrs = tuple(str(c) for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c)
        protocol = PROTOCOLS.get(str(props.get("ipProtocol", "")).lower(), "other")
        return [_Ingress("rule", protocol, _int_or_none(props.get("fromPort")), _int_or_none(props.get("toPort")), cidrs)]
    return []


def _is_world(cidr: str) -> bool:
    try:
        return ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


# The widest sources the mesh itself ever needs: a VPC (/16 at most) for its own traffic, a peer's public address or
# NAT range (/24 at most) for WireGuard, an admin network for SSH.
DEFAULT_WIDEST_PRIVATE_PREFIX = 16
DEFAULT_WIDEST_PUBLIC_PREFIX = 24


def _too_wide(cidr: str, config: Mapping[str, Any]) -> bool:
    """Whether ``cidr`` is wider than any source the mesh needs: the world, a public block wider than /24
    (``widestPublicPrefix``), a private one wider than /16 (``widestPrivatePrefix``); IPv6 scaled by 32 bits."""
    try:
        network = ip_network(cidr, strict=False)
    except ValueError:
        return False
    if network.prefixlen == 0:
        return True
    extra = 0 if network.version == 4 else 32
    if network.is_global:
        return network.prefixlen < int(config.get("widestPublicPrefix", DEFAULT_WIDEST_PUBLIC_PREFIX)) + extra
    return network.prefixlen < int(config.get("widestPrivatePrefix", DEFAULT_WIDEST_PRIVATE_PREFIX)) + extra


def no_ssh_or_wireguard_from_anywhere(resource: ResourceLike, config: Mapping[str, Any]) -> list[str]:
    """SSH (TCP 22) and WireGuard (UDP 51820, or ``wireguardPorts``) may only be open to known addresses.

    wgmesh admits SSH from ``admin_cidrs`` and WireGuard from the other peers' addresses; a 0.0.0.0/0 or ::/0 rule
    for either exposes the host's login and its tunnel handshake to every scanner on the internet, and so does,
    nearly, a /1 or a /8: any source wider than the mesh needs (see :func:`_too_wide`) is refused. The ports the mesh
    really uses, from its peers, are checked by :func:`mesh_ports_only_from_mesh_sources`.
    """
    checks = [("SSH", "tcp", port) for port in _ports(config, "sshPorts", DEFAULT_SSH_PORTS)]
    checks += [("WireGuard", "udp", port) for port in _ports(config, "wireguardPorts", DEFAULT_WIREGUARD_PORTS)]
    messages = []
    for ingress in _ingresses(resource):
        world = [cidr for cidr in ingress.cidrs if _too_wide(cidr, config)]
        if not world:
            continue
        for service, protocol, port in checks:
            if ingress.covers(protocol, port):
                messages.append(
                    f"{resource.name}: {ingress.where} opens {service} ({protocol.upper()} {port}) to {', '.join(world)}; "
                    f"admit only known addresses ({'admin_cidrs' if service == 'SSH' else 'the mesh peers'} /32s)"
                )
    return messages


# --- 2. IMDSv2 only -----------------------------------------------------------------------------------------------


def imdsv2_required(resource: ResourceLike, config: Mapping[str, Any]) -> list[str]:
    """Instances and launch templates must require IMDSv2 tokens (or turn the metadata service off).

    With IMDSv1 a single server-side request forgery on the host (or a forwarded packet: these hosts route for
    their VPC) reads the instance role's credentials without a token.
    """
    if resource.resource_type not in (*INSTANCES, LAUNCH_TEMPLATE):
        return []
    options = _get(resource.props, "metadataOptions")
    if str(_get(options, "httpEndpoint") or "").lower() == "disabled":
        return []
    tokens = _get(options, "httpTokens")
    if str(tokens or "").lower() == "required":
        return []
    got = "not set (AWS defaults to optional)" if tokens is None else repr(tokens)
    return [f"{resource.name}: metadataOptions.httpTokens is {got}; set http_tokens='required' (IMDSv2 only)"]


# --- 3. Encrypted root volumes ------------------------------------------------------------------------------------


def encrypted_root_volumes(resource: ResourceLike, config: Mapping[str, Any]) -> list[str]:
    """Root volumes (and any EBS volume the stack declares) must be encrypted, explicitly.

    An account's encrypt-by-default setting is invisible to a preview and differs per region (two AWS China
    regions here), so the stack says ``encrypted=True`` itself.
    """
    props, kind = resource.props, resource.resource_type
    if kind in INSTANCES:
        messages = []
        if not _truthy(_get(props, "rootBlockDevice", "encrypted")):
            messages.append(f"{resource.name}: rootBlockDevice.encrypted is not true; set root_block_device.encrypted=True")
        for index, device in enumerate(_list(_get(props, "ebsBlockDevices"))):
            if not _truthy(_get(device, "encrypted")):
                messages.append(f"{resource.name}: ebsBlockDevices[{index}].encrypted is not true; encrypt every EBS volume")
        return messages
    if kind == EBS_VOLUME:
        return [] if _truthy(props.get("encrypted")) else [f"{resource.name}: the EBS volume is not encrypted; set encrypted=True"]
    if kind == LAUNCH_TEMPLATE:
        return [
            f"{resource.name}: blockDeviceMappings[{index}].ebs.encrypted is not true; set it to 'true'"
            for index, mapping in enumerate(_list(props.get("blockDeviceMappings")))
            if _get(mapping, "ebs") is not None and not _truthy(_get(mapping, "ebs", "encrypted"))
        ]
    return []


# --- 4. Source/destination check off only on mesh peers ----------------------------------------------------------


def urn_types(urn: str) -> list[str]:
    """The type chain of a URN, outermost parent first: ``urn:pulumi:s::p::A$B$C::name`` gives ``[A, B, C]``."""
    parts = urn.split("::")
    return parts[2].split("$") if len(parts) >= 4 else []


def source_dest_check_only_on_mesh_peers(resource: ResourceLike, config: Mapping[str, Any]) -> list[str]:
    """Only a mesh peer (a child of a ``wgmesh:index:WireGuardPeer`` component) may turn the source/dest check off.

    A peer forwards its VPC's traffic into the tunnel, so its packets carry other hosts' addresses; any other
    instance with the check off can be used to spoof or relay traffic inside the VPC.
    """
    if resource.resource_type not in (*INSTANCES, NETWORK_INTERFACE):
        return []
    value = resource.props.get("sourceDestCheck")
    if value is None or _truthy(value):
        return []
    peer_types = set(_list(config.get("meshPeerTypes"))) or {PEER_COMPONENT}
    if peer_types & set(urn_types(resource.urn)[:-1]):
        return []
    return [
        f"{resource.name}: sourceDestCheck is false but it is not part of a mesh peer ({PEER_COMPONENT}); "
        "keep the check on, or build the host with WireGuardPeer"
    ]


# --- 5. No secret material in user data ---------------------------------------------------------------------------

WIREGUARD_KEY = r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a PEM/OpenSSH private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("a WireGuard PrivateKey line", re.compile(r"^\s*PrivateKey\s*=\s*\S", re.IGNORECASE | re.MULTILINE)),
    ("a WireGuard PresharedKey line", re.compile(r"^\s*PresharedKey\s*=\s*\S", re.IGNORECASE | re.MULTILINE)),
    (
        "a WireGuard key next to 'private'/'preshared'/'psk'",
        re.compile(rf"^(?=.*(?:private|preshared|psk)).*(?<![A-Za-z0-9+/]){WIREGUARD_KEY}", re.IGNORECASE | re.MULTILINE),
    ),
    ("an AWS secret access key", re.compile(r"aws_secret_access_key\s*[=:]\s*\S+", re.IGNORECASE)),
    ("a Pulumi access token", re.compile(r"\bpul-[0-9a-f]{40}\b")),
    ("a Pulumi config passphrase", re.compile(r"PULUMI_CONFIG_PASSPHRASE\s*=\s*\S+")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
)


def _decoded(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def find_secrets(text: str) -> list[tuple[str, int]]:
    """Kinds of secret material in ``text`` with the line each is on; the values themselves are not returned."""
    found = []
    for kind, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            found.append((kind, text.count("\n", 0, match.start()) + 1))
    return sorted(set(found), key=lambda item: (item[1], item[0]))


def _user_data(resource: ResourceLike) -> Iterator[tuple[str, str]]:
    """(field, text) of every user data the resource carries, base64 decoded where the field is base64."""
    props = resource.props
    if resource.resource_type in INSTANCES:
        if isinstance(props.get("userData"), str):
            yield "userData", props["userData"]
            decoded = _decoded(props["userData"])  # EC2 also accepts base64 here
            if decoded is not None:
                yield "userData (base64-decoded)", decoded
        if isinstance(props.get("userDataBase64"), str):
            yield "userDataBase64", _decoded(props["userDataBase64"]) or props["userDataBase64"]
    elif resource.resource_type == LAUNCH_TEMPLATE and isinstance(props.get("userData"), str):
        # Launch templates take base64; a plain script there is also checked as it is.
        yield "userData", _decoded(props["userData"]) or props["userData"]


def no_secrets_in_user_data(resource: ResourceLike, config: Mapping[str, Any]) -> list[str]:
    """User data must carry no key material: anyone who may describe the instance (or reach IMDS) reads it.

    wgmesh's user data only installs packages and sets sysctls; keys and configs travel over SSH on stdin.
    """
    return [
        f"{resource.name}: {field} line {line} holds {kind}; deliver secrets over SSH (stdin), never in user data"
        for field, text in _user_data(resource)
        for kind, line in find_secrets(text)
    ]


# --- 6. The tunnel network overlaps no VPC ------------------------------------------------------------------------


def _networks(values: Iterable[Any]) -> list[Network]:
    found = []
    for value in values:
        try:
            found.append(ip_network(str(value), strict=False))
        except ValueError:
            continue
    return found


def tunnel_networks(resources: Sequence[ResourceLike], config: Mapping[str, Any]) -> list[Network]:
    """The mesh's tunnel networks: the policy config's ``tunnelNetworks``, plus what a ``wgmesh:index:Mesh`` reports."""
    values = _list(config.get("tunnelNetworks"))
    for resource in resources:
        if resource.resource_type == MESH_COMPONENT:
            values += _list(_get(resource.props, "networks"))
    return list(dict.fromkeys(_networks(values)))


def vpc_cidrs(resource: ResourceLike) -> list[Network]:
    """Every CIDR block a VPC resource gives its VPC."""
    if resource.resource_type == VPC:
        return _networks(value for value in (resource.props.get("cidrBlock"), resource.props.get("ipv6CidrBlock")) if value)
    if resource.resource_type == VPC_CIDR_ASSOCIATION:
        return _networks([resource.props.get("cidrBlock")] if resource.props.get("cidrBlock") else [])
    if resource.resource_type == VPC_IPV6_CIDR_ASSOCIATION:
        return _networks([resource.props.get("ipv6CidrBlock")] if resource.props.get("ipv6CidrBlock") else [])
    return []


def tunnel_network_outside_vpcs(resources: Sequence[ResourceLike], config: Mapping[str, Any]) -> list[StackViolation]:
    """No VPC may overlap the tunnel network: its hosts would route tunnel addresses into the VPC, not the mesh.

    The peers' VPC route tables send the tunnel network to the peer's interface; a VPC containing it would make
    those routes more specific than (or equal to) the VPC's local route, which AWS refuses or, worse, shadows.
    """
    networks = tunnel_networks(resources, config)
    violations = []
    for resource in resources:
        for cidr in vpc_cidrs(resource):
            for network in networks:
                if cidr.version == network.version and cidr.overlaps(network):
                    violations.append(
                        StackViolation(
                            f"{resource.name}: VPC CIDR {cidr} overlaps the tunnel network {network}; renumber one of them",
                            resource.urn,
                        )
                    )
    return violations


# --- 7. The mesh's own ports, from its peers: only from the mesh's sources ------------------------------------------


def _peer_values(resources: Sequence[ResourceLike], *keys: str) -> list[Any]:
    values: list[Any] = []
    for resource in resources:
        if resource.resource_type == PEER_COMPONENT:
            for key in keys:
                if _get(resource.props, key) is not None:
                    values += _list(_get(resource.props, key))
                    break
    return values


def mesh_ports_only_from_mesh_sources(resources: Sequence[ResourceLike], config: Mapping[str, Any]) -> list[StackViolation]:
    """Every port a ``WireGuardPeer`` listens on (its ``listen_port`` output, whatever the policy config says) is
    admitted only from the mesh's own sources: the peers' WireGuard addresses (``wireguard_sources``) and the stack's
    VPCs. A peer on 51821, or a source outside the mesh, is found even when no setting names it."""
    ports = sorted({int(port) for port in _peer_values(resources, "listen_port", "listenPort") if _int_or_none(port) is not None})
    if not ports:
        return []
    allowed = _networks(_peer_values(resources, "wireguard_sources", "wireguardSources"))
    for resource in resources:
        allowed += vpc_cidrs(resource)
    violations = []
    for resource in resources:
        for ingress in _ingresses(resource):
            for port in ports:
                if not ingress.covers("udp", port):
                    continue
                outside = [cidr for cidr in _networks(ingress.cidrs) if not any(_within(cidr, known) for known in allowed)]
                if outside:
                    violations.append(
                        StackViolation(
                            f"{resource.name}: {ingress.where} admits the mesh's WireGuard port (UDP {port}) from "
                            f"{', '.join(str(cidr) for cidr in outside)}, outside the mesh's peers and VPCs; "
                            "admit only the peers' addresses",
                            resource.urn,
                        )
                    )
    return violations


def _within(cidr: Network, known: Network) -> bool:
    return cidr.version == known.version and cidr.subnet_of(known)  # type: ignore[arg-type]


# --- The registry the pack is built from --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A policy: its name in the pack, what it protects, its check, and the config keys it understands."""

    name: str
    description: str
    check: Callable[..., Any]
    stack: bool = False
    config: Mapping[str, Mapping[str, Any]] | None = None


PORTS_SCHEMA = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
RULES: tuple[Rule, ...] = (
    Rule(
        "no-ssh-or-wireguard-from-anywhere",
        "SSH and WireGuard ports are never open to the world, or to any source wider than the mesh needs.",
        no_ssh_or_wireguard_from_anywhere,
        config={
            "sshPorts": {**PORTS_SCHEMA, "default": list(DEFAULT_SSH_PORTS)},
            "wireguardPorts": {**PORTS_SCHEMA, "default": list(DEFAULT_WIREGUARD_PORTS)},
            "widestPublicPrefix": {"type": "integer", "minimum": 1, "maximum": 32, "default": DEFAULT_WIDEST_PUBLIC_PREFIX},
            "widestPrivatePrefix": {"type": "integer", "minimum": 1, "maximum": 32, "default": DEFAULT_WIDEST_PRIVATE_PREFIX},
        },
    ),
    Rule("imdsv2-required", "EC2 instances and launch templates require IMDSv2 (http_tokens=required).", imdsv2_required),
    Rule("encrypted-root-volumes", "Root and EBS volumes are encrypted explicitly.", encrypted_root_volumes),
    Rule(
        "source-dest-check-only-on-mesh-peers",
        "Only mesh peers (WireGuardPeer components) turn the EC2 source/destination check off.",
        source_dest_check_only_on_mesh_peers,
        config={"meshPeerTypes": {"type": "array", "items": {"type": "string"}, "default": [PEER_COMPONENT]}},
    ),
    Rule("no-secrets-in-user-data", "User data carries no private keys, preshared keys or tokens.", no_secrets_in_user_data),
    Rule(
        "tunnel-network-outside-vpcs",
        "The mesh's tunnel network overlaps no VPC CIDR of the stack.",
        tunnel_network_outside_vpcs,
        stack=True,
        config={"tunnelNetworks": {"type": "array", "items": {"type": "string"}}},
    ),
    Rule(
        "mesh-ports-only-from-mesh-sources",
        "The ports the mesh's peers listen on admit only the peers' addresses and the stack's VPCs.",
        mesh_ports_only_from_mesh_sources,
        stack=True,
    ),
)
