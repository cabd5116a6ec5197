"""The ``wgmesh`` component package (``components/provider.py``): its schema, its args, its upstream workarounds.

The schema comes from the real CLI reading the launcher (``pulumi package get-schema``), compared with
``tests/snapshots/wgmesh.schema.json``; ``WGMESH_UPDATE_SNAPSHOT=1`` rewrites the snapshot. Each ``UPSTREAM``
workaround has a test here that fails once Pulumi fixes the snag: then remove the workaround.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pulumi
import pytest

from tests.mock_program import RecordingMocks
from tests.program_harness import REPO

LAUNCHER = REPO / "provider" / "pulumi-resource-wgmesh"
SNAPSHOT = REPO / "tests" / "snapshots" / "wgmesh.schema.json"


def pulumi_cli() -> str:
    from wgmesh.lab.engine import EngineMissing, find_cli

    try:
        return str(find_cli())
    except EngineMissing as exc:
        pytest.skip(str(exc))


def get_schema(tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PULUMI_HOME": str(home), "PULUMI_SKIP_UPDATE_CHECK": "true", "WGMESH_PYTHON": sys.executable}
    result = subprocess.run(
        [pulumi_cli(), "package", "get-schema", str(LAUNCHER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_the_schema_the_engine_reads_is_the_committed_snapshot(tmp_path: Path) -> None:
    schema = get_schema(tmp_path)
    schema.pop("version", None)  # the installed wgmesh's version
    if os.environ.get("WGMESH_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert schema == json.loads(SNAPSHOT.read_text()), "schema changed: review it, then WGMESH_UPDATE_SNAPSHOT=1"
    mesh = schema["resources"]["wgmesh:index:Mesh"]
    assert mesh["inputProperties"]["sshPrivateKey"]["secret"] is True
    assert mesh["properties"]["configs"]["secret"] is True
    assert set(schema["types"]["wgmesh:index:Peer"]["required"]) == {"name", "kind"}
    assert "aws:" not in json.dumps(schema)  # no AWS type: a consumer in any language passes plain values


def analyzed() -> Any:
    from pulumi.provider.experimental.component import ComponentProvider

    from wgmesh.components.provider import Mesh

    return ComponentProvider([Mesh], "wgmesh", None, "0.0.0")


def test_upstream_integers_still_arrive_as_floats() -> None:
    """UPSTREAM (wgmesh.components.provider.plain_numbers): when this fails, the SDK converts integers: drop the workaround."""
    provider = analyzed()
    mapped = provider.map_inputs(
        {"listenPort": 51820.0, "peers": [{"name": "a", "kind": "external", "sshPort": 22.0}]}, provider._component_defs["Mesh"]
    )
    assert isinstance(mapped["listen_port"], float) or isinstance(mapped["peers"][0]["ssh_port"], float)
    from wgmesh.components.provider import plain_numbers

    assert plain_numbers(mapped) == {"listen_port": 51820, "peers": [{"name": "a", "kind": "external", "ssh_port": 22}]}


def test_upstream_nested_output_keys_still_keep_their_python_spelling() -> None:
    """UPSTREAM (wgmesh.components.provider.camel_keys): when this fails, nested keys are renamed upstream: drop the workaround."""
    provider = analyzed()

    class Instance:
        verification: ClassVar[dict[str, Any]] = {"h1": {"ok": True, "handshake_age": 3}}

    state = provider.get_state(Instance(), provider._component_defs["Mesh"])
    assert state["verification"]["h1"] == {"ok": True, "handshake_age": 3}
    from wgmesh.components.provider import camel_keys

    assert camel_keys(Instance.verification) == {"h1": {"ok": True, "handshakeAge": 3}}


def test_upstream_the_analyzer_still_cannot_mark_an_input_secret() -> None:
    """UPSTREAM (wgmesh.components.provider.schema_secrets): when this fails, the analyzer marks secrets: drop the patch."""
    from pulumi.provider.experimental.schema import generate_schema

    provider = analyzed()
    schema = generate_schema("wgmesh", "0.0.0", None, provider._component_defs, provider._type_defs, []).to_json()
    assert "secret" not in schema["resources"]["wgmesh:index:Mesh"]["inputProperties"]["sshPrivateKey"]


def test_upstream_package_add_does_not_install_a_python_plugins_dependencies() -> None:
    """UPSTREAM (provider/requirements.txt, docs/packages.md): no test can run `pulumi package add` offline; this one
    keeps the documented workaround in place."""
    assert "wgmesh @ git+" in (REPO / "provider" / "requirements.txt").read_text()
    assert os.access(LAUNCHER, os.X_OK)


def run_component(args: dict[str, Any]) -> tuple[dict[str, Any], RecordingMocks]:
    """The package's Mesh under mocks, with ``args`` as the engine would map them; its outputs."""
    from wgmesh.components.provider import Mesh

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="wgmesh-yaml", stack="test", preview=False)
    results: dict[str, Any] = {}

    def program() -> pulumi.Output[Any]:
        mesh = Mesh("corp", args)  # type: ignore[arg-type]
        results["configs"] = mesh.configs
        return pulumi.Output.all(mesh.public_keys, mesh.endpoints, mesh.tunnel_addresses).apply(
            lambda values: results.update(public_keys=values[0], endpoints=values[1], tunnel_addresses=values[2])
        )

    pulumi.runtime.test(program)()
    return results, mocks


EXTERNALS = [
    {"name": "a", "kind": "external", "ssh_host": "198.51.100.1", "endpoint": "198.51.100.1:51820", "subnets": ["10.201.1.0/24"]},
    {"name": "b", "kind": "external", "ssh_host": "198.51.100.2", "endpoint": "198.51.100.2:51820.0", "ssh_port": 22.0},
]


def test_the_package_builds_the_mesh_from_plain_args_with_prefixed_children() -> None:
    peers = [dict(peer) for peer in EXTERNALS]
    peers[1]["endpoint"] = "198.51.100.2:51820"
    results, mocks = run_component({"peers": peers, "network": "10.255.0.0/24", "ssh_private_key": "key", "listen_port": 51820.0})
    assert set(results["public_keys"]) == {"a", "b"}
    assert results["endpoints"] == {"a": "198.51.100.1:51820", "b": "198.51.100.2:51820"}
    assert {
        name: [address.startswith("10.255.0.") for address in addresses] for name, addresses in results["tunnel_addresses"].items()
    } == {
        "a": [True],
        "b": [True],
    }
    assert results["configs"] is None  # exportConfigs not asked
    names = {resource.registered_name for resource in mocks.resources}
    assert {"corp-a", "corp-a-key", "corp-a-install", "corp-b-verify", "corp-configs"} <= names


def test_errors_name_the_consumers_camel_case_fields() -> None:
    from wgmesh.components.provider import Mesh

    pulumi.runtime.set_mocks(RecordingMocks(), project="wgmesh-yaml", stack="test", preview=False)
    bad = [{"name": "a", "kind": "aws", "region": "eu-west-1", "vpc_cidr": "10.0.0.0/33", "key_name": "ops"}, dict(EXTERNALS[0], name="c")]
    with pytest.raises(Exception) as caught:
        pulumi.runtime.test(lambda: Mesh("corp", {"peers": bad, "admin_cidrs": ["203.0.113.7/32"]}))()  # type: ignore[arg-type]
    message = str(caught.value)
    assert "peers[0].vpcCidr" in message and "vpc_cidr" not in message and "mesh." not in message, message


@pytest.mark.skipif(shutil.which("sh") is None, reason="the launcher is a shell script")
def test_the_launcher_runs_the_provider_module() -> None:
    text = LAUNCHER.read_text()
    assert "-m wgmesh.components.provider" in text and "WGMESH_PYTHON" in text
