"""``examples/typescript``: a TypeScript program deploys a mesh of lab hosts through the real engine and the ``wgmesh``
component package, with the typed SDK generated from the package's schema (issue 19, item 4).

The Node.js language host is not served by the Go module proxy, so ``pulumi up`` of the project cannot run here;
``examples/typescript/automation.ts`` runs the same program function (``program.ts``, which ``index.ts`` runs under
``pulumi up``) through the Node.js Automation API as an inline program: the Node process serves it to the CLI
(``--client``), and the engine runs the package's launcher (``provider/pulumi-resource-wgmesh``) and, for the nested
``command``/``random`` resources, our test providers. Compiled with ``tsc`` (strict) against the SDK first, so a
program that no longer type-checks against the schema fails here too. A private ``PULUMI_HOME``, a ``file://``
backend, a random passphrase, plugin downloads off. One lab of three hosts: up of two, an up that must change nothing,
a preview adding the third (only its changes, no secret in the output), destroy.

The SDK in ``examples/typescript/sdks/wgmesh`` is committed, as ``pulumi package add`` leaves it in a project;
:func:`test_the_committed_sdk_is_what_gen_sdk_generates` regenerates it with ``pulumi package gen-sdk`` and fails when
it differs (``WGMESH_UPDATE_SNAPSHOT=1`` rewrites it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import running_lab
from tests.package_programs import LabMesh, assert_adding_a_peer_changes_only_its_share, assert_no_secret, private_env
from tests.program_harness import REPO

EXAMPLE = REPO / "examples" / "typescript"
SDK = EXAMPLE / "sdks" / "wgmesh"
LAUNCHER = REPO / "provider" / "pulumi-resource-wgmesh"
STACK = "lab"
PROJECT = "wgmesh-typescript"


def pulumi_cli() -> Path:
    from wgmesh.lab.engine import EngineMissing, find_cli

    try:
        return find_cli()
    except EngineMissing as exc:
        pytest.skip(str(exc))


def nodejs_codegen_dir(cli: Path) -> Path | None:
    """Where ``./dev engine`` builds the code-generating ``pulumi-language-nodejs``, beside the CLI's ``bin``; none
    where the real host is installed (an official CLI ships it)."""
    if (cli.parent / "pulumi-language-nodejs").exists() or shutil.which("pulumi-language-nodejs"):
        return None
    built = cli.parent.parent / "nodejs-codegen"
    if not (built / "pulumi-language-nodejs").exists():
        pytest.skip("no pulumi-language-nodejs to generate the SDK with: `./dev engine` builds one")
    return built


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes; what npm builds there (bin, node_modules) left out."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not {"bin", "node_modules"} & set(path.relative_to(root).parts)
    }


def differences(left: Path, right: Path) -> list[str]:
    """Every file that is only in one tree or differs between them, as a path relative to the trees."""
    a, b = tree(left), tree(right)
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


def test_the_committed_sdk_is_what_gen_sdk_generates(tmp_path: Path) -> None:
    """``pulumi package gen-sdk`` of the launcher (``--local``, as ``pulumi package add`` generates into ``sdks/``)
    gives exactly the committed SDK: a schema change that is not regenerated fails here."""
    cli = pulumi_cli()
    codegen = nodejs_codegen_dir(cli)
    env = private_env(tmp_path, cli, *([codegen] if codegen else []))
    out = tmp_path / "out"
    result = subprocess.run(
        [str(cli), "package", "gen-sdk", str(LAUNCHER), "--language", "nodejs", "--local", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    generated = out / "nodejs"
    assert (generated / "mesh.ts").is_file()
    if os.environ.get("WGMESH_UPDATE_SNAPSHOT"):
        shutil.rmtree(SDK, ignore_errors=True)
        shutil.copytree(generated, SDK)
    assert differences(generated, SDK) == [], "the schema changed: review, then WGMESH_UPDATE_SNAPSHOT=1 regenerates sdks/wgmesh"
    assert "export class Mesh extends pulumi.ComponentResource" in (SDK / "mesh.ts").read_text()


class TypeScriptProject:
    """The example compiled into ``directory`` and its Pulumi.yaml (the plugin path made absolute) in a work dir, run
    by ``automation.js`` with the CLI in a private workspace."""

    def __init__(self, directory: Path) -> None:
        from testproviders import install_shims

        self.node = shutil.which("node")
        if self.node is None:
            pytest.skip("no node (Node.js 20+) on PATH: the TypeScript example needs it")
        if not (EXAMPLE / "node_modules" / "@pulumi" / "wgmesh" / "bin" / "index.js").is_file():
            pytest.skip("examples/typescript has no node_modules: `./dev setup` runs npm ci there")
        cli = pulumi_cli()
        self.cli = str(cli)
        self.build = directory / "build"
        # The compiled program finds its packages through this link, the example itself stays untouched.
        self.build.mkdir()
        (self.build / "node_modules").symlink_to(EXAMPLE / "node_modules", target_is_directory=True)
        started = time.monotonic()
        tsc = EXAMPLE / "node_modules" / "typescript" / "bin" / "tsc"
        compiled = subprocess.run(
            [self.node, str(tsc), "-p", str(EXAMPLE), "--outDir", str(self.build / "bin")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-2000:]
        print(f"tsc: {time.monotonic() - started:.1f} s")
        self.project = directory / "project"
        self.project.mkdir()
        settings = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
        settings["plugins"]["providers"][0]["path"] = str(REPO / "provider")
        (self.project / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        shims = directory / "shims"
        install_shims(shims, python=sys.executable)
        self.env = private_env(directory, cli, shims)

    def cli_run(self, *argv: str, stdin: str | None = None) -> None:
        result = subprocess.run(
            [self.cli, *argv, "--non-interactive"], cwd=self.project, env=self.env, input=stdin, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"pulumi {argv[:2]}: {result.stderr[-2000:]}"

    def configure(self, peers: list[dict[str, Any]], network: str, ssh_key: str | None = None) -> None:
        """The stack file (plain config) and, once, the SSH key as a secret (from stdin, never on a command line)."""
        path = self.project / f"Pulumi.{STACK}.yaml"
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
        config = dict(current.get("config") or {})
        config.update({f"{PROJECT}:network": network, f"{PROJECT}:peers": peers})
        path.write_text(yaml.safe_dump({**current, "config": config}, sort_keys=False))
        if ssh_key is not None:
            self.cli_run("config", "set", "--secret", "sshPrivateKey", "--stack", STACK, stdin=ssh_key)

    def run(self, operation: str, *flags: str, timeout: float = 900) -> tuple[dict[str, Any], str]:
        """``automation.js operation``: its JSON result (which must say ok) and everything it printed."""
        started = time.monotonic()
        result = subprocess.run(
            [self.node, str(self.build / "bin" / "automation.js"), operation, str(self.project), STACK, *flags],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        printed = result.stdout + result.stderr
        lines = result.stdout.strip().splitlines()
        outcome = json.loads(lines[-1]) if lines else {"ok": False, "error": result.stderr[-3000:]}
        assert result.returncode == 0 and outcome["ok"], f"{operation}: {outcome.get('error', '')[-4000:]}\n{result.stderr[-2000:]}"
        print(f"{operation} {' '.join(flags)}: {time.monotonic() - started:.1f} s, {outcome['changes']}")
        return outcome, printed


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_lab(tmp_path_factory.mktemp("typescript") / "state", 3) as shared:
        yield shared


@pytest.mark.lab
def test_a_typescript_program_deploys_verifies_and_destroys_a_mesh_of_lab_hosts(lab: Any, tmp_path: Path) -> None:
    mesh = LabMesh.of(lab)
    project = TypeScriptProject(tmp_path)
    project.cli_run("stack", "init", STACK)
    project.configure(mesh.peers[:2], mesh.network, mesh.ssh_key)

    up, _ = project.run("up")
    names = mesh.names(2)
    outputs = up["outputs"]
    assert sorted(outputs["publicKeys"]) == sorted(names)
    assert sorted(outputs["tunnelAddresses"]) == sorted(names)
    assert all(outputs["verification"][name]["ok"] is True for name in names), outputs["verification"]
    assert "configs" not in outputs

    again, _ = project.run("up", "--expect-no-changes")
    assert set(again["changes"]) == {"same"}, again["changes"]

    project.configure(mesh.peers, mesh.network)
    preview, printed = project.run("preview")
    by_op = assert_adding_a_peer_changes_only_its_share(preview["steps"], mesh.peers[2]["name"])
    print(f"preview adding {mesh.peers[2]['name']}: {by_op}")
    assert_no_secret(printed, mesh.ssh_key)

    project.configure(mesh.peers[:2], mesh.network)
    destroyed, _ = project.run("destroy")
    assert destroyed["changes"].get("delete", 0) > 0, destroyed["changes"]
    for name in names:
        assert lab.exec(name, ["test", "!", "-e", "/etc/wireguard/wg0.conf"], timeout=30) == 0
