"""The real ``__main__.py`` with the ``zhy`` stack under Pulumi's mocks: the resource graph `pulumi up` would build."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections import Counter
from collections.abc import Iterator
from ipaddress import ip_network
from typing import Any
from unittest import mock

import pulumi
import pytest

from tests.mock_program import short_name
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
from wgmesh.hostside.install import install_script, uninstall_script, user_data_script
from wgmesh.lab import topology
from wgmesh.mesh.keys import public_key
from wgmesh.mesh.render import config_digest
from wgmesh.mesh.wgconf import parse_config

ZHY_FILE = stack_config(REPO / "Pulumi.zhy.yaml")
# The tests read the configs the stack would install: exported on request (by default, public facts only).
ZHY = {**ZHY_FILE, "wgmesh:exportConfigs": "true"}
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
        "aws:ec2/securityGroup:SecurityGroup": 1,  # inline entries only: room for 57 more peers before a second
        "aws:ec2/networkInterface:NetworkInterface": 1,
        "aws:ec2/eip:Eip": 1,
        "aws:ec2/eipAssociation:EipAssociation": 1,
        "aws:ec2/keyPair:KeyPair": 1,
        "aws:ec2/instance:Instance": 1,
    }
    expected = {typ: count * 2 for typ, count in per_aws_peer.items()}
    expected |= {
        "pulumi:providers:aws": 2,  # one per region
        "random:index/randomPassword:RandomPassword": 4,  # a key seed per peer + one mesh secret
        "command:remote:Command": 6,  # install + verify per peer
        "command:local:Command": 3,  # each peer's SSH host key, learned on first contact (none is pinned in config)
        "pulumi:index:Stash": 3,  # the barriers: peers' addresses and keys, configs, installs done
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


def _entries(run: ProgramRun, peer: str, direction: str = "ingress") -> list[tuple[str, int, int, list[str]]]:
    """A peer's inline security-group entries, group after group (its main group first)."""
    groups = sorted(
        (r for r in run.mocks.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name.startswith(f"{peer}-")),
        key=lambda r: (r.name != f"{peer}-sg", r.name),
    )
    return [(e["protocol"], e["fromPort"], e["toPort"], e["cidrBlocks"]) for group in groups for e in group.inputs.get(direction, [])]


def _wireguard_entries(run: ProgramRun, peer: str) -> list[tuple[str, int, int, list[str]]]:
    return [entry for entry in _entries(run, peer) if entry[0] == "udp"]


def test_security_group_entries_are_exact(zhy: ProgramRun) -> None:
    # One CIDR per entry (each authorized and revoked on its own); no ICMP entry: mesh ICMP arrives inside the tunnel.
    assert _entries(zhy, "zhy") == [
        ("tcp", 22, 22, ["203.0.113.7/32"]),
        ("-1", 0, 0, ["192.168.10.0/24"]),
        # WireGuard only from the other peers' addresses, in mesh order.
        ("udp", 51820, 51820, [f"{fake_public_ip('bjs-eip')}/32"]),
        ("udp", 51820, 51820, ["198.51.100.30/32"]),
    ]
    assert _entries(zhy, "zhy", "egress") == [("-1", 0, 0, ["0.0.0.0/0"])]
    assert _wireguard_entries(zhy, "bjs") == [
        ("udp", 51820, 51820, [f"{fake_public_ip('zhy-eip')}/32"]),
        ("udp", 51820, 51820, ["198.51.100.30/32"]),
    ]
    assert zhy.mocks.named("zhy-eni").inputs["securityGroups"] == ["zhy-sg-id"]
    assert zhy.mocks.of_type("aws:ec2/securityGroupRule:SecurityGroupRule") == []  # never mixed with inline entries
    for peer in ("zhy", "bjs"):
        assert all("0.0.0.0/0" not in entry[3] for entry in _entries(zhy, peer)), peer


def test_instance_settings(zhy: ProgramRun) -> None:
    for peer in ("zhy", "bjs"):
        instance = zhy.mocks.named(f"{peer}-instance").inputs
        assert instance["sourceDestCheck"] is False
        assert instance["metadataOptions"]["httpTokens"] == "required"
        root = {"volumeType": "gp3", "volumeSize": 16, "encrypted": True, "deleteOnTermination": True}
        assert instance["rootBlockDevice"] == root | {"tags": {"project": "wgmesh", "wgmesh:peer": peer, "Name": f"{peer}-root"}}
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
        plain = {key: value for key, value in resource.inputs.items() if not is_secret_value(value)}
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


def test_by_default_the_outputs_carry_only_public_facts(zhy: ProgramRun) -> None:
    """No private key in any output unless `wgmesh:exportConfigs` asks for the configs, which stay a secret."""
    run = run_program(ZHY_FILE)
    assert sorted(run.exports) == ["config_digests", "peers", "relays", "verification"]
    assert not any(run.secret_exports.values())
    lines = [line for text in zhy.exports["configs"].values() for line in text.splitlines()]
    private = [line for line in lines if line.startswith(("PrivateKey", "PresharedKey"))]
    assert private
    text = json.dumps(run.exports)
    for line in private:
        assert line.split(" = ", 1)[1] not in text
    assert run.exports["peers"] == zhy.exports["peers"]
    assert sorted(zhy.exports) == ["config_digests", "configs", "peers", "relays", "verification"]
    assert zhy.secret_exports["configs"] is True


def test_install_commands_carry_the_config_on_stdin_only(zhy: ProgramRun) -> None:
    raw = {resource.name: resource.inputs for resource in zhy.mocks.of_type("command:remote:Command")}
    commands = {resource.name: resource.plain for resource in zhy.mocks.of_type("command:remote:Command")}
    assert sorted(commands) == sorted(f"{peer}-{step}" for peer in ("zhy", "bjs", "pub") for step in ("install", "verify"))
    for peer, config in zhy.exports["configs"].items():
        install = commands[f"{peer}-install"]
        assert is_secret_value(raw[f"{peer}-install"]["stdin"])
        assert is_secret_value(raw[f"{peer}-install"]["connection"])  # it holds the SSH private key
        assert install["stdin"] == config
        assert install.get("update") is None  # an update runs create again (idempotent), pulumi-command's default
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
        from wgmesh.components.stack import deploy_stack
        from wgmesh.mesh.stackconfig import load_stack

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
    # Its own file names its own subnets in its firewall hooks only (what it forwards and NATs): nothing else moved.
    assert after_digests["pub"] != before_digests["pub"]
    old_pub, new_pub = zhy.exports["configs"]["pub"].splitlines(), after.exports["configs"]["pub"].splitlines()
    assert [line for line in old_pub if not line.startswith("PostUp = ")] == [line for line in new_pub if not line.startswith("PostUp = ")]
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
        # A pasted WireGuard key was accepted and ignored (the peer kept its generated key): refused, naming the fix.
        (lambda mesh: mesh["peers"][2].update(private_key="yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="), "peers[2].private_key"),
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


# ------------------------------------------------------------------------------------------ deploy day on AWS


@contextlib.contextmanager
def resource_options() -> Iterator[dict[str, pulumi.ResourceOptions]]:
    """The options every resource is registered with (the mocks do not see them), by resource name."""
    seen: dict[str, pulumi.ResourceOptions] = {}
    original = pulumi.Resource.__init__

    def recording(self: pulumi.Resource, t: str, name: str, *args: Any, **kwargs: Any) -> None:
        opts = kwargs.get("opts") if "opts" in kwargs else (args[2] if len(args) > 2 else None)
        seen[short_name(name)] = opts or pulumi.ResourceOptions()
        original(self, t, name, *args, **kwargs)

    with mock.patch.object(pulumi.Resource, "__init__", recording):
        yield seen


def test_an_instance_is_deleted_before_its_replacement_is_created() -> None:
    """Its primary interface outlives it and attaches to one instance at a time: create-before-delete would fail."""
    with resource_options() as options:
        run_program(ZHY)
    for peer in ("zhy", "bjs"):
        assert options[f"{peer}-instance"].delete_before_replace is True
        # a newer image or bootstrap never replaces it silently
        assert options[f"{peer}-instance"].ignore_changes == ["ami", "userData", "userDataBase64"]
    assert not options["zhy-eni"].delete_before_replace  # the interface, route table and address stay


NEW_BOOTSTRAP = "#!/bin/sh\n# a later release's bootstrap\n"


def test_a_new_bootstrap_replaces_or_reboots_no_running_instance_and_a_new_peer_boots_it() -> None:
    """Two runs: a release whose bootstrap (user data) changed, over a deployed stack, plus one peer joining.

    The mocks cannot diff, so this asserts what makes the engine's diff behave. The engine copies an ignored input's
    old value from the state into the new inputs before diffing (``processIgnoreChanges``): with ``userData`` (and
    ``userDataBase64``, ``ami``) ignored, the running instances have no diff at all, neither a replacement nor the
    provider's in-place update (a stop and start). A resource with no old state has nothing to copy: the joining
    peer's instance is created with the new bootstrap. ``user_data_replace_on_change`` makes a bootstrap that is
    taken on purpose (``rebuild: true``, which lifts the ignore for that peer only) a fresh instance, never a reboot.
    """
    with resource_options() as before_options:
        before = run_program(ZHY)
    with mock.patch("wgmesh.components.peer.user_data_script", return_value=NEW_BOOTSTRAP), resource_options() as after_options:
        after = run_program(_four_peers())
    for peer in ("zhy", "bjs"):
        name = f"{peer}-instance"
        assert before.mocks.named(name).inputs["userData"] == user_data_script()
        assert after.mocks.named(name).inputs["userData"] == NEW_BOOTSTRAP  # the goal changed ...
        for options in (before_options, after_options):  # ... and the engine ignores it, in both runs
            assert {"userData", "userDataBase64", "ami"} <= set(options[name].ignore_changes or []), name
            assert not options[name].replace_on_changes
        assert after.mocks.named(name).inputs["userDataReplaceOnChange"] is True
    assert after.mocks.named("fra-instance").inputs["userData"] == NEW_BOOTSTRAP  # a new instance boots the new one

    rebuilt = _four_peers()
    rebuilt["wgmesh:mesh"]["peers"][1]["rebuild"] = True
    with mock.patch("wgmesh.components.peer.user_data_script", return_value=NEW_BOOTSTRAP), resource_options() as options:
        run_program(rebuilt)
    assert options["bjs-instance"].ignore_changes == []  # bjs alone takes the new bootstrap, as a new instance
    assert options["bjs-instance"].delete_before_replace is True
    assert {"userData", "ami"} <= set(options["zhy-instance"].ignore_changes or [])


def test_a_new_availability_zone_or_subnet_size_replaces_the_subnet_in_a_working_order() -> None:
    """Two runs: the availability zone, then the subnet's size, change. A subnet's zone and CIDR force a new subnet,
    whose CIDR (the whole VPC's, by default) AWS refuses while the old subnet exists (InvalidSubnet.Conflict): the
    subnet is deleted before its replacement is created, and with it (the engine deletes the dependents a
    delete-before-replace would replace first) the interface, the association and the instance, which is itself
    delete-before-replace. The VPC, gateway, Elastic IP and security groups stay."""
    moved = copy.deepcopy(ZHY)
    moved["wgmesh:mesh"]["peers"][0]["availability_zone"] = "cn-northwest-1b"
    with resource_options() as first:
        before = run_program(ZHY)
    with resource_options() as second:
        after = run_program(moved)
    assert "availabilityZone" not in before.mocks.named("zhy-subnet").inputs
    assert after.mocks.named("zhy-subnet").inputs["availabilityZone"] == "cn-northwest-1b"
    for options in (first, second):
        assert options["zhy-subnet"].delete_before_replace is True
        assert options["zhy-instance"].delete_before_replace is True
        assert not options["zhy-vpc"].delete_before_replace and not options["zhy-eip"].delete_before_replace
    assert after.mocks.named("zhy-eni").inputs["subnetId"] == "zhy-subnet-id"  # the interface lives in the subnet

    smaller = copy.deepcopy(moved)
    smaller["wgmesh:mesh"]["peers"][0]["subnet_cidr"] = "192.168.10.0/25"
    with resource_options() as third:
        resized = run_program(smaller)
    assert resized.mocks.named("zhy-subnet").inputs["cidrBlock"] == "192.168.10.0/25"
    assert resized.mocks.named("zhy-vpc").inputs["cidrBlock"] == "192.168.10.0/24"  # the VPC stays, and is routed
    assert third["zhy-subnet"].delete_before_replace is True


def test_the_configs_barrier_never_keeps_an_old_config() -> None:
    """A Stash keeps the value it was created with as its `output`: the one holding the configs (private keys) is
    replaced whenever they change, so a rotated-out key does not stay in the state."""
    with resource_options() as options:
        run = run_program(ZHY)
    assert options["wgmesh-configs"].replace_on_changes == ["input"]
    assert is_secret_value(run.mocks.named("wgmesh-configs").inputs["input"])


class ReplacingMocks(RecordingMocks):
    """The cloud after `pulumi up --replace` of some instances: they come back with new ids."""

    def __init__(self, replaced: set[str]) -> None:
        super().__init__()
        self.replaced = replaced

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        return (f"{resource_id}-2" if args.name in self.replaced else resource_id), outputs


def _commands(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {r.name: r.plain for r in run.mocks.resources if r.typ.startswith("command:")}


def test_a_replaced_instance_is_installed_again_and_every_peer_verifies_again(zhy: ProgramRun) -> None:
    """Only the new instance is installed (and its host key learned) again, but every peer verifies again: the peers
    behind NAT must send data to the new host (their keepalives never start a handshake) for the mesh to be whole."""
    after = run_program(ZHY, mocks=ReplacingMocks({"zhy-instance"}))
    before_commands, after_commands = _commands(zhy), _commands(after)
    changed = sorted(name for name in before_commands if before_commands[name] != after_commands[name])
    # Its host key is learned again (the scan's trigger is the instance id: a replace), its config installed again
    # (the instance id is in the script: an update, never the uninstall a replace would run first).
    assert changed == ["bjs-verify", "pub-verify", "zhy-host-key", "zhy-install", "zhy-verify"]
    assert before_commands["zhy-host-key"]["triggers"] == ["zhy-instance-id"]
    assert after_commands["zhy-host-key"]["triggers"] == ["zhy-instance-id-2"]
    assert "(instance zhy-instance-id-2)" in after_commands["zhy-install"]["create"]
    assert after_commands["zhy-install"]["stdin"] == before_commands["zhy-install"]["stdin"]  # same config
    assert after.exports["configs"] == zhy.exports["configs"]
    for peer in ("zhy", "bjs", "pub"):  # the verify's text itself changed, not only its connection
        assert after_commands[f"{peer}-verify"]["create"] != before_commands[f"{peer}-verify"]["create"], peer
        assert after_commands[f"{peer}-verify"]["create"].splitlines()[1:] == before_commands[f"{peer}-verify"]["create"].splitlines()[1:]
    # And an unchanged stack changes no command at all.
    assert _commands(run_program(ZHY)) == before_commands


def test_a_new_host_key_of_an_external_peer_makes_every_peer_verify_again(zhy: ProgramRun) -> None:
    """A reinstalled external host whose new key was accepted is a new host, like a replaced instance."""
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJPgDk9irDJeu7WkrONNflkmkYw9iBONUDZPwpGFfscz"
    config = copy.deepcopy(ZHY)
    config["wgmesh:mesh"]["peers"][2]["ssh_host_key"] = pinned
    before = _commands(run_program(config))
    config["wgmesh:mesh"]["peers"][2]["ssh_host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC1xFkK3JrBEAWJ8qfusMvXIUw+xkDzE2wIlhxeSGkiB"
    after = _commands(run_program(config))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["bjs-verify", "pub-install", "pub-verify", "zhy-verify"]
    assert after["pub-install"]["create"] == before["pub-install"]["create"]  # only its connection's pinned key


def test_every_ssh_connection_pins_the_peers_host_key(zhy: ProgramRun) -> None:
    commands = _commands(zhy)
    for peer in ("zhy", "bjs", "pub"):
        learned = zhy.mocks.named(f"{peer}-host-key").outputs["stdout"]
        assert learned.startswith("ssh-ed25519 ")
        for step in ("install", "verify"):
            assert commands[f"{peer}-{step}"]["connection"]["hostKey"] == learned
    scan = commands["pub-host-key"]["create"]
    assert "ssh-keyscan" in scan and "198.51.100.30" in scan and commands["pub-host-key"].get("triggers") is None
    assert commands["zhy-host-key"]["triggers"] == ["zhy-instance-id"]


def test_an_external_peers_configured_host_key_wins_and_nothing_is_scanned() -> None:
    pinned = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJPgDk9irDJeu7WkrONNflkmkYw9iBONUDZPwpGFfscz"
    config = copy.deepcopy(ZHY)
    config["wgmesh:mesh"]["peers"][2]["ssh_host_key"] = f"198.51.100.30 {pinned}"  # a known_hosts line
    run = run_program(config)
    commands = _commands(run)
    assert "pub-host-key" not in commands
    assert commands["pub-install"]["connection"]["hostKey"] == pinned == commands["pub-verify"]["connection"]["hostKey"]


def _four_peers() -> dict[str, Any]:
    config = copy.deepcopy(ZHY)
    config["wgmesh:mesh"]["peers"].append(
        {"name": "fra", "kind": "aws", "region": "cn-north-1", "vpc_cidr": "192.168.40.0/24", "key_name": "ops", "address": "10.255.0.4"}
    )
    return config


def test_a_peer_joining_edits_the_others_security_groups_in_place(zhy: ProgramRun) -> None:
    """No rule or group of an existing peer is replaced (no window without it, no duplicate-rule error): the
    joining peer's address is one more inline entry in each other AWS peer's group, an in-place update."""
    after = run_program(_four_peers())
    before = {r.name: r for r in zhy.mocks.resources if r.typ.startswith("aws:ec2/securityGroup")}
    now = {r.name: r for r in after.mocks.resources if r.typ.startswith("aws:ec2/securityGroup")}
    assert sorted(before) == ["bjs-sg", "zhy-sg"] and {"bjs-sg", "zhy-sg", "fra-sg"} == set(now)
    for name, resource in before.items():
        assert resource.typ == "aws:ec2/securityGroup:SecurityGroup"  # no separate rule resource (each would be replaced)
        for forces_new in ("vpcId", "description", "name", "namePrefix"):
            assert now[name].inputs.get(forces_new) == resource.inputs.get(forces_new), f"{name}.{forces_new}"
        assert now[name].inputs["egress"] == resource.inputs["egress"]
    fra = [("udp", 51820, 51820, [f"{fake_public_ip('fra-eip')}/32"])]
    for peer in ("zhy", "bjs"):
        assert _entries(after, peer) == _entries(zhy, peer) + fra  # appended: every existing entry stays as it was
    # And leaving is the same edit backwards.
    assert _entries(run_program(ZHY), "zhy") == _entries(zhy, "zhy")


def test_the_component_takes_the_ami_owner_from_its_providers_partition() -> None:
    """WireGuardPeer used directly, with a China provider and no ami_owner: Canonical's account in aws-cn."""
    from wgmesh.components import AwsHostArgs, MeshArgs, MeshComponent, WireGuardPeer, WireGuardPeerArgs
    from wgmesh.mesh.validation import load_mesh

    mocks = RecordingMocks()
    regions = {"p-cn": "cn-north-1", "p-eu": "eu-west-1"}

    def program() -> None:
        import pulumi_aws as aws

        peers = {}
        for index, (name, region) in enumerate(regions.items()):
            provider = aws.Provider(f"aws-{region}", region=region)
            cidr = f"192.168.{10 + index}.0/24"
            host = AwsHostArgs(provider=provider, vpc_cidr=cidr, admin_cidrs=["203.0.113.7/32"], key_name="ops")
            peers[name] = WireGuardPeer(name, WireGuardPeerArgs(host=host))
        description = load_mesh({"network": "10.99.0.0/24", "peers": [{"name": name} for name in regions]}, pending_endpoints=list(regions))
        MeshComponent("m", MeshArgs(mesh=description, peers=peers, ssh_private_key="key", verify=False))

    pulumi.runtime.set_mocks(mocks, project="wgmesh", stack="direct", preview=False)
    pulumi.runtime.test(program)()
    owners = {call.provider.split("::")[-2]: call.args["owners"] for call in mocks.calls if call.token == "aws:ec2/getAmi:getAmi"}
    assert owners == {"aws-cn-north-1": ["837727238323"], "aws-eu-west-1": ["099720109477"]}


def test_allowed_account_ids_reach_every_regional_provider() -> None:
    config = copy.deepcopy(ZHY)
    config["wgmesh:mesh"]["allowed_account_ids"] = ["123456789012"]
    run = run_program(config)
    # Provider configuration travels JSON-encoded.
    assert {r.name: json.loads(r.inputs["allowedAccountIds"]) for r in run.mocks.of_type("pulumi:providers:aws")} == {
        "aws-cn-northwest-1": ["123456789012"],
        "aws-cn-north-1": ["123456789012"],
    }
    assert all("allowedAccountIds" not in r.inputs for r in run_program(ZHY).mocks.of_type("pulumi:providers:aws"))


def _mixed_partitions() -> dict[str, Any]:
    config = copy.deepcopy(ZHY)
    config["wgmesh:mesh"]["peers"].append(
        {"name": "fra", "kind": "aws", "region": "eu-central-1", "vpc_cidr": "192.168.40.0/24", "key_name": "ops", "address": "10.255.0.4"}
    )
    return config


def test_a_stack_mixing_partitions_without_credentials_is_refused_before_any_resource() -> None:
    mocks = RecordingMocks()
    with pytest.raises(Exception, match=r"wgmesh:mesh\.aws_credentials: the AWS peers span partitions \(aws: eu-central-1; aws-cn: cn-n"):
        run_program(_mixed_partitions(), mocks=mocks)
    assert mocks.resources == []


def test_each_regions_provider_takes_its_partitions_credentials_and_default_tags() -> None:
    config = _mixed_partitions()
    config["wgmesh:mesh"]["aws_credentials"] = {
        "aws-cn": {"profile": "china"},
        "eu-central-1": {"profile": "global", "role_arn": "arn:aws:iam::123456789012:role/wgmesh", "session_name": "wgmesh"},
    }
    run = run_program(config)
    providers = {r.name: r.inputs for r in run.mocks.of_type("pulumi:providers:aws")}
    assert {name: inputs.get("profile") for name, inputs in providers.items()} == {
        "aws-cn-north-1": "china",
        "aws-cn-northwest-1": "china",
        "aws-eu-central-1": "global",
    }
    assert json.loads(providers["aws-eu-central-1"]["assumeRoles"]) == [
        {"roleArn": "arn:aws:iam::123456789012:role/wgmesh", "sessionName": "wgmesh"}
    ]
    assert "assumeRoles" not in providers["aws-cn-north-1"]
    for inputs in providers.values():  # every provider tags every taggable resource it creates
        assert json.loads(inputs["defaultTags"]) == {"tags": {"project": "wgmesh", "wgmesh:mesh": "wgmesh"}}


def test_default_tags_on_every_provider_of_the_example_stack(zhy: ProgramRun) -> None:
    for provider in zhy.mocks.of_type("pulumi:providers:aws"):
        assert json.loads(provider.inputs["defaultTags"])["tags"]["wgmesh:mesh"] == "wgmesh", provider.name
    untagged = {r.typ for r in zhy.mocks.resources if r.typ.startswith("aws:") and "tags" not in r.inputs}
    # Neither kind takes tags in EC2 (they are attachments, not resources with an ARN).
    assert untagged == {"aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/eipAssociation:EipAssociation"}


def test_100_aws_peers_and_externals_fit_the_default_route_and_group_quotas_with_route_summaries() -> None:
    """50 AWS peers per region (VPC, gateway and Elastic IP quotas raised, nothing else) and 10 externals."""
    config = synthetic_stack(110, external_every=11, regions=("cn-northwest-1", "cn-north-1"))
    aws_peers = [p for p in config["wgmesh:mesh"]["peers"] if p["kind"] == "aws"]
    assert len(aws_peers) == 100 and sum(p["region"] == "cn-north-1" for p in aws_peers) == 50
    run = run_program(config)
    tables = run.mocks.of_type("aws:ec2/routeTable:RouteTable")
    assert len(tables) == 100
    assert max(len(t.inputs["routes"]) for t in tables) + 1 <= 50  # + the VPC's local route
    groups = run.mocks.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert max(len(g.inputs.get("ingress", [])) for g in groups) <= 60  # every entry one CIDR: one rule each
    assert max(len(e.inputs["securityGroups"]) for e in run.mocks.of_type("aws:ec2/networkInterface:NetworkInterface")) <= 5
    entries = [e[3][0] for e in _wireguard_entries(run, "p0")]
    others = [p for p in config["wgmesh:mesh"]["peers"] if p["name"] != "p0"]
    expected = [f"{fake_public_ip(p['name'] + '-eip')}/32" if p["kind"] == "aws" else f"{p['ssh_host']}/32" for p in others]
    assert entries == list(dict.fromkeys(expected))  # every other peer, once (the mocks' addresses can coincide)

    without = synthetic_stack(110, external_every=11, regions=("cn-northwest-1", "cn-north-1"), summaries=False)
    mocks = RecordingMocks()
    with pytest.raises(Exception, match=r"wgmesh:mesh\.aws_quotas\.routes_per_table: peer '\w+' \(and 99 other peers\) needs 1\d\d route"):
        run_program(without, mocks=mocks)
    assert mocks.resources == []


def test_declared_project_config_has_defaults_and_the_program_runs_with_them() -> None:
    """A key declared in Pulumi.yaml without a default becomes required for every stack: each declared key has one,
    the alternatives (sshPrivateKey, sshPrivateKeyPath) stay optional, and the defaults the CLI fills in work."""
    import yaml

    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == {"sshPrivateKeyPath", "verify", "exportConfigs"}
    assert all("default" in spec and spec["type"] in ("string", "boolean") for spec in declared.values())
    assert declared["verify"]["default"] is True and declared["exportConfigs"]["default"] is False
    defaults = {
        f"wgmesh:{key}": str(spec["default"]).lower() if spec["type"] == "boolean" else spec["default"] for key, spec in declared.items()
    }
    run = run_program({**ZHY_FILE, **defaults})  # the secret sshPrivateKey still applies: the empty path does not override it
    assert "configs" not in run.exports
    commands = _commands(run)
    assert "wgmesh-test-key-not-real" in commands["zhy-install"]["connection"]["privateKey"]
    assert {name for name in commands if name.endswith("-verify")} == {"zhy-verify", "bjs-verify", "pub-verify"}


def test_a_gone_peer_keeps_an_install_with_no_command_and_the_others_drop_it() -> None:
    """``gone: true``: the host is gone for good. Its install resource stays, with neither create nor delete, so
    updating it and then deleting it never logs in; its verify is no longer declared; no config lists it."""
    gone = copy.deepcopy(ZHY)
    gone["wgmesh:mesh"]["peers"][2]["gone"] = True
    run = run_program(gone)
    commands = {resource.name: resource.plain for resource in run.mocks.of_type("command:remote:Command")}
    assert sorted(commands) == ["bjs-install", "bjs-verify", "pub-install", "zhy-install", "zhy-verify"]
    assert commands["pub-install"].get("create") is None and commands["pub-install"].get("delete") is None
    assert commands["pub-install"].get("stdin") is None
    assert sorted(run.exports["configs"]) == ["bjs", "zhy"]
    assert all("# Name = pub" not in text for text in run.exports["configs"].values())


def test_the_program_collects_young_garbage_in_bigger_batches_and_never_lowers_a_threshold() -> None:
    """The SDK's per-resource reference cycles made full collections a third of the program's time at 100 peers
    (bench/program.py): the program raises the collector's thresholds, and keeps any a process set higher."""
    import gc

    from wgmesh.components.program import PULUMI_PROGRAM_GC_THRESHOLDS

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        run_program(synthetic_stack(2))
        assert gc.get_threshold() == PULUMI_PROGRAM_GC_THRESHOLDS
        assert PULUMI_PROGRAM_GC_THRESHOLDS[0] > 700 and PULUMI_PROGRAM_GC_THRESHOLDS[2] > 10
        mine = PULUMI_PROGRAM_GC_THRESHOLDS
        gc.set_threshold(mine[0] * 2, mine[1] * 2, 10)
        run_program(synthetic_stack(2))
        assert gc.get_threshold() == (mine[0] * 2, mine[1] * 2, mine[2])
    finally:
        gc.set_threshold(*saved)
