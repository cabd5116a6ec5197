"""The stack config (wgmesh:mesh) validation: defaults per kind, and errors that name the key the user wrote."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from wgmesh.mesh.awsplan import AwsQuotas
from wgmesh.mesh.errors import MeshConfigError
from wgmesh.mesh.model import Endpoint
from wgmesh.mesh.stackconfig import load_stack, resolve_endpoints

BASE: dict[str, Any] = {
    "network": "10.255.0.0/24",
    "admin_cidrs": ["203.0.113.7/32"],
    # zhy (AWS China) and fra (AWS) are in two partitions: each needs credentials of its own.
    "aws_credentials": {"aws-cn": {"profile": "china"}, "aws": {"profile": "global"}},
    "peers": [
        {"name": "zhy", "kind": "aws", "region": "cn-northwest-1", "vpc_cidr": "192.168.10.0/24", "key_name": "ops"},
        {
            "name": "fra",
            "kind": "aws",
            "region": "eu-central-1",
            "vpc_cidr": "192.168.40.0/24",
            "key_name": "ops",
            "instance_type": "t4g.small",
        },
        {"name": "pub", "kind": "external", "endpoint": "198.51.100.30:51820", "subnets": ["10.7.1.0/24"]},
    ],
}


# A well-formed ed25519 public key blob (its private half was thrown away).
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIJPgDk9irDJeu7WkrONNflkmkYw9iBONUDZPwpGFfscz"


def stack(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(MeshConfigError) as caught:
        load_stack(raw)
    return {issue.path: f"{issue.problem}; {issue.fix}" for issue in caught.value.issues}


def test_defaults_per_kind_and_partition() -> None:
    spec = load_stack(stack())
    zhy, fra, pub = spec.peers
    assert spec.regions == ("cn-northwest-1", "eu-central-1")
    # The AMI owner is left to the component, which asks the provider for its partition (tests/test_program.py).
    assert zhy.aws is not None and zhy.aws.ami_owner is None and "amd64" in zhy.aws.ami_name_filter
    assert fra.aws is not None and fra.aws.ami_owner is None and "arm64" in fra.aws.ami_name_filter  # Graviton
    assert zhy.aws.ssh_user == "ubuntu" and zhy.aws.subnet_cidr == zhy.aws.vpc_cidr
    assert pub.external is not None and pub.external.ssh_host == "198.51.100.30" and pub.external.ssh_user == "root"
    mesh = spec.mesh
    assert [str(s) for s in mesh.peer("zhy").subnets] == ["192.168.10.0/24"]  # the VPC is routed
    # No default interface for AWS peers either (ens5 on Nitro, eth0 on Xen): each host's is found on it.
    assert mesh.peer("zhy").egress_interface is None and mesh.peer("pub").egress_interface is None
    assert mesh.peer("zhy").endpoint_pending and mesh.peer("zhy").endpoint is None


def test_resolve_endpoints_fills_pending_ones() -> None:
    mesh = resolve_endpoints(load_stack(stack()).mesh, {"zhy": "203.0.113.9"})
    assert mesh.peer("zhy").endpoint == Endpoint("203.0.113.9", 51820) and not mesh.peer("zhy").endpoint_pending


def test_vpc_overlap_is_reported_at_vpc_cidr_and_extra_subnets_keep_their_index() -> None:
    raw = stack()
    raw["peers"][1]["vpc_cidr"] = "192.168.10.0/24"
    raw["peers"][0]["subnets"] = ["10.7.1.0/25"]
    found = problems(raw)
    assert "wgmesh:mesh.peers[1].vpc_cidr" in found and "peers[0].vpc_cidr" in found["wgmesh:mesh.peers[1].vpc_cidr"]
    assert "wgmesh:mesh.peers[0].subnets[0]" in found or "wgmesh:mesh.peers[2].subnets[0]" in found


@pytest.mark.parametrize(
    ("edit", "path", "words"),
    [
        (lambda r: r["peers"][0].update(kind="gcp"), "wgmesh:mesh.peers[0].kind", "aws"),
        (lambda r: r["peers"][0].update(ssh_host="x"), "wgmesh:mesh.peers[0].ssh_host", "not a field of a aws peer"),
        (lambda r: r["peers"][2].update(region="eu-west-1"), "wgmesh:mesh.peers[2].region", "not a field"),
        (lambda r: r["peers"][0].update(endpoint="1.2.3.4:1"), "wgmesh:mesh.peers[0].endpoint", "Elastic IP"),
        (lambda r: r["peers"][0].update(vpc_cidr="10.0.0.0/8"), "wgmesh:mesh.peers[0].vpc_cidr", "/16 to /28"),
        (lambda r: r["peers"][0].update(subnet_cidr="10.9.0.0/24"), "wgmesh:mesh.peers[0].subnet_cidr", "inside"),
        (lambda r: r["peers"][0].update(ssh_public_key="ssh-ed25519 AAAA x"), "wgmesh:mesh.peers[0].key_name", "exactly one"),
        (lambda r: r["peers"][0].update(instance_type="huge"), "wgmesh:mesh.peers[0].instance_type", "t3.micro"),
        (lambda r: r["peers"][0].update(key_version=0), "wgmesh:mesh.peers[0].key_version", "rotate"),
        (lambda r: r["peers"][2].update(ssh_port=70000), "wgmesh:mesh.peers[2].ssh_port", "port"),
        (lambda r: r["peers"][2].pop("endpoint"), "wgmesh:mesh.peers[2].source_cidrs", "NAT"),
        (lambda r: r.update(admin_cidrs=["0.0.0.0/0"]), "wgmesh:mesh.admin_cidrs[0]", "whole internet"),
        (lambda r: r.pop("admin_cidrs"), "wgmesh:mesh.admin_cidrs", "missing"),
        (lambda r: r.update(colour="blue"), "wgmesh:mesh.colour", "unknown field"),
        # An OpenSSH key whose blob is not base64, is cut, or names another type than it holds.
        (
            lambda r: r["peers"][0].update(key_name=None, ssh_public_key="ssh-ed25519 AAAA%%%%AAAA x"),
            "wgmesh:mesh.peers[0].ssh_public_key",
            "base64",
        ),
        (
            lambda r: r["peers"][0].update(key_name=None, ssh_public_key=f"ssh-ed25519 {ED25519[:40]}"),
            "wgmesh:mesh.peers[0].ssh_public_key",
            "",
        ),
        (
            lambda r: r["peers"][0].update(key_name=None, ssh_public_key=f"ssh-rsa {ED25519}"),
            "wgmesh:mesh.peers[0].ssh_public_key",
            "not ssh-rsa",
        ),
        (lambda r: r["peers"][2].update(ssh_host_key="AAAA"), "wgmesh:mesh.peers[2].ssh_host_key", "ssh-keyscan -t ed25519 198.51.100.30"),
        (lambda r: r["peers"][0].update(ssh_host_key=f"ssh-ed25519 {ED25519}"), "wgmesh:mesh.peers[0].ssh_host_key", "not a field"),
        (lambda r: r.update(aws_quotas={"vpcs": 9}), "wgmesh:mesh.aws_quotas.vpcs", "vpcs_per_region"),
        (lambda r: r.update(aws_quotas={"routes_per_table": 0}), "wgmesh:mesh.aws_quotas.routes_per_table", "positive"),
        (lambda r: r.update(route_summaries=["8.0.0.0/8"]), "wgmesh:mesh.route_summaries[0]", "private"),
        (lambda r: r.update(route_summaries=["192.168.0.0/16", "192.168.0.0/20"]), "wgmesh:mesh.route_summaries[1]", "overlaps"),
        (lambda r: r.update(route_summaries=["10.0.0.0/8"], admin_cidrs=["10.1.2.3/32"]), "wgmesh:mesh.route_summaries[0]", "admin"),
        (lambda r: r.update(allowed_account_ids=[123]), "wgmesh:mesh.allowed_account_ids[0]", "12-digit"),
        (lambda r: r.update(allowed_account_ids=[]), "wgmesh:mesh.allowed_account_ids", "non-empty"),
    ],
)
def test_each_mistake_names_its_key(edit: Any, path: str, words: str) -> None:
    raw = stack()
    edit(raw)
    found = problems(raw)
    assert path in found, found
    assert words in found[path]


def test_external_peer_behind_nat_with_source_cidrs_is_fine() -> None:
    raw = stack()
    raw["peers"][2].pop("endpoint")
    raw["peers"][2].update(ssh_host="198.51.100.30", source_cidrs=["198.51.100.0/28"])
    spec = load_stack(raw)
    assert spec.mesh.peer("pub").endpoint is None
    assert [str(c) for c in spec.peer("pub").external.source_cidrs] == ["198.51.100.0/28"]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    raw = stack()
    raw["peers"][0]["region"] = "nowhere"
    raw["peers"][2]["kind"] = "vm"
    raw["admin_cidrs"] = ["bad"]
    paths = list(problems(raw))
    assert paths == ["wgmesh:mesh.admin_cidrs[0]", "wgmesh:mesh.peers[0].region", "wgmesh:mesh.peers[2].kind"]


# IPv6 and AWS peers: refused where written, never dropped (the AWS component builds IPv4 only; docs/ipv6.md).
AWS_IPV6 = {
    "network": (lambda r: r.update(network=["10.255.0.0/24", "fd00:255::/64"]), "wgmesh:mesh.network[1]", "AWS peers (zhy, fra)"),
    "network-scalar": (lambda r: r.update(network="fd00:255::/64"), "wgmesh:mesh.network", "IPv6 tunnel network"),
    "subnets": (lambda r: r["peers"][1].update(subnets=["10.8.0.0/24", "fd00:8::/64"]), "wgmesh:mesh.peers[1].subnets[1]", "IPv4 only"),
    "subnet_cidr": (lambda r: r["peers"][0].update(subnet_cidr="2001:db8::/64"), "wgmesh:mesh.peers[0].subnet_cidr", "IPv6"),
    "endpoint": (lambda r: r["peers"][2].update(endpoint="[2001:db8::30]:51820"), "wgmesh:mesh.peers[2].endpoint", "IPv4 endpoint"),
    "source_cidrs": (lambda r: r["peers"][2].update(source_cidrs=["2001:db8::30/128"]), "wgmesh:mesh.peers[2].source_cidrs[0]", "IPv4"),
    "admin_cidrs": (lambda r: r.update(admin_cidrs=["2001:db8:7::/48"]), "wgmesh:mesh.admin_cidrs[0]", "SSH over IPv4"),
}


@pytest.mark.parametrize("case", sorted(AWS_IPV6))
def test_ipv6_that_aws_peers_would_carry_is_refused_naming_the_field(case: str) -> None:
    edit, path, words = AWS_IPV6[case]
    raw = stack()
    edit(raw)
    found = problems(raw)
    assert path in found, found
    assert words in found[path]


def test_all_aws_ipv6_problems_come_at_once_and_dual_stack_without_aws_is_fine() -> None:
    raw = stack(network=["10.255.0.0/24", "fd00:255::/64"])
    raw["peers"][0]["subnets"] = ["fd00:10::/64"]
    raw["peers"][2]["endpoint"] = "[2001:db8::30]:51820"
    assert {"wgmesh:mesh.network[1]", "wgmesh:mesh.peers[0].subnets[0]", "wgmesh:mesh.peers[2].endpoint"} <= set(problems(raw))
    external = dict(raw["peers"][2]) | {"subnets": ["10.7.1.0/24", "fd00:7::/64"]}
    spec = load_stack({"network": raw["network"], "peers": [external, {"name": "home", "kind": "external", "ssh_host": "192.0.2.9"}]})
    assert {network.version for network in spec.mesh.networks} == {4, 6}
    assert str(spec.mesh.peer("pub").endpoint) == "[2001:db8::30]:51820"


def test_external_host_key_accepts_a_known_hosts_line_and_keeps_the_key() -> None:
    raw = stack()
    raw["peers"][2]["ssh_host_key"] = f"198.51.100.30,pub.example ssh-ed25519 {ED25519} from the console"
    assert load_stack(raw).peer("pub").external.ssh_host_key == f"ssh-ed25519 {ED25519}"
    assert load_stack(stack()).peer("pub").external.ssh_host_key is None  # learned on first contact


def aws_peers(count: int, region: str = "cn-north-1", **extra: Any) -> dict[str, Any]:
    """A stack of ``count`` AWS peers in one region, VPCs planned from 172.16.0.0/12."""
    peers = [
        {"name": f"a{i}", "kind": "aws", "region": region, "vpc_cidr": f"172.{16 + i // 256}.{i % 256}.0/24", "key_name": "ops"}
        for i in range(count)
    ]
    return {"network": "10.255.0.0/24", "admin_cidrs": ["203.0.113.7/32"], "peers": peers, **extra}


def test_six_aws_peers_in_one_region_exceed_the_default_per_region_quotas_at_validation() -> None:
    assert load_stack(aws_peers(5)).aws_plans  # five fit AWS's defaults
    found = problems(aws_peers(6))
    assert sorted(found) == [
        "wgmesh:mesh.aws_quotas.elastic_ips_per_region",
        "wgmesh:mesh.aws_quotas.internet_gateways_per_region",
        "wgmesh:mesh.aws_quotas.vpcs_per_region",
    ]
    assert "6 AWS peers in cn-north-1 need 6 VPCs, the quota is 5" in found["wgmesh:mesh.aws_quotas.vpcs_per_region"]
    assert "aws_quotas.vpcs_per_region" in found["wgmesh:mesh.aws_quotas.vpcs_per_region"]  # the fix names the key
    raised = dict.fromkeys(("vpcs_per_region", "internet_gateways_per_region", "elastic_ips_per_region"), 6)
    assert len(load_stack(aws_peers(6, aws_quotas=raised)).aws_plans) == 6  # a raised quota is taken at its word


def test_route_and_group_quotas_at_many_peers_and_route_summaries_keep_tables_small() -> None:
    raised = dict.fromkeys(("vpcs_per_region", "internet_gateways_per_region", "elastic_ips_per_region"), 70)
    found = problems(aws_peers(70, aws_quotas=raised))
    assert list(found) == ["wgmesh:mesh.aws_quotas.routes_per_table"]  # 69 WireGuard sources fit two groups of 5
    assert "needs 72 route table entries, the quota is 50" in found["wgmesh:mesh.aws_quotas.routes_per_table"]
    assert "route_summaries" in found["wgmesh:mesh.aws_quotas.routes_per_table"]
    spec = load_stack(aws_peers(70, aws_quotas=raised, route_summaries=["172.16.0.0/12"]))
    plan = spec.aws_plans["a0"]
    assert plan.routes == ("10.255.0.0/24", "172.16.0.0/12")  # one route for every other VPC; its own local route wins
    assert plan.route_entries == 4
    # 69 other peers: 58 in the main group (after SSH from one admin CIDR and the VPC), 11 in a second one.
    assert [len(group) for group in plan.wireguard_groups] == [58, 11]
    assert plan.security_groups == 2
    tight = AwsQuotas(security_groups_per_interface=1)
    found = problems(
        aws_peers(
            70,
            aws_quotas={**raised, "security_groups_per_interface": tight.security_groups_per_interface},
            route_summaries=["172.16.0.0/12"],
        )
    )
    assert list(found) == ["wgmesh:mesh.aws_quotas.security_groups_per_interface"]
    assert "needs 2 security groups" in found["wgmesh:mesh.aws_quotas.security_groups_per_interface"]


def test_a_summary_may_not_cover_an_external_peers_public_address() -> None:
    raw = stack(route_summaries=["192.168.0.0/16"])
    raw["peers"][2]["endpoint"] = "192.168.99.1:51820"
    found = problems(raw)
    assert "wgmesh:mesh.route_summaries" in found and "'pub'" in found["wgmesh:mesh.route_summaries"]


def test_rebuild_is_an_aws_peers_boolean() -> None:
    raw = stack()
    raw["peers"][0]["rebuild"] = "yes"
    raw["peers"][2]["rebuild"] = True
    found = problems(raw)
    assert "is not true or false" in found["wgmesh:mesh.peers[0].rebuild"]
    assert "not a field of a external peer" in found["wgmesh:mesh.peers[2].rebuild"]
    raw = stack()
    raw["peers"][0]["rebuild"] = True
    spec = load_stack(raw)
    assert spec.peers[0].aws is not None and spec.peers[0].aws.rebuild is True
    assert spec.peers[1].aws is not None and spec.peers[1].aws.rebuild is False


WG_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="  # the WireGuard documentation's example private key


@pytest.mark.parametrize("field", ["private_key", "public_key", "preshared_key", "preshared_keys", "psk"])
def test_key_fields_on_a_stack_peer_are_refused_naming_the_field_and_the_fix(field: str) -> None:
    """The program generates every key: a pasted one would be ignored, and it sits in plain text in the stack file."""
    raw = stack()
    raw["peers"][2][field] = WG_KEY
    found = problems(raw)
    message = found[f"wgmesh:mesh.peers[2].{field}"]
    assert "key_version" in message or "generated" in message
    assert list(found) == [f"wgmesh:mesh.peers[2].{field}"]  # reported once, not again as a key-shaped value
    assert WG_KEY not in message


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        (("tags", "note"), WG_KEY, "looks like a WireGuard key"),
        (("peers", 2, "post_up"), f"wg set wg0 private-key <(echo {WG_KEY})", None),  # inside a command: not a whole key
        (("peers", 0, "ssh_user"), "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n", "private key"),
        (("tags", "deploy"), "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "private key"),
    ],
)
def test_key_shaped_plain_values_are_refused_with_the_secret_config_fix(where: tuple[Any, ...], value: str, expected: str | None) -> None:
    raw = stack(tags={})
    target: Any = raw
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = value
    path = "wgmesh:mesh" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in where)
    if expected is None:
        load_stack(raw)
        return
    found = problems(raw)
    assert expected in found[path]
    assert "pulumi config set --secret wgmesh:sshPrivateKey" in found[path] and "key_version" in found[path]
    assert value.strip() not in found[path]


def test_ssh_public_keys_and_host_keys_are_not_mistaken_for_private_keys() -> None:
    raw = stack()
    raw["peers"][0].pop("key_name")
    raw["peers"][0]["ssh_public_key"] = f"ssh-ed25519 {ED25519} ops@wgmesh"
    raw["peers"][2]["ssh_host_key"] = f"ssh-ed25519 {ED25519}"
    load_stack(raw)


def test_a_stack_mixing_partitions_needs_credentials_per_partition() -> None:
    """One ambient credential set is valid in one partition: the other side failed half-way through `pulumi up`."""
    raw = stack()
    del raw["aws_credentials"]
    found = problems(raw)
    message = found["wgmesh:mesh.aws_credentials"]
    assert "aws: eu-central-1; aws-cn: cn-northwest-1" in message and "profile" in message
    assert list(found) == ["wgmesh:mesh.aws_credentials"]
    # A role alone is assumed with the ambient credentials: still one credential set.
    role_only = stack(aws_credentials={"aws-cn": {"role_arn": "arn:aws-cn:iam::123456789012:role/wgmesh"}})
    assert "wgmesh:mesh.aws_credentials" in problems(role_only)
    # One partition may keep the ambient credentials; the other names a profile (per partition, or per region).
    for credentials in (
        {"aws-cn": {"profile": "china"}},
        {"eu-central-1": {"profile": "global", "role_arn": "arn:aws:iam::123456789012:role/w"}},
    ):
        spec = load_stack(stack(aws_credentials=credentials))
        assert spec.credentials_for("eu-central-1") == (credentials.get("eu-central-1") and spec.aws_credentials["eu-central-1"])
    spec = load_stack(stack())
    assert spec.credentials_for("cn-northwest-1") is not None and spec.credentials_for("cn-northwest-1").profile == "china"
    # A single partition needs nothing.
    single = stack(aws_credentials=None)
    del single["aws_credentials"]
    single["peers"][1]["region"] = "cn-north-1"
    assert load_stack(single).aws_credentials == {}


@pytest.mark.parametrize(
    ("credentials", "path", "expected"),
    [
        ({"aws-cn": {"secret_key": "x", "profile": "china"}}, "wgmesh:mesh.aws_credentials.aws-cn.secret_key", "plain text"),
        ({"aws-cn": {"profile": "china"}, "aws": {"access_key_id": "AKIA"}}, "wgmesh:mesh.aws_credentials.aws.access_key_id", "profile"),
        ({"aws-cn": {"role_arn": "arn:aws:iam::123456789012:role/w"}}, "wgmesh:mesh.aws_credentials.aws-cn.role_arn", "across partitions"),
        ({"mars": {"profile": "x"}}, "wgmesh:mesh.aws_credentials.mars", "neither an AWS partition nor a region"),
        ({"aws-cn": {}}, "wgmesh:mesh.aws_credentials.aws-cn", "neither a profile nor a role"),
    ],
)
def test_aws_credentials_name_profiles_and_roles_never_keys(credentials: dict[str, Any], path: str, expected: str) -> None:
    assert expected in problems(stack(aws_credentials=credentials))[path]


def test_a_gone_peer_is_out_of_the_mesh_and_listed_apart() -> None:
    raw = stack()
    raw["peers"][2]["gone"] = True
    spec = load_stack(raw)
    assert spec.gone == ("pub",) and "pub" not in spec.mesh.names and [peer.name for peer in spec.peers] == ["zhy", "fra"]
    raw["peers"][2]["gone"] = "yes"
    assert "gone" in " ".join(problems(raw))
