"""The example project under examples/multicloud: another Pulumi project built from wgmesh's components.

Run under the same mocks as the main program, it must build its own three-peer mesh (two AWS regions through
their own providers, one external host) and render configs that name every other member; and the package that
`pip install git+<repo>` installs must carry the components and the pure core it imports, under `wgmesh`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.checkout import build_wheel
from tests.program_harness import REPO, fake_public_ip, run_program, stack_config
from wgmesh.mesh.wgconf import parse_config

EXAMPLE = REPO / "examples" / "multicloud"


@pytest.fixture(scope="module")
def example_run():
    config = stack_config(EXAMPLE / "Pulumi.dev.yaml")
    return run_program(
        config,
        stack="dev",
        program=EXAMPLE / "__main__.py",
        project="multicloud-mesh",
        secrets={"multicloud-mesh:sshPrivateKey": "fake-key"},
    )


def test_example_builds_its_own_mesh(example_run) -> None:
    providers = {r.name: r.inputs["region"] for r in example_run.mocks.of_type("pulumi:providers:aws")}
    assert providers == {"aws-us-east-1": "us-east-1", "aws-eu-west-1": "eu-west-1"}
    instances = {r.name: r.provider_name for r in example_run.mocks.of_type("aws:ec2/instance:Instance")}
    assert instances == {"use1-instance": "aws-us-east-1", "euw1-instance": "aws-eu-west-1"}
    ami_owners = {call.args["owners"][0] for call in example_run.mocks.calls if call.token == "aws:ec2/getAmi:getAmi"}
    assert ami_owners == {"099720109477"}  # Canonical outside AWS China
    assert len(example_run.mocks.of_type("command:remote:Command")) == 6
    assert example_run.secret_exports["configs"] is True


def test_example_configs_name_every_other_member(example_run) -> None:
    configs = example_run.exports["configs"]
    keys = example_run.exports["public_keys"]
    endpoints = {
        "use1": f"{fake_public_ip('use1-eip')}:51820",
        "euw1": f"{fake_public_ip('euw1-eip')}:51820",
        "onprem": "198.51.100.77:51820",
    }
    for name, text in configs.items():
        parsed = parse_config(text)
        assert {section.name for section in parsed.peers} == set(configs) - {name}
        for section in parsed.peers:
            assert section.get("PublicKey") == keys[section.name]
            assert section.get("Endpoint") == endpoints[section.name]
    onprem_install = example_run.mocks.named("onprem-install").plain
    assert onprem_install["connection"]["user"] == "admin"
    assert onprem_install["connection"]["host"] == "198.51.100.77"


def test_the_installable_package_carries_components_and_core(tmp_path: Path) -> None:
    """What `pip install git+<repo>` builds: a wheel with components/ and mesh/, and no tests."""
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for module in (
        "wgmesh/components/__init__.py",
        "wgmesh/components/peer.py",
        "wgmesh/components/mesh_component.py",
        "wgmesh/mesh/render.py",
        "wgmesh/hostside/install.py",
    ):
        assert module in names
    assert not any(name.startswith("tests/") for name in names)
    # The `wgmesh` console script and what it runs.
    assert "wgmesh/cli/main.py" in names and "wgmesh/cli/lab.py" in names
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "wgmesh = wgmesh.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
