"""``examples/yaml``: a Pulumi YAML program deploys a mesh of lab hosts through the real engine and the ``wgmesh``
component package, with no Python in the program (issue 19, item 4).

The CLI (``./dev engine``) runs the YAML language host (built by ``./dev engine`` too) and the package's launcher
(``provider/pulumi-resource-wgmesh``); the nested ``command``/``random`` resources run on our test providers. A
private ``PULUMI_HOME``, a ``file://`` backend, a passphrase, plugin downloads off. One lab of three hosts: up of two,
``up --expect-no-changes``, a preview adding the third (only its changes, no secret in the output), destroy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import running_lab
from tests.package_programs import LabMesh, assert_adding_a_peer_changes_only_its_share, assert_no_secret, private_env
from tests.program_harness import REPO

pytestmark = pytest.mark.lab

EXAMPLE = REPO / "examples" / "yaml"
STACK = "lab"


class YamlProject:
    """The example copied into ``directory`` (the plugin path made absolute), run with the CLI in a private workspace."""

    def __init__(self, directory: Path) -> None:
        from testproviders import install_shims
        from wgmesh.lab.engine import find_cli

        cli = find_cli()
        if not (cli.parent / "pulumi-language-yaml").exists() and shutil.which("pulumi-language-yaml") is None:
            pytest.skip("no pulumi-language-yaml: `./dev engine` builds it")
        self.cli = str(cli)
        self.project = directory / "project"
        shutil.copytree(EXAMPLE, self.project)
        settings = yaml.safe_load((self.project / "Pulumi.yaml").read_text())
        settings["plugins"]["providers"][0]["path"] = str(REPO / "provider")
        (self.project / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        shims = directory / "shims"
        install_shims(shims, python=sys.executable)
        self.env = private_env(directory, cli, shims)

    def run(self, *argv: str, stdin: str | None = None, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.cli, *argv, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"pulumi {' '.join(argv)}:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
        return result

    def configure(self, peers: list[dict[str, Any]], network: str, ssh_key: str) -> None:
        """The stack file (plain config) and the SSH key as a secret."""
        path = self.project / f"Pulumi.{STACK}.yaml"
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
        config = dict(current.get("config") or {})
        config.update({"wgmesh-yaml:network": network, "wgmesh-yaml:peers": peers})
        path.write_text(yaml.safe_dump({**current, "config": config}, sort_keys=False))
        if "wgmesh-yaml:sshPrivateKey" not in config:
            self.run("config", "set", "--secret", "sshPrivateKey", "--stack", STACK, stdin=ssh_key)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_lab(tmp_path_factory.mktemp("yaml") / "state", 3) as shared:
        yield shared


def test_a_yaml_program_deploys_verifies_and_destroys_a_mesh_of_lab_hosts(lab: Any, tmp_path: Path) -> None:
    mesh = LabMesh.of(lab)
    project = YamlProject(tmp_path)
    project.run("stack", "init", STACK)
    project.configure(mesh.peers[:2], mesh.network, mesh.ssh_key)

    up = project.run("up", "--yes", "--skip-preview", "--stack", STACK, timeout=900)
    print(up.stdout[-1500:])
    outputs = json.loads(project.run("stack", "output", "--json", "--stack", STACK).stdout)
    names = mesh.names(2)
    assert sorted(outputs["publicKeys"]) == sorted(names)
    assert all(outputs["verification"][name]["ok"] is True for name in names), outputs["verification"]
    assert "configs" not in outputs

    project.run("up", "--yes", "--expect-no-changes", "--stack", STACK, timeout=600)

    project.configure(mesh.peers, mesh.network, mesh.ssh_key)
    preview = project.run("preview", "--json", "--stack", STACK, timeout=600)
    assert_adding_a_peer_changes_only_its_share(json.loads(preview.stdout).get("steps", []), mesh.peers[2]["name"])
    assert_no_secret(preview.stdout + preview.stderr, mesh.ssh_key)

    project.configure(mesh.peers[:2], mesh.network, mesh.ssh_key)
    destroyed = project.run("destroy", "--yes", "--stack", STACK, timeout=600)
    assert "error" not in destroyed.stdout.lower(), destroyed.stdout[-2000:]
    for name in names:
        assert lab.exec(name, ["test", "!", "-e", "/etc/wireguard/wg0.conf"], timeout=30) == 0
