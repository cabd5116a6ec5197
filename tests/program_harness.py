"""The program harness for the mock tests: :mod:`tests.mock_program` (a fake SSH key as the default secret),
plus :func:`synthetic_stack` for size tests and benchmarks.
"""

from __future__ import annotations

from typing import Any

from tests.mock_program import (
    FAKE_SSH_KEY,
    PROGRAM,
    REPO,
    SECRET_SIG_KEY,
    SECRET_SIG_VALUE,
    ProgramRun,
    RecordingMocks,
    Registered,
    fake_public_ip,
    is_secret_value,
    run_program,
    unwrap_secrets,
)
from wgmesh.lab.deploy import stack_config

__all__ = [
    "FAKE_SSH_KEY",
    "PROGRAM",
    "REGIONS",
    "REPO",
    "SECRET_SIG_KEY",
    "SECRET_SIG_VALUE",
    "ProgramRun",
    "RecordingMocks",
    "Registered",
    "fake_public_ip",
    "is_secret_value",
    "run_program",
    "stack_config",
    "synthetic_stack",
    "unwrap_secrets",
]

REGIONS = ("cn-northwest-1", "cn-north-1", "eu-west-1")


def synthetic_stack(
    peers: int, *, external_every: int = 3, regions: tuple[str, ...] = REGIONS, summaries: bool = True, quotas: bool = True
) -> dict[str, Any]:
    """A stack config with ``peers`` members over ``regions``, every ``external_every``-th one external (0: none).

    The VPCs are planned from 172.16.0.0/12 and the externals' subnets from 10.100.0.0/14, which ``summaries``
    lists as ``route_summaries``; ``quotas`` raises the per-region VPC, gateway and Elastic IP quotas to fit.
    """
    members: list[dict[str, Any]] = []
    for index in range(peers):
        name = f"p{index}"
        address = {"address": f"10.255.{index // 250}.{1 + index % 250}"}
        if external_every and index % external_every == external_every - 1:
            members.append(
                {
                    "name": name,
                    "kind": "external",
                    "ssh_host": f"198.51.{100 + index // 250}.{1 + index % 250}",
                    "endpoint": f"198.51.{100 + index // 250}.{1 + index % 250}:51820",
                    "subnets": [f"10.{100 + index // 256}.{index % 256}.0/24"],
                    **address,
                }
            )
        else:
            members.append(
                {
                    "name": name,
                    "kind": "aws",
                    "region": regions[index % len(regions)],
                    "vpc_cidr": f"172.{16 + index // 256}.{index % 256}.0/24",
                    "key_name": "ops",
                    **address,
                }
            )
    mesh: dict[str, Any] = {
        "network": "10.255.0.0/22" if peers > 240 else "10.255.0.0/24",
        "admin_cidrs": ["203.0.113.7/32"],
        "peers": members,
    }
    used = {member["region"] for member in members if member["kind"] == "aws"}
    if any(region.startswith("cn-") for region in used) and any(not region.startswith("cn-") for region in used):
        mesh["aws_credentials"] = {"aws-cn": {"profile": "china"}, "aws": {"profile": "global"}}  # two partitions
    if summaries:
        mesh["route_summaries"] = ["172.16.0.0/12", "10.100.0.0/14"]
    if quotas:
        mesh["aws_quotas"] = dict.fromkeys(("vpcs_per_region", "internet_gateways_per_region", "elastic_ips_per_region"), max(5, peers))
    return {"wgmesh:mesh": mesh}
