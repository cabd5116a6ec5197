"""Run the real program under Pulumi's mocks: the AWS resource graph, which no machine here can create.

:func:`run_program` sets the stack config exactly as ``Pulumi.<stack>.yaml`` would, executes ``__main__.py`` with
``pulumi.runtime.set_mocks``, waits for every registration, and returns the registered resources (type, name,
inputs, provider, parent) and the stack's exports with their secretness. :class:`RecordingMocks` answers like the
clouds would, deterministically: an Elastic IP gets a documentation address, ``RandomPassword`` a text derived from
its name and keepers (so keys are stable across runs and change when ``key_version`` does), ``get_ami`` an image
id. Mocks choose resource IDs, so nothing about the state is proven here: the engine tests (``tests/test_engine.py``)
do that. Every deploy onto real hosts goes through the real engine (:mod:`wgmesh.lab.engine`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import runpy
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
from pulumi.runtime import mocks as pulumi_mocks

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "__main__.py"


# How the Pulumi RPC layer marks a secret value: mocks receive secret inputs wrapped in this sentinel.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def is_secret_value(value: Any) -> bool:
    """Whether a mock input arrived as a secret."""
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def unwrap_secrets(value: Any) -> Any:
    """The plain value of a mock input, secrets unwrapped at any depth."""
    if is_secret_value(value):
        return unwrap_secrets(value["value"])
    if isinstance(value, dict):
        return {key: unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(item) for item in value]
    return value


# The stack program's Mesh is named "wgmesh" and prefixes every per-peer resource with it ("wgmesh-zhy-sg"): the tests
# name them by the peer's own names, as before; tests/test_urn_stability.py checks the names as registered.
MESH_PREFIX = "wgmesh-"
MESH_CHILDREN = frozenset({"peers", "configs", "installed", "psk-secret"})


def short_name(name: str) -> str:
    """A resource's name without the stack mesh's prefix (its own children, ``wgmesh-configs``, keep theirs)."""
    if name.startswith(MESH_PREFIX) and name[len(MESH_PREFIX) :] not in MESH_CHILDREN:
        return name[len(MESH_PREFIX) :]
    return name


@dataclass
class Registered:
    """One resource as the program registered it."""

    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None
    outputs: dict[str, Any] = field(default_factory=dict)
    registered_name: str = ""  # as registered: the program's Mesh prefixes its peers' resources with "wgmesh-"

    @property
    def plain(self) -> dict[str, Any]:
        """The inputs with secrets unwrapped."""
        return unwrap_secrets(self.inputs)

    @property
    def provider_name(self) -> str | None:
        """The provider resource's name (``aws-cn-north-1``) from its reference ``urn::id``."""
        if not self.provider:
            return None
        urn = self.provider.split("::id", 1)[0] if "::id" in self.provider else self.provider.rsplit("::", 1)[0]
        return urn.rsplit("::", 1)[-1]


def fake_public_ip(name: str) -> str:
    """A stable documentation address (203.0.113.0/24) for an Elastic IP resource name."""
    return f"203.0.113.{10 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 240}"


def fake_host_key(seed: str) -> str:
    """A well-formed ``ssh-ed25519`` public key line derived from ``seed`` (no private half exists)."""
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + hashlib.sha256(seed.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every resource and return plausible, deterministic cloud outputs."""

    def __init__(self, salt: str = "") -> None:
        self.salt = salt
        self.resources: list[Registered] = []
        self.calls: list[pulumi_mocks.MockCallArgs] = []
        self.regions: dict[str, str] = {}  # aws provider name -> region, for getPartition
        self._lock = threading.Lock()

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        registered_name, args.name = args.name, short_name(args.name)  # ids and fake values as before the prefix
        outputs = dict(args.inputs)
        if args.typ == "aws:ec2/eip:Eip":
            outputs["publicIp"] = fake_public_ip(args.name)
        elif args.typ == "random:index/randomPassword:RandomPassword":
            seed = hashlib.sha256(f"{self.salt}:{args.name}:{json.dumps(args.inputs.get('keepers'), sort_keys=True)}".encode()).hexdigest()
            outputs["result"] = (seed * 2)[: int(args.inputs.get("length", 64))]
        elif args.typ == "aws:ec2/keyPair:KeyPair":
            outputs["keyName"] = args.name
        elif args.typ == "pulumi:providers:aws":
            with self._lock:
                self.regions[args.name] = str(args.inputs.get("region", ""))
        elif args.typ == "command:local:Command":
            # As ssh-keyscan would print a host's key: stable for a name, new when the triggers (an instance id) change.
            outputs["stdout"] = fake_host_key(f"{args.name}:{json.dumps(args.inputs.get('triggers'), sort_keys=True)}")
        outputs.update(self.extra_outputs(args))
        with self._lock:
            self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider, outputs, registered_name))
        return f"{args.name}-id", outputs

    def extra_outputs(self, args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        """Hook for subclasses: outputs beyond the inputs (a command's stdout, ...)."""
        return {}

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        with self._lock:
            self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0ubuntu2404", "architecture": "x86_64", "name": "ubuntu-noble-24.04"}
        if args.token == "aws:index/getPartition:getPartition":
            provider = Registered("", "", {}, args.provider).provider_name
            china = self.regions.get(provider or "", "").startswith("cn-")
            return {"partition": "aws-cn" if china else "aws", "dnsSuffix": "amazonaws.com.cn" if china else "amazonaws.com"}
        return {}

    def of_type(self, typ: str) -> list[Registered]:
        return [resource for resource in self.resources if resource.typ == typ]

    def named(self, name: str) -> Registered:
        matches = [resource for resource in self.resources if resource.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


FAKE_SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nwgmesh-test-key-not-real\n-----END OPENSSH PRIVATE KEY-----\n"


@dataclass
class ProgramRun:
    """A finished run: the mocks (with every resource), the exports' values, and which exports are secret."""

    mocks: RecordingMocks
    exports: dict[str, Any]
    secret_exports: dict[str, bool]


def run_program(
    config: Mapping[str, Any],
    *,
    stack: str = "zhy",
    mocks: RecordingMocks | None = None,
    secrets: Mapping[str, str] | None = None,
    preview: bool = False,
    program: Path = PROGRAM,
    project: str = "wgmesh",
) -> ProgramRun:
    """Run ``__main__.py`` for a stack whose config is ``config`` (as in ``Pulumi.<stack>.yaml``).

    ``secrets`` are secret config values (``pulumi config set --secret``); by default a fake ``wgmesh:sshPrivateKey``.
    Exceptions the program or the mocks raise (a ``pulumi.RunError`` for bad config) propagate.
    """
    mocks = mocks or RecordingMocks()
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    # The mock tests never connect anywhere: a fake key stands in for the secret sshPrivateKey unless `secrets` says
    # otherwise (`secrets={}`: no secret at all).
    secret_values = {"wgmesh:sshPrivateKey": FAKE_SSH_KEY} if secrets is None else dict(secrets)
    values.update(secret_values)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(values, secret_keys=list(secret_values))
    exports: dict[str, Any] = {}
    resolved: dict[str, Any] = {}
    secret_flags: dict[str, bool] = {}

    def record(name: str, value: Any) -> None:
        exports[name] = value

    def run() -> pulumi.Output[Any]:
        # As Pulumi's Python host does: the program's directory first on sys.path, so its own modules import.
        directory = str(Path(program).resolve().parent)
        added = directory not in sys.path
        if added:
            sys.path.insert(0, directory)
        try:
            with mock.patch.object(pulumi, "export", record):
                runpy.run_path(str(program), run_name="__main__")
        finally:
            if added and directory in sys.path:
                sys.path.remove(directory)

        async def secretness() -> dict[str, bool]:
            return {name: await value.is_secret() if isinstance(value, pulumi.Output) else False for name, value in exports.items()}

        def keep(values: list[Any]) -> None:
            resolved.update(values[0])
            secret_flags.update(values[1])

        return pulumi.Output.all(pulumi.Output.from_input(exports).apply(lambda v: v), pulumi.Output.from_input(secretness())).apply(keep)

    pulumi.runtime.test(run)()
    return ProgramRun(mocks=mocks, exports=resolved, secret_exports=secret_flags)
