"""The policy pack (``policy/``): every rule fed passing and failing resources, the pulumi_policy wrapping driven
with the SDK's real argument types, the pack's entry point, and the real program's resources passing every rule."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

POLICY_DIR = REPO / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))  # how Pulumi sees the pack: its modules at top level

import wgmesh_rules as rules  # noqa: E402
from wgmesh_rules import Resource  # noqa: E402

WG_PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
PEER_URN = "urn:pulumi:zhy::wgmesh::wgmesh:index:Mesh$wgmesh:index:WireGuardPeer$aws:ec2/instance:Instance::zhy-instance"
LONE_URN = "urn:pulumi:zhy::wgmesh::aws:ec2/instance:Instance::bastion"


def good_instance(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "instanceType": "t3.micro",
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1},
        "rootBlockDevice": {"encrypted": True, "volumeType": "gp3", "volumeSize": 16},
        "sourceDestCheck": False,
        "userData": "#!/bin/bash\napt-get install -y wireguard-tools\n",
    }
    props.update(overrides)
    return props


def check(rule: Any, resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any] | None = None, **kw: Any) -> list[str]:
    return rule(Resource(resource_type, props, **kw), config or {})


# --- 1. no SSH or WireGuard from anywhere ---------------------------------------------------------------------------

OPEN = rules.no_ssh_or_wireguard_from_anywhere


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}),
        (
            rules.SECURITY_GROUP_RULE,
            {"type": "ingress", "protocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrBlocks": ["0.0.0.0/0"]},
        ),
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}),
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "6", "fromPort": 1, "toPort": 1024, "ipv6CidrBlocks": ["::/0"]}),
        (rules.SECURITY_GROUP, {"ingress": [{"protocol": "udp", "fromPort": 51000, "toPort": 52000, "cidrBlocks": ["0.0.0.0/0"]}]}),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}),
        (rules.INGRESS_RULE, {"ipProtocol": "-1", "cidrIpv6": "::/0"}),
    ],
)
def test_open_to_the_world_fails(resource_type: str, props: dict[str, Any]) -> None:
    messages = check(OPEN, resource_type, props)
    assert messages and all("admit only known addresses" in message for message in messages)


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["203.0.113.7/32"]}),
        (rules.SECURITY_GROUP_RULE, {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}),
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}),
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "udp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}),
        (rules.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "icmp", "fromPort": -1, "toPort": -1, "cidrBlocks": ["0.0.0.0/0"]}),
        (rules.SECURITY_GROUP, {"ingress": [{"protocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrBlocks": ["198.51.100.30/32"]}]}),
        (rules.SECURITY_GROUP, {"egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}),
        (rules.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.20.0.0/16"}),  # a VPC
        (rules.INGRESS_RULE, {"ipProtocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrIpv4": "198.51.100.0/24"}),
        (rules.VPC, {"cidrBlock": "0.0.0.0/0"}),
    ],
)
def test_known_sources_or_other_ports_pass(resource_type: str, props: dict[str, Any]) -> None:
    assert check(OPEN, resource_type, props) == []


@pytest.mark.parametrize("cidr", ["0.0.0.0/1", "128.0.0.0/1", "52.0.0.0/8", "198.51.96.0/20", "10.0.0.0/8", "2001:db8::/16"])
def test_any_source_wider_than_the_mesh_needs_fails_not_only_slash_zero(cidr: str) -> None:
    """Before, only /0 was flagged: a /1 (half the internet) or a /8 passed."""
    for protocol, port in (("tcp", 22), ("udp", 51820)):
        rule = {"type": "ingress", "protocol": protocol, "fromPort": port, "toPort": port, "cidrBlocks": [cidr]}
        [message] = check(OPEN, rules.SECURITY_GROUP_RULE, rule)
        assert cidr in message
    wide = {"type": "ingress", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["198.51.96.0/20"]}
    assert check(OPEN, rules.SECURITY_GROUP_RULE, wide, {"widestPublicPrefix": 20}) == []  # an admin network, allowed


MESH_PORTS = rules.mesh_ports_only_from_mesh_sources


def _peer(name: str, port: int, sources: list[str]) -> Resource:
    return Resource(rules.PEER_COMPONENT, {"listen_port": port, "wireguard_sources": sources, "kind": "aws"}, name=name)


def _group(name: str, port: int, cidrs: list[str]) -> Resource:
    return Resource(
        rules.SECURITY_GROUP, {"ingress": [{"protocol": "udp", "fromPort": port, "toPort": port, "cidrBlocks": cidrs}]}, name=name
    )


def test_the_mesh_ports_come_from_its_peers_not_from_a_setting() -> None:
    """A peer listening on 51821: no setting names it, the resource-level rule does not know it, this rule does."""
    peers = [_peer("a", 51821, ["203.0.113.10/32"]), _peer("b", 51821, ["203.0.113.20/32"])]
    exposed = _group("a-sg", 51821, ["203.0.113.20/32", "192.0.2.0/24"])  # a /24 outside the mesh: no /0, no /8
    assert check(OPEN, rules.SECURITY_GROUP, exposed.props) == []
    [violation] = MESH_PORTS([*peers, exposed], {})
    assert "UDP 51821" in violation.message and "192.0.2.0/24" in violation.message and violation.urn == exposed.urn
    assert MESH_PORTS([*peers, _group("a-sg", 51821, ["203.0.113.20/32"])], {}) == []
    assert MESH_PORTS([*peers, _group("web", 443, ["0.0.0.0/0"])], {}) == []  # not a mesh port
    vpc = Resource(rules.VPC, {"cidrBlock": "192.168.10.0/24"}, name="a-vpc")
    from_vpc = Resource(
        rules.SECURITY_GROUP, {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["192.168.10.0/24"]}]}
    )
    assert MESH_PORTS([*peers, vpc, from_vpc], {}) == []  # the VPC's own traffic, which the peer routes
    assert MESH_PORTS([exposed], {}) == []  # no mesh in the stack: nothing to say


def test_wireguard_ports_are_configurable() -> None:
    rule = {"type": "ingress", "protocol": "udp", "fromPort": 41641, "toPort": 41641, "cidrBlocks": ["0.0.0.0/0"]}
    assert check(OPEN, rules.SECURITY_GROUP_RULE, rule) == []
    [message] = check(OPEN, rules.SECURITY_GROUP_RULE, rule, {"wireguardPorts": [51820, 41641]})
    assert "WireGuard (UDP 41641) to 0.0.0.0/0" in message


# --- 2. IMDSv2 --------------------------------------------------------------------------------------------------------


def test_imdsv2() -> None:
    assert check(rules.imdsv2_required, rules.INSTANCE, good_instance()) == []
    assert check(rules.imdsv2_required, rules.INSTANCE, good_instance(metadataOptions={"httpEndpoint": "disabled"})) == []
    [missing] = check(rules.imdsv2_required, rules.INSTANCE, good_instance(metadataOptions=None))
    assert "not set (AWS defaults to optional)" in missing
    [optional] = check(rules.imdsv2_required, rules.INSTANCE, good_instance(metadataOptions={"httpTokens": "optional"}))
    assert "'optional'" in optional
    assert check(rules.imdsv2_required, rules.LAUNCH_TEMPLATE, {"metadataOptions": {"httpTokens": "required"}}) == []
    assert check(rules.imdsv2_required, rules.LAUNCH_TEMPLATE, {}) != []
    assert check(rules.imdsv2_required, rules.VPC, {}) == []


# --- 3. encrypted volumes ---------------------------------------------------------------------------------------------


def test_encrypted_root_volumes() -> None:
    enc = rules.encrypted_root_volumes
    assert check(enc, rules.INSTANCE, good_instance()) == []
    assert check(enc, rules.INSTANCE, good_instance(rootBlockDevice=None)) != []
    assert check(enc, rules.INSTANCE, good_instance(rootBlockDevice={"encrypted": False})) != []
    [extra] = check(enc, rules.INSTANCE, good_instance(ebsBlockDevices=[{"encrypted": True}, {"deviceName": "/dev/sdf"}]))
    assert "ebsBlockDevices[1]" in extra
    assert check(enc, rules.EBS_VOLUME, {"encrypted": True, "size": 8}) == []
    assert check(enc, rules.EBS_VOLUME, {"size": 8}) != []
    assert check(enc, rules.LAUNCH_TEMPLATE, {"blockDeviceMappings": [{"ebs": {"encrypted": "true"}}]}) == []
    assert check(enc, rules.LAUNCH_TEMPLATE, {"blockDeviceMappings": [{"ebs": {"encrypted": "false"}}]}) != []


# --- 4. source/dest check ---------------------------------------------------------------------------------------------


def test_source_dest_check_only_on_mesh_peers() -> None:
    rule = rules.source_dest_check_only_on_mesh_peers
    assert check(rule, rules.INSTANCE, good_instance(), urn=PEER_URN) == []
    [message] = check(rule, rules.INSTANCE, good_instance(), urn=LONE_URN, name="bastion")
    assert message.startswith("bastion: sourceDestCheck is false")
    assert check(rule, rules.INSTANCE, good_instance(sourceDestCheck=True), urn=LONE_URN) == []
    assert check(rule, rules.INSTANCE, good_instance(sourceDestCheck=None), urn=LONE_URN) == []
    eni_urn = "urn:pulumi:zhy::wgmesh::wgmesh:index:WireGuardPeer$aws:ec2/networkInterface:NetworkInterface::zhy-eni"
    assert check(rule, rules.NETWORK_INTERFACE, {"sourceDestCheck": False}, urn=eni_urn) == []
    assert check(rule, rules.NETWORK_INTERFACE, {"sourceDestCheck": False}) != []
    # A resource merely *named* like a peer, or whose own type is the component's, does not count.
    fake = "urn:pulumi:zhy::wgmesh::aws:ec2/instance:Instance::wgmesh:index:WireGuardPeer"
    assert check(rule, rules.INSTANCE, good_instance(), urn=fake) != []
    custom = "urn:pulumi:zhy::wgmesh::acme:index:Router$aws:ec2/instance:Instance::r"
    assert check(rule, rules.INSTANCE, good_instance(), {"meshPeerTypes": ["acme:index:Router"]}, urn=custom) == []


def test_urn_types() -> None:
    assert rules.urn_types(PEER_URN) == ["wgmesh:index:Mesh", "wgmesh:index:WireGuardPeer", "aws:ec2/instance:Instance"]
    assert rules.urn_types("nonsense") == []


# --- 5. no secrets in user data ---------------------------------------------------------------------------------------

SECRETS = [
    ("[Interface]\nPrivateKey = " + WG_PRIVATE + "\n", "a WireGuard PrivateKey line", 2),
    ("[Peer]\nPublicKey = x\npresharedkey=" + WG_PRIVATE + "\n", "a WireGuard PresharedKey line", 3),
    ("#!/bin/sh\necho '" + WG_PRIVATE + "' > /etc/wireguard/private.key\n", "a WireGuard key next to", 2),
    ("x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----\n", "a PEM/OpenSSH private key", 2),
    ("-----BEGIN RSA PRIVATE KEY-----\n", "a PEM/OpenSSH private key", 1),
    ("[default]\naws_secret_access_key = abcdEFGHijklMNOPqrstUVWXyz0123456789ABCD\n", "an AWS secret access key", 2),
    ("export PULUMI_ACCESS_TOKEN=pul-" + "0" * 40 + "\n", "a Pulumi access token", 1),
    ("export PULUMI_CONFIG_PASSPHRASE=hunter2\n", "a Pulumi config passphrase", 1),
    ("git clone https://ghp_" + "a" * 36 + "@github.com/x/y\n", "a GitHub token", 1),
]


@pytest.mark.parametrize(("text", "kind", "line"), SECRETS)
def test_secrets_in_user_data_fail(text: str, kind: str, line: int) -> None:
    for props in (good_instance(userData=text), good_instance(userData=None, userDataBase64=base64.b64encode(text.encode()).decode())):
        messages = check(rules.no_secrets_in_user_data, rules.INSTANCE, props, name="zhy-instance")
        assert any(kind in message and f"line {line} " in message for message in messages), messages
        assert all(WG_PRIVATE not in message and "hunter2" not in message for message in messages), "never echo the secret"
    template = {"userData": base64.b64encode(text.encode()).decode()}
    assert check(rules.no_secrets_in_user_data, rules.LAUNCH_TEMPLATE, template) != []


@pytest.mark.parametrize(
    "text",
    [
        "#!/bin/bash\nset -euo pipefail\napt-get install -y wireguard-tools\nsysctl -w net.ipv4.ip_forward=1\n",
        "[Peer]\nPublicKey = " + WG_PRIVATE + "\n",  # public keys are public
        "wg genkey | tee /etc/wireguard/private.key | wg pubkey\n",  # generating a key on the host is fine
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEexampleEXAMPLEexampleEXAMPLEexample00 ops@wgmesh\n",
    ],
)
def test_user_data_without_secrets_passes(text: str) -> None:
    assert check(rules.no_secrets_in_user_data, rules.INSTANCE, good_instance(userData=text)) == []


def test_wgmesh_user_data_passes() -> None:
    """The user data the components really send (wgmesh.hostside.install.user_data_script)."""
    install = pytest.importorskip("wgmesh.hostside.install")
    text = install.user_data_script()
    assert check(rules.no_secrets_in_user_data, rules.INSTANCE, good_instance(userData=text)) == []


# --- 6. tunnel network outside every VPC ------------------------------------------------------------------------------


def test_tunnel_network_outside_vpcs() -> None:
    vpcs = [
        Resource(rules.VPC, {"cidrBlock": "192.168.10.0/24"}, name="zhy-vpc"),
        Resource(rules.VPC, {"cidrBlock": "10.0.0.0/8"}, name="big-vpc"),
        Resource(rules.VPC_CIDR_ASSOCIATION, {"cidrBlock": "10.255.0.128/25"}, name="extra"),
        Resource(rules.VPC, {"cidrBlock": "172.16.0.0/16", "ipv6CidrBlock": "fd00:255::/56"}, name="v6"),
    ]
    mesh = Resource(rules.MESH_COMPONENT, {"networks": ["10.255.0.0/24", "fd00:255::/64"]}, name="mesh")
    found = rules.tunnel_network_outside_vpcs([mesh, *vpcs], {})
    assert [violation.message.split(":")[0] for violation in found] == ["big-vpc", "extra", "v6"]
    assert found[0].urn == vpcs[1].urn and "overlaps the tunnel network 10.255.0.0/24" in found[0].message
    assert rules.tunnel_network_outside_vpcs(vpcs[:1], {"tunnelNetworks": ["10.255.0.0/24"]}) == []
    assert rules.tunnel_network_outside_vpcs(vpcs, {}) == [], "no tunnel network known: nothing to compare"
    assert rules.tunnel_networks(vpcs, {"tunnelNetworks": "10.255.0.0/24"}) == [rules.ip_network("10.255.0.0/24")]


# --- The pulumi_policy wrapping ---------------------------------------------------------------------------------------


def _pack() -> Any:
    pytest.importorskip("pulumi_policy")
    import wgmesh_pack

    return wgmesh_pack


def _options() -> Any:
    from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions

    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def _validate(policy: Any, resource_type: str, props: Mapping[str, Any], urn: str = LONE_URN, config: Any = None) -> list[str]:
    from pulumi_policy import ResourceValidationArgs

    reported: list[str] = []
    args = ResourceValidationArgs(resource_type, props, urn, urn.rsplit("::", 1)[-1], _options(), None, config)
    policy.validate(args, lambda message, _urn=None: reported.append(message))
    return reported


def test_pack_has_one_mandatory_policy_per_rule() -> None:
    pack = _pack()
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    built = pack.policies()
    assert [policy.name for policy in built] == [rule.name for rule in rules.RULES]
    assert all(policy.enforcement_level == EnforcementLevel.MANDATORY for policy in built)
    kinds = {policy.name: type(policy) for policy in built}
    assert kinds["tunnel-network-outside-vpcs"] is StackValidationPolicy
    assert kinds["imdsv2-required"] is ResourceValidationPolicy
    assert built[0].config_schema is not None and built[0].config_schema.properties["wireguardPorts"]["default"] == [51820]


def test_pack_reports_through_the_sdk() -> None:
    pack = _pack()
    by_name = {policy.name: policy for policy in pack.policies()}
    bad = good_instance(metadataOptions={"httpTokens": "optional"}, userData="PrivateKey = " + WG_PRIVATE)
    assert _validate(by_name["imdsv2-required"], rules.INSTANCE, bad) != []
    assert _validate(by_name["no-secrets-in-user-data"], rules.INSTANCE, bad) != []
    assert _validate(by_name["source-dest-check-only-on-mesh-peers"], rules.INSTANCE, bad) != []
    assert _validate(by_name["source-dest-check-only-on-mesh-peers"], rules.INSTANCE, bad, urn=PEER_URN) == []
    assert _validate(by_name["encrypted-root-volumes"], rules.INSTANCE, bad) == []
    rule = {"type": "ingress", "protocol": "udp", "fromPort": 41641, "toPort": 41641, "cidrBlocks": ["0.0.0.0/0"]}
    policy = by_name["no-ssh-or-wireguard-from-anywhere"]
    assert _validate(policy, rules.SECURITY_GROUP_RULE, rule) == []
    assert _validate(policy, rules.SECURITY_GROUP_RULE, rule, config={"wireguardPorts": [41641]}) != []


def test_unknown_values_make_a_policy_not_applicable_in_preview() -> None:
    """A rule reading a value only known after deploy (another peer's Elastic IP) is skipped, not failed."""
    pack = _pack()
    from pulumi_policy.policy import _NotApplicableError
    from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, unknown_checking_proxy

    policy = next(policy for policy in pack.policies() if policy.name == "no-ssh-or-wireguard-from-anywhere")
    props = unknown_checking_proxy(
        {"type": "ingress", "protocol": "udp", "fromPort": 51820, "toPort": 51820, "cidrBlocks": UNKNOWN_ARRAY_VALUE}
    )
    with pytest.raises(_NotApplicableError) as skipped:
        _validate(policy, rules.SECURITY_GROUP_RULE, props)
    assert "checked again during `pulumi up`" in skipped.value.reason


def test_stack_policy_through_the_sdk() -> None:
    pack = _pack()
    from pulumi_policy import PolicyResource, StackValidationArgs
    from pulumi_policy.policy import _NotApplicableError

    policy = next(policy for policy in pack.policies() if policy.name == "tunnel-network-outside-vpcs")
    vpc = PolicyResource(
        rules.VPC, {"cidrBlock": "10.255.0.0/16"}, "urn:pulumi:s::p::aws:ec2/vpc:Vpc::v", "v", _options(), None, None, [], {}
    )
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs([vpc], {"tunnelNetworks": ["10.255.0.0/24"]})
    policy.validate(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported == [("v: VPC CIDR 10.255.0.0/16 overlaps the tunnel network 10.255.0.0/24; renumber one of them", vpc.urn)]
    with pytest.raises(_NotApplicableError) as skipped:
        policy.validate(StackValidationArgs([vpc], {}), lambda *_: None)
    assert "no tunnel network known" in skipped.value.reason


def test_entry_point_builds_the_pack(tmp_path: Path) -> None:
    """``policy/__main__.py`` as Pulumi runs it (from another directory), with the server start replaced."""
    pytest.importorskip("pulumi_policy")
    script = (
        "import runpy, pulumi_policy\n"
        "seen = {}\n"
        "pulumi_policy.PolicyPack = lambda **kw: seen.update(kw)\n"
        f"runpy.run_path({str(POLICY_DIR / '__main__.py')!r}, run_name='__main__')\n"
        "print(seen['name'], seen['enforcement_level'].value, ' '.join(p.name for p in seen['policies']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    name, level, *names = result.stdout.split()
    assert (name, level) == ("wgmesh-safety", "mandatory") and names == [rule.name for rule in rules.RULES]


def test_policy_pack_files() -> None:
    import yaml

    manifest = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python" and manifest["description"]
    assert "pulumi-policy" in (POLICY_DIR / "requirements.txt").read_text()


# --- The real program's resources -------------------------------------------------------------------------------------


def test_the_example_stack_passes_every_rule() -> None:
    """Run ``__main__.py`` for Pulumi.zhy.yaml under mocks and feed every AWS resource to every rule."""
    pytest.importorskip("pulumi_aws")
    harness = pytest.importorskip("tests.program_harness")
    import pulumi.runtime.settings

    config = harness.stack_config(REPO / "Pulumi.zhy.yaml")
    run = harness.run_program(config)
    monitor = pulumi.runtime.settings.get_monitor()
    urns = {(urn.split("::")[2].split("$")[-1], urn.rsplit("::", 1)[-1]): urn for urn in monitor.get_registered_resources()}
    resources = [
        Resource(item.typ, item.plain, name=item.name, urn=urns.get((item.typ, item.registered_name), ""))
        for item in run.mocks.resources
        if item.typ.startswith("aws:")
    ]
    types = {resource.resource_type for resource in resources}
    assert {rules.INSTANCE, rules.SECURITY_GROUP, rules.NETWORK_INTERFACE, rules.VPC} <= types
    assert all(rules.PEER_COMPONENT in rules.urn_types(r.urn) for r in resources if r.resource_type == rules.INSTANCE)
    network = config["wgmesh:mesh"]["network"]
    # The peers as the engine hands components to a stack policy: their registered outputs.
    for peer in run.exports["peers"].values():
        sources = [peer["endpoint"].rsplit(":", 1)[0] + "/32"]
        resources.append(Resource(rules.PEER_COMPONENT, {"listen_port": 51820, "wireguard_sources": sources}, name="peer"))
    violations: list[str] = []
    for rule in rules.RULES:
        if rule.stack:
            violations += [v.message for v in rule.check(resources, {"tunnelNetworks": [network]})]
        else:
            for resource in resources:
                violations += rule.check(resource, {})
    assert violations == []
    # ... and the rules do bite on this stack: a VPC renumbered into the tunnel network is caught.
    clash = Resource(rules.VPC, {"cidrBlock": "10.255.0.0/16"}, name="clash")
    assert rules.tunnel_network_outside_vpcs([*resources, clash], {"tunnelNetworks": [network]}) != []
