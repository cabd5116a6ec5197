"""The real ``__main__.py`` with the ``zhy`` stack under Pulumi's mocks: the resource graph `pulumi up` would build."""

from __future__ import annotations

import copy
import time
from collections import Counter
from ipaddress import ip_network
from typing import Any

import pulumi
import pytest

from hostside.install import install_script, uninstall_script, user_data_script
from lab import topology
from mesh.keys import public_key
from mesh.render import config_digest
from mesh.wgconf import parse_config
from tests.program_harness import (
    REPO,
    ProgramRun,
    RecordingMocks,
    fake_public_ip,
    is_secret_value,
    run_program,
    stack_config,
    synthetic_stack,
)

ZHY = stack_config(REPO / "Pulumi.zhy.yaml")
REGION_OF = {"zhy": "cn-northwest-1", "bjs": "cn-north-1"}


@pytest.fixture(scope="module")
def zhy() -> ProgramRun:
    return run_program(ZHY)


def test_resource_types_and_counts(zhy: ProgramRun) -> None:
    counts = Counter(resource.typ for resource in zhy.mocks.resources)
    per_aws_peer = {
        "aws:ec2/vpc:Vpc": 1,
        "aws:ec2/subnet:Subnet": 1,
        "aws:ec2/internetGateway:InternetGateway": 1,
        "aws:ec2/routeTable:RouteTable": 1,
        "aws:ec2/routeTableAssociation:RouteTableAssociation": 1,
        "aws:ec2/securityGroup:SecurityGroup": 1,
        "aws:ec2/securityGroupRule:SecurityGroupRule": 5,
        "aws:ec2/networkInterface:NetworkInterface": 1,
        "aws:ec2/eip:Eip": 1,
        "aws:ec2/eipAssociation:EipAssociation": 1,
        "aws:ec2/keyPair:KeyPair": 1,
        "aws:ec2/instance:Instance": 1,
    }
    expected = {typ: count * 2 for typ, count in per_aws_peer.items()}
    expected |= {
        "pulumi:providers:aws": 2,  # one per region
        "random:index/randomBytes:RandomBytes": 4,  # a key seed per peer + one mesh secret
        "command:remote:Command": 6,  # install + verify per peer
        "wgmesh:index:WireGuardPeer": 3,
        "wgmesh:index:Mesh": 1,
    }
    assert dict(counts) == expected


def test_every_aws_resource_uses_its_regions_provider(zhy: ProgramRun) -> None:
    providers = {resource.name: resource.inputs["region"] for resource in zhy.mocks.of_type("pulumi:providers:aws")}
    assert providers == {"aws-cn-northwest-1": "cn-northwest-1", "aws-cn-north-1": "cn-north-1"}
    aws_resources = [resource for resource in zhy.mocks.resources if resource.typ.startswith("aws:")]
    assert aws_resources
    for resource in aws_resources:
        peer = resource.name.split("-")[0]
        assert resource.provider_name == f"aws-{REGION_OF[peer]}", resource.name
    ami_lookups = [call for call in zhy.mocks.calls if call.token == "aws:ec2/getAmi:getAmi"]
    assert sorted(call.provider.split("::")[-2].split("::")[-1] for call in ami_lookups) == ["aws-cn-north-1", "aws-cn-northwest-1"]
    assert all(call.args["owners"] == ["837727238323"] for call in ami_lookups)  # Canonical's account in AWS China


def _rules(run: ProgramRun, peer: str) -> dict[str, tuple[str, str, int, int, list[str]]]:
    return {
        resource.name.removeprefix(f"{peer}-"): (
            resource.inputs["type"],
            resource.inputs["protocol"],
            resource.inputs["fromPort"],
            resource.inputs["toPort"],
            sorted(resource.inputs["cidrBlocks"]),
        )
        for resource in run.mocks.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
        if resource.name.startswith(f"{peer}-")
    }


def test_security_group_rules_are_exact(zhy: ProgramRun) -> None:
    assert _rules(zhy, "zhy") == {
        "wireguard-in": ("ingress", "udp", 51820, 51820, sorted([f"{fake_public_ip('bjs-eip')}/32", "198.51.100.30/32"])),
        "ssh-in": ("ingress", "tcp", 22, 22, ["203.0.113.7/32"]),
        "icmp-in": (
            "ingress",
            "icmp",
            -1,
            -1,
            sorted(["10.255.0.0/24", "192.168.10.0/24", "192.168.20.0/24", "192.168.30.0/24", "10.7.1.0/24"]),
        ),
        "vpc-in": ("ingress", "-1", 0, 0, ["192.168.10.0/24"]),
        "all-out": ("egress", "-1", 0, 0, ["0.0.0.0/0"]),
    }
    wireguard_bjs = _rules(zhy, "bjs")["wireguard-in"]
    assert wireguard_bjs[4] == sorted([f"{fake_public_ip('zhy-eip')}/32", "198.51.100.30/32"])
    for resource in zhy.mocks.of_type("aws:ec2/securityGroupRule:SecurityGroupRule"):
        if resource.inputs["type"] == "ingress":
            assert "0.0.0.0/0" not in resource.inputs["cidrBlocks"], resource.name


def test_instance_settings(zhy: ProgramRun) -> None:
    for peer in ("zhy", "bjs"):
        instance = zhy.mocks.named(f"{peer}-instance").inputs
        assert instance["sourceDestCheck"] is False
        assert instance["metadataOptions"]["httpTokens"] == "required"
        assert instance["rootBlockDevice"] == {"volumeType": "gp3", "volumeSize": 16, "encrypted": True, "deleteOnTermination": True}
        assert instance["ami"] == "ami-0ubuntu2404"
        assert instance["instanceType"] == "t3.micro"
        assert instance["primaryNetworkInterface"]["networkInterfaceId"] == f"{peer}-eni-id"
        assert instance["keyName"] == f"{peer}-ssh"
        assert zhy.mocks.named(f"{peer}-eni").inputs["sourceDestCheck"] is False
        assert instance["userData"] == user_data_script()


def test_no_secret_in_user_data_or_plain_inputs(zhy: ProgramRun) -> None:
    secrets = [line.split(" = ", 1)[1] for config in zhy.exports["configs"].values() for line in config.splitlines() if "Key = " in line]
    secrets = [value for value in secrets if value not in {peer["public_key"] for peer in zhy.exports["peers"].values()}]
    assert len(secrets) >= 3 + 3  # three private keys, three preshared keys
    for resource in zhy.mocks.resources:
        plain = {key: value for key, value in resource.inputs.items() if key != "stdin"}
        text = repr(plain)
        for secret in secrets:
            assert secret not in text, f"secret material in {resource.typ} {resource.name}"


def test_route_tables_send_other_peers_subnets_to_the_instance(zhy: ProgramRun) -> None:
    routes = {route["cidrBlock"]: route for route in zhy.mocks.named("zhy-rt").inputs["routes"]}
    assert routes["0.0.0.0/0"]["gatewayId"] == "zhy-igw-id"
    mesh_routes = {cidr for cidr, route in routes.items() if route.get("networkInterfaceId") == "zhy-eni-id"}
    assert mesh_routes == {"10.255.0.0/24", "192.168.20.0/24", "192.168.30.0/24", "10.7.1.0/24"}
    assert "192.168.10.0/24" not in routes  # its own VPC is local


def test_configs_are_secret_and_name_every_other_peer(zhy: ProgramRun) -> None:
    assert zhy.secret_exports == {"peers": False, "configs": True, "config_digests": False, "verification": False, "relays": False}
    assert zhy.exports["relays"] == {"pairs": []}
    peers = zhy.exports["peers"]
    endpoints = {"zhy": f"{fake_public_ip('zhy-eip')}:51820", "bjs": f"{fake_public_ip('bjs-eip')}:51820", "pub": "198.51.100.30:51820"}
    assert {name: peer["endpoint"] for name, peer in peers.items()} == endpoints
    allowed = {
        "zhy": "10.255.0.1/32, 192.168.10.0/24",
        "bjs": "10.255.0.2/32, 192.168.20.0/24",
        "pub": "10.255.0.3/32, 192.168.30.0/24, 10.7.1.0/24",
    }
    for name, text in zhy.exports["configs"].items():
        config = parse_config(text)
        assert public_key(config.get("PrivateKey")) == peers[name]["public_key"]
        assert config.get("Address") == peers[name]["tunnel_addresses"][0]
        assert sorted(section.name for section in config.peers) == sorted(set(peers) - {name})
        for section in config.peers:
            assert section.get("PublicKey") == peers[section.name]["public_key"]
            assert section.get("Endpoint") == endpoints[section.name]
            assert section.get("AllowedIPs") == allowed[section.name]
            assert section.get("PresharedKey")
        assert zhy.exports["config_digests"][name] == config_digest(text)


def test_install_commands_carry_the_config_on_stdin_only(zhy: ProgramRun) -> None:
    raw = {resource.name: resource.inputs for resource in zhy.mocks.of_type("command:remote:Command")}
    commands = {resource.name: resource.plain for resource in zhy.mocks.of_type("command:remote:Command")}
    assert sorted(commands) == sorted(f"{peer}-{step}" for peer in ("zhy", "bjs", "pub") for step in ("install", "verify"))
    for peer, config in zhy.exports["configs"].items():
        install = commands[f"{peer}-install"]
        assert is_secret_value(raw[f"{peer}-install"]["stdin"])
        assert is_secret_value(raw[f"{peer}-install"]["connection"])  # it holds the SSH private key
        assert install["stdin"] == config
        assert install["create"] == install["update"]
        assert f"config sha256={config_digest(config)}" in install["create"]
        assert install_script("wg0") in install["create"]
        assert install["delete"] == uninstall_script("wg0")
        assert install["logging"] == "stderr"
        expected_host = (peer == "pub" and "198.51.100.30") or fake_public_ip(f"{peer}-eip")
        assert install["connection"]["host"] == expected_host
        assert install["connection"]["user"] == ("root" if peer == "pub" else "ubuntu")
        assert "wgmesh-test-key-not-real" in install["connection"]["privateKey"]
        verify = commands[f"{peer}-verify"]
        for other, details in zhy.exports["peers"].items():
            if other != peer:
                assert details["public_key"] in verify["create"]


def test_two_external_peers_behind_nat_are_relayed_and_the_stack_says_by_whom() -> None:
    """Two external hosts without endpoint: the stack exports the pair and its relay (an AWS peer, whose endpoint is
    an Elastic IP), each NAT peer's verify checks the other through the relay's handshake, and its config routes
    the other's prefixes to the relay."""
    config = copy.deepcopy(ZHY)
    for name, subnet in (("home", "192.168.40.0/24"), ("office", "192.168.50.0/24")):
        config["wgmesh:mesh"]["peers"].append(
            {"name": name, "kind": "external", "ssh_host": "203.0.113.50", "subnets": [subnet], "source_cidrs": ["203.0.113.50/32"]}
        )
    config["wgmesh:mesh"]["peers"][2]["relay_allowed"] = False  # pub may not see the traffic: an AWS peer relays
    run = run_program(config)
    [pair] = run.exports["relays"]["pairs"]
    relay = pair["relay"]
    assert pair["peers"] == ["home", "office"] and relay in ("zhy", "bjs") and pair["pinned_by"] is None
    assert "in the clear" in run.exports["relays"]["note"]
    keys = {name: peer["public_key"] for name, peer in run.exports["peers"].items()}
    commands = {resource.name: resource.plain for resource in run.mocks.of_type("command:remote:Command")}
    for local, other in (("home", "office"), ("office", "home")):
        verify = commands[f"{local}-verify"]["create"]
        assert keys[other] not in verify and keys[relay] in verify
        assert f"""'"{relay}"'""" in verify  # reported as "via": relay
        sections = {section.name: section for section in parse_config(run.exports["configs"][local]).peers}
        assert other not in sections
        assert run.exports["peers"][other]["subnets"][0] in sections[relay].get("AllowedIPs")
    assert "vias=(null null null null)" in commands["zhy-verify"]["create"], "a public peer reaches everyone directly"


def test_verify_of_a_dual_stack_mesh_pings_every_tunnel_address_of_every_other_peer() -> None:
    """External hosts with two tunnel networks, two behind NAT (relayed): each verify command lists both addresses
    of every other peer, relayed ones included, and nothing else."""
    hosts = topology.plan(4, nat_peer=2, dual_stack=True)
    config = topology.stack_config(hosts, REPO / "unused-key")["config"]
    del config["wgmesh:sshPrivateKeyPath"]  # run_program gives a fake key
    run = run_program(config)
    assert run.exports["relays"]["pairs"][0]["peers"] == ["h3", "h4"]
    commands = {resource.name: resource.plain for resource in run.mocks.of_type("command:remote:Command")}
    for host in hosts:
        verify = commands[f"{host.name}-verify"]["create"]
        expected = [address for other in hosts if other != host for address in (other.tunnel_address, other.tunnel_address6)]
        owners = [str(index) for index in range(len(hosts) - 1) for _family in (4, 6)]
        assert f"targets=({' '.join(expected)})" in verify.splitlines(), verify
        assert f"owners=({' '.join(owners)})" in verify.splitlines()


class OrderRecordingMocks(RecordingMocks):
    """Records when each command's registration starts and ends; the relay's install takes a little while."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.events: list[tuple[str, str]] = []

    def extra_outputs(self, args: Any) -> dict[str, Any]:
        if args.typ == "command:remote:Command":
            self.events.append(("start", args.name))
            if args.name == self.slow:
                time.sleep(0.3)
            self.events.append(("end", args.name))
        return {}


def test_peers_behind_nat_install_after_their_relay() -> None:
    """So that a pair moved to a new relay finds it listening (else WireGuard retries the handshake after 5 s)."""
    config = copy.deepcopy(ZHY)
    for name in ("home", "office"):
        config["wgmesh:mesh"]["peers"].append(
            {"name": name, "kind": "external", "ssh_host": "203.0.113.50", "source_cidrs": ["203.0.113.50/32"]}
        )
    relay = run_program(config).exports["relays"]["pairs"][0]["relay"]
    mocks = OrderRecordingMocks(f"{relay}-install")
    run_program(config, mocks=mocks)
    for name in ("home", "office"):
        assert mocks.events.index(("end", f"{relay}-install")) < mocks.events.index(("start", f"{name}-install")), mocks.events


def test_keys_and_configs_are_secret_outputs() -> None:
    """The components' private keys and configs are secret Outputs (so state and `pulumi stack output` hide them)."""
    seen: dict[str, bool] = {}

    def program() -> pulumi.Output[Any]:
        from components.stack import deploy_stack
        from mesh.stackconfig import load_stack

        deployed = deploy_stack(load_stack(ZHY["wgmesh:mesh"]), ssh_private_key="key")

        async def flags() -> None:
            seen["private_key"] = await deployed.peers["zhy"].private_key.is_secret()
            seen["public_key"] = await deployed.peers["zhy"].public_key.is_secret()
            seen["configs"] = await deployed.mesh.configs.is_secret()
            seen["stdin"] = await deployed.mesh.installs["pub"].stdin.is_secret()

        return pulumi.Output.from_input(flags())

    pulumi.runtime.set_mocks(RecordingMocks(), project="wgmesh", stack="zhy", preview=False)
    pulumi.runtime.test(program)()
    assert seen == {"private_key": True, "public_key": False, "configs": True, "stdin": True}


def test_changing_one_peers_subnets_changes_only_the_configs_that_must_change(zhy: ProgramRun) -> None:
    changed = copy.deepcopy(ZHY)
    changed["wgmesh:mesh"]["peers"][2]["subnets"] = ["192.168.30.0/24", "10.7.2.0/24"]
    after = run_program(changed)
    before_digests, after_digests = zhy.exports["config_digests"], after.exports["config_digests"]
    assert after_digests["pub"] == before_digests["pub"]  # its own file does not list its own subnets
    assert after_digests["zhy"] != before_digests["zhy"] and after_digests["bjs"] != before_digests["bjs"]
    for name in ("zhy", "bjs"):
        old = [line for line in zhy.exports["configs"][name].splitlines() if "10.7.1.0/24" not in line]
        new = [line for line in after.exports["configs"][name].splitlines() if "10.7.2.0/24" not in line]
        assert old == new  # nothing but pub's AllowedIPs moved
    assert after.exports["peers"] | {"pub": None} == zhy.exports["peers"] | {"pub": None}  # keys and endpoints unchanged


def test_key_version_rotates_one_peers_keys_only(zhy: ProgramRun) -> None:
    rotated = copy.deepcopy(ZHY)
    rotated["wgmesh:mesh"]["peers"][1]["key_version"] = 2
    after = run_program(rotated)
    keys_before = {name: peer["public_key"] for name, peer in zhy.exports["peers"].items()}
    keys_after = {name: peer["public_key"] for name, peer in after.exports["peers"].items()}
    assert keys_after["bjs"] != keys_before["bjs"]
    assert {name: key for name, key in keys_after.items() if name != "bjs"} == {n: k for n, k in keys_before.items() if n != "bjs"}
    assert run_program(ZHY).exports["peers"] == zhy.exports["peers"]  # and an unchanged stack is stable


def _count(peers: int) -> int:
    return len(run_program(synthetic_stack(peers)).mocks.resources)


def test_resource_count_grows_linearly() -> None:
    counts = {peers: _count(peers) for peers in (3, 12, 30)}
    per_peer_small = (counts[12] - counts[3]) / 9
    per_peer_large = (counts[30] - counts[12]) / 18
    assert per_peer_small == per_peer_large  # O(N): each peer adds the same number of resources, however many there are
    assert counts[30] < 30 * 25


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda mesh: mesh["peers"][1].update(vpc_cidr="192.168.10.0/25"), "wgmesh:mesh.peers[1].vpc_cidr"),
        (lambda mesh: mesh["peers"][2].update(name="zhy"), "duplicate"),
        (lambda mesh: mesh["peers"][2].update(endpoint="198.51.100.30"), "wgmesh:mesh.peers[2].endpoint"),
        (lambda mesh: mesh["peers"][0].update(region="mars-1"), "wgmesh:mesh.peers[0].region"),
        (lambda mesh: mesh.update(admin_cidrs=["0.0.0.0/0"]), "wgmesh:mesh.admin_cidrs[0]"),
        (lambda mesh: mesh["peers"][0].pop("ssh_public_key"), "wgmesh:mesh.peers[0].key_name"),
        (lambda mesh: mesh.update(network="10.255.0.0/33"), "wgmesh:mesh.network"),
    ],
)
def test_bad_stack_config_fails_before_any_resource(mutate: Any, expected: str) -> None:
    broken = copy.deepcopy(ZHY)
    mutate(broken["wgmesh:mesh"])
    mocks = RecordingMocks()
    with pytest.raises(Exception) as caught:
        run_program(broken, mocks=mocks)
    assert isinstance(caught.value, pulumi.RunError) or isinstance(caught.value.__cause__, pulumi.RunError)
    assert expected in str(caught.value)
    assert [resource.typ for resource in mocks.resources] == []


def test_missing_ssh_key_names_the_config_key() -> None:
    mocks = RecordingMocks()
    with pytest.raises(Exception, match=r"wgmesh:sshPrivateKey.*pulumi config set --secret"):
        run_program(ZHY, mocks=mocks, secrets={})
    assert mocks.resources == []


def test_preview_with_unknown_addresses_does_not_fail() -> None:
    run = run_program(ZHY, preview=True)
    assert len(run.mocks.of_type("command:remote:Command")) == 6


def test_aws_vpcs_do_not_overlap_the_tunnel_network(zhy: ProgramRun) -> None:
    tunnel = ip_network("10.255.0.0/24")
    for vpc in zhy.mocks.of_type("aws:ec2/vpc:Vpc"):
        assert not ip_network(vpc.inputs["cidrBlock"]).overlaps(tunnel)
