"""Shared fixtures and helpers for wgmesh's tests.

Kept small and generic: a reference three-peer description, deterministic keys, and the guards interop/lab tests
use to skip with a clear reason when root, ``ip netns`` or the WireGuard tools are missing. Feature-specific
fixtures belong in their own test modules.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from wgmesh.mesh.keys import private_key_from_seed
from wgmesh.mesh.render import MeshKeys

if TYPE_CHECKING:
    from wgmesh.lab import Lab
    from wgmesh.lab.deploy import LabStack, UpResult

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "mesh.yaml"

# The example mesh (examples/mesh.yaml) as a raw description, for tests that do not read YAML.
THREE_PEERS: dict[str, Any] = {
    "network": "10.255.0.0/24",
    "peers": [
        {
            "name": "zhy",
            "address": "10.255.0.1",
            "endpoint": "203.0.113.10:51820",
            "subnets": ["192.168.10.0/24"],
            "egress_interface": "ens5",
        },
        {
            "name": "bjs",
            "address": "10.255.0.2",
            "endpoint": "203.0.113.20:51820",
            "subnets": ["192.168.20.0/24"],
            "egress_interface": "ens5",
        },
        {"name": "pub", "address": "10.255.0.3", "endpoint": "198.51.100.30:51820", "subnets": ["192.168.30.0/24", "10.7.1.0/24"]},
    ],
}


@pytest.fixture
def three_peers() -> dict[str, Any]:
    """A fresh deep copy of :data:`THREE_PEERS`, free to mutate."""
    return copy.deepcopy(THREE_PEERS)


def seeded_private_key(name: str, salt: str = "") -> str:
    """A deterministic private key per name: tests stay reproducible without storing keys."""
    return private_key_from_seed(hashlib.sha256(f"wgmesh-test:{salt}:{name}".encode()).digest())


def seeded_keys(names: list[str] | tuple[str, ...], salt: str = "", *, psk: bool = True) -> MeshKeys:
    """Deterministic :class:`MeshKeys` for the given peer names."""
    secret = hashlib.sha256(f"wgmesh-test-secret:{salt}".encode()).digest() if psk else None
    return MeshKeys({name: seeded_private_key(name, salt) for name in names}, secret)


def require_tools(*tools: str) -> None:
    """Skip the calling test, naming what is missing, unless every tool is on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: apt-get install wireguard-tools wireguard-go iptables iproute2)")


def require_root_netns() -> None:
    """Skip unless we are root and may create network namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    require_tools("ip")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns` does not work here: {probe.stderr.strip()}")


def require_lab() -> None:
    """Skip, saying what is missing, unless we are root with every tool the lab and the tests run."""
    from wgmesh.lab.core import LabError, check_prerequisites

    try:
        check_prerequisites()
    except LabError as exc:
        pytest.skip(f"lab unavailable: {exc}")
    require_tools("ssh", "ping")


@contextlib.contextmanager
def running_lab(state_dir: Path, hosts: int, **options: Any) -> Iterator[Lab]:
    """A lab of ``hosts`` hosts for a test module's fixture, always taken down afterwards, even when a test fails.

    Waits its turn (up to 240 s) when another lab, from a concurrent test run, holds the machine's ``wgl-`` names.
    """
    require_lab()
    from wgmesh.lab import Lab

    shared = Lab(state_dir)
    try:
        shared.up(hosts, wait=240, **options)
        yield shared
    finally:
        shared.down()


def engine_stack(lab: Lab) -> LabStack:
    """The lab's stack, deployed by the real engine; says which engine and providers run it (``pytest -s``, CI's log)."""
    from wgmesh.lab.deploy import LabStack

    made = LabStack(lab)
    print(f"engine: {made.engine}")
    return made


def deployed(stack: LabStack, config: dict[str, Any], *, verified: bool = True, **options: Any) -> UpResult:
    """One ``pulumi up`` through the engine that must succeed (its summary printed); with ``verified``, every peer of
    ``config`` verified. ``options`` go to the engine (``replace=[urn]``, ``expect_no_changes=True``)."""
    result = stack.up(config, **options)
    assert result.ok, f"pulumi up failed: {result.error}"
    print(result.summary)
    if verified:
        names = [peer["name"] for peer in config["wgmesh:mesh"]["peers"]]
        outcome = {name: check["ok"] for name, check in result.verification.items()}
        assert outcome == dict.fromkeys(names, True), result.verification
    return result


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway network namespace (unique name ``wgmesh-t-<pid>-<n>``), deleted afterwards even on failure."""
    require_root_netns()
    name = f"wgmesh-t-{os.getpid()}-{abs(hash(request.node.nodeid)) % 100000}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """With ``WGMESH_NO_SKIPS=1`` (``.ci/run`` sets it) a skipped test is a failure.

    Lab, interop and install tests skip, naming what is missing, where root or a tool is absent: right on a
    laptop, wrong in CI, where a run full of skips would otherwise pass while proving nothing. CI installs
    everything those tests need, so any skip there means the proof did not run.
    """
    if os.environ.get("WGMESH_NO_SKIPS") != "1" or call.excinfo is None or not call.excinfo.errisinstance(pytest.skip.Exception):
        return None
    report = pytest.TestReport.from_item_and_call(item, call)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI (WGMESH_NO_SKIPS=1), which installs everything the tests need: {call.excinfo.value}"
    return report
