"""What the tests of the component package's example programs (YAML, TypeScript) share: the lab's mesh as the
package's camelCase fields, a private Pulumi workspace, and what a preview adding a peer may change."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wgmesh.components.provider import camel  # the package's own spelling of its fields

# The replacement a preview adding a peer may show: the state-only barrier holding the configs, never a host's resource.
CONFIGS_BARRIER = "mesh-configs"
# What else may update: the others' installs (their config names the new peer), the checks and barriers over all.
SHARED = {"mesh", "mesh-peers", CONFIGS_BARRIER, "mesh-installed"}


@dataclass(frozen=True)
class LabMesh:
    """The lab's stack config as the package takes it: peers with camelCase fields, the network, the SSH key."""

    peers: list[dict[str, Any]]
    network: str
    ssh_key: str

    @classmethod
    def of(cls, lab: Any) -> LabMesh:
        config = yaml.safe_load(lab.stack_path.read_text())["config"]
        description = config["wgmesh:mesh"]
        peers = [{camel(key): value for key, value in peer.items()} for peer in description["peers"]]
        return cls(peers, description["network"], Path(config["wgmesh:sshPrivateKeyPath"]).read_text())

    def names(self, count: int) -> list[str]:
        return [peer["name"] for peer in self.peers[:count]]


def private_env(directory: Path, cli: Path, *extra_path: Path) -> dict[str, str]:
    """The environment of a private workspace in ``directory``: its own PULUMI_HOME and backend, no downloads."""
    (directory / "backend").mkdir(mode=0o700)
    (directory / "home").mkdir(mode=0o700)
    return {
        **os.environ,
        "PULUMI_HOME": str(directory / "home"),
        "PULUMI_BACKEND_URL": (directory / "backend").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "WGMESH_PYTHON": sys.executable,
        "PATH": os.pathsep.join([*(str(path) for path in extra_path), str(cli.parent), os.environ["PATH"]]),
    }


def assert_adding_a_peer_changes_only_its_share(steps: list[dict[str, Any]], new: str) -> dict[str, list[str]]:
    """A preview's steps when peer ``new`` joins: it creates only that peer's resources, deletes nothing, replaces at
    most the configs barrier, and updates only installs, checks and barriers. Returns the names by operation."""
    by_op: dict[str, list[str]] = {}
    for step in steps:
        by_op.setdefault(step["op"], []).append(step["urn"].rsplit("::", 1)[-1])
    assert by_op.get("create") and all(name.startswith(f"mesh-{new}") for name in by_op["create"]), by_op
    assert not by_op.get("delete"), by_op
    for op in ("replace", "create-replacement", "delete-replaced"):
        assert by_op.get(op, []) in ([], [CONFIGS_BARRIER]), by_op
    changed = by_op.get("update", [])
    assert all(name.endswith(("-install", "-verify")) or name in SHARED for name in changed), changed
    return by_op


def assert_no_secret(printed: str, ssh_key: str) -> None:
    """Nothing printed holds the SSH key (its first line of key material) or a rendered config's private key."""
    for secret in (ssh_key.strip().splitlines()[1], "PrivateKey ="):
        assert secret not in printed
