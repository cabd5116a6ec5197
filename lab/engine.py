"""The real Pulumi engine, driven through the Automation API: ``pulumi up`` of the wgmesh program in a private workspace.

Every deploy the lab makes (``wgmesh demo``, ``wgmesh lab up --deploy``, the end-to-end tests, the benchmarks) goes
through here, so what is proven is what users run: the engine's own diffing, ordering, replacements, deletes and
state. The program is :func:`wgmesh.components.program.program` as an *inline* program: the SDK serves it to the engine
itself, so no Python language host is needed (the Go module proxy serves the CLI but not that host).

A workspace is private and disposable: a ``file://`` backend and ``PULUMI_HOME`` inside its own directory (the
user's Pulumi settings, credentials and plugins stay untouched), the passphrase secrets provider with a random
passphrase kept beside it (mode 0600), automatic plugin downloads off, no update checks.

Providers: the program needs pulumi-command and pulumi-random. Where the official plugins are installed (in the
user's ``~/.pulumi/plugins`` or ``$PULUMI_HOME/plugins``, or on ``PATH``) the engine runs them; otherwise it runs
this repository's test providers (:mod:`testproviders`), which implement the same resources with the official
semantics. :attr:`Engine.providers` says which ran, and every summary prints it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROJECT = "wgmesh"
PULUMI_VERSION = "v3.274.1"
PROVIDERS = ("command", "random")
PASSPHRASE_FILE = "passphrase"
# Where `./dev engine` builds the CLI (see ./dev); a `pulumi` on PATH wins.
ENGINE_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wgmesh" / "engine" / PULUMI_VERSION / "bin"


class EngineMissing(RuntimeError):
    """No Pulumi CLI here: the message says how to get one."""


@dataclass(frozen=True)
class Engine:
    """A Pulumi CLI and the provider plugins it will run: ``providers`` maps each to ``official <path>`` or ``test``."""

    cli: Path
    version: str
    plugin_dirs: tuple[Path, ...]
    providers: dict[str, str]

    def describe(self) -> str:
        kinds = ", ".join(f"{name}: {how}" for name, how in self.providers.items())
        return f"Pulumi {self.version} ({self.cli}); providers {kinds}"


def find_cli() -> Path:
    """``$WGMESH_PULUMI``, else ``pulumi`` on PATH, else the one ``./dev engine`` built; else :class:`EngineMissing`."""
    for candidate in (os.environ.get("WGMESH_PULUMI"), shutil.which("pulumi"), str(ENGINE_CACHE / "pulumi")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise EngineMissing("no Pulumi CLI found: run `./dev engine` (builds it from the Go module proxy) or install Pulumi")


def _official_plugin(name: str) -> Path | None:
    """The official ``pulumi-resource-<name>`` installed for the user (plugin cache or PATH), if any."""
    homes = [Path(os.environ["PULUMI_HOME"])] if os.environ.get("PULUMI_HOME") else []
    homes.append(Path.home() / ".pulumi")
    for home in homes:
        found = sorted((home / "plugins").glob(f"resource-{name}-v*/pulumi-resource-{name}"))
        if found:
            return found[-1]
    on_path = shutil.which(f"pulumi-resource-{name}")
    return Path(on_path) if on_path else None


def _test_providers(missing: list[str]) -> Callable[..., list[Path]]:
    """The checkout's test providers (testproviders/, test equipment: not installed with wgmesh), imported only when an
    official plugin is absent; installed from a wheel there are none, and the message says what to install instead."""
    if not (REPO / "testproviders" / "__init__.py").is_file():
        plugins = ", ".join(f"pulumi-resource-{name}" for name in missing)
        raise EngineMissing(
            f"no {plugins} found and the test providers come only with a wgmesh checkout: "
            + "; ".join(f"pulumi plugin install resource {name}" for name in missing)
        )
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from testproviders import install_shims

    return install_shims


def find_engine(shim_dir: Path) -> Engine:
    """The CLI and, for each provider, the official plugin or a test provider shim written into ``shim_dir``."""
    cli = find_cli()
    version = subprocess.run([str(cli), "version"], capture_output=True, text=True, timeout=60, check=False).stdout.strip()
    dirs: list[Path] = []
    providers: dict[str, str] = {}
    missing = []
    for name in PROVIDERS:
        official = None if os.environ.get("WGMESH_TEST_PROVIDERS") else _official_plugin(name)
        if official is not None:
            dirs.append(official.parent)
            providers[name] = f"official ({official})"
        else:
            missing.append(name)
    if missing:
        install_shims = _test_providers(missing)
        shim_dir.mkdir(parents=True, exist_ok=True)
        install_shims(shim_dir, python=sys.executable)
        dirs.insert(0, shim_dir)
        providers.update({name: "test (testproviders)" for name in missing})
    return Engine(cli=cli, version=version, plugin_dirs=tuple(dict.fromkeys(dirs)), providers=providers)


@dataclass
class Operation:
    """One engine operation: what it did (or, for a preview, would do) to each resource by name, Pulumi's own
    counts (``{"create": 21}``), the stack's outputs, its output text and errors."""

    ok: bool
    seconds: float
    actions: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    stdout: str = ""
    error: str | None = None


# The program's Mesh ("wgmesh") prefixes its per-peer resources with its name ("wgmesh-h1-install"): operations name
# them by the peer's own names ("h1-install"), as the lab's stack config does; the mesh's own children keep theirs.
MESH_PREFIX = "wgmesh-"
MESH_CHILDREN = frozenset({"peers", "configs", "installed", "psk-secret"})


def _name_of(urn: str) -> str:
    name = urn.rsplit("::", 1)[-1]
    if name.startswith(MESH_PREFIX) and name[len(MESH_PREFIX) :] not in MESH_CHILDREN:
        return name[len(MESH_PREFIX) :]
    return name


class Workspace:
    """One stack of the wgmesh program in a private directory (see the module doc); reusable across operations."""

    def __init__(
        self,
        directory: Path,
        *,
        stack: str = "lab",
        program: Callable[[], None] | None = None,
    ) -> None:
        from pulumi import automation as auto

        if program is None:
            from wgmesh.components.program import program as wgmesh_program

            program = wgmesh_program
        self.directory = Path(directory).absolute()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.engine = find_engine(self.directory / "plugins-bin")
        passphrase_path = self.directory / PASSPHRASE_FILE
        if not passphrase_path.exists():
            fd = os.open(passphrase_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        backend = self.directory / "backend"
        backend.mkdir(mode=0o700, exist_ok=True)
        home = self.directory / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        self.env = {
            "PULUMI_HOME": str(home),
            "PULUMI_CONFIG_PASSPHRASE": passphrase_path.read_text().strip(),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "PATH": os.pathsep.join([*(str(path) for path in self.engine.plugin_dirs), str(self.engine.cli.parent), os.environ["PATH"]]),
        }
        project = auto.ProjectSettings(name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=backend.as_uri()))
        work_dir = self.directory / "project"
        work_dir.mkdir(exist_ok=True)
        self._auto = auto
        self.stack_name = stack
        self.stack = auto.create_or_select_stack(
            stack_name=stack,
            project_name=PROJECT,
            program=program,
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(work_dir),
                pulumi_home=str(home),
                env_vars=self.env,
                secrets_provider="passphrase",
                project_settings=project,
                pulumi_command=auto.PulumiCommand(root=str(self.engine.cli.parent.parent), skip_version_check=True)
                if self.engine.cli.parent.name == "bin"
                else None,
            ),
        )

    # ------------------------------------------------------------------------------------------------ config

    def set_config(self, config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> None:
        """Replace the stack's whole config with ``config`` (as in ``Pulumi.<stack>.yaml``) and ``secrets``."""
        auto = self._auto
        values = {key: auto.ConfigValue(value if isinstance(value, str) else json.dumps(value)) for key, value in config.items()}
        values.update({key: auto.ConfigValue(value, secret=True) for key, value in (secrets or {}).items()})
        current = self.stack.get_all_config()
        stale = [key for key in current if key not in values]
        if stale:
            self.stack.remove_all_config(stale)
        # Objects go in as JSON with --path off: set_all_config passes them as one value each.
        self.stack.set_all_config(values)

    # ------------------------------------------------------------------------------------------------ operations

    def _run(
        self, call: Callable[..., Any], *, planned: bool = False, on_event: Callable[[Any], None] | None = None, **kwargs: Any
    ) -> Operation:
        """Run ``call`` (``up``, ``preview``, ``destroy``), recording per resource what it did: from the engine's
        outputs events, or with ``planned`` (a preview) from its pre-events, which say what it would do."""
        auto = self._auto
        lines: list[str] = []
        actions: dict[str, list[str]] = {}
        failures: dict[str, str] = {}

        def record(event: Any) -> None:
            if on_event is not None:
                on_event(event)
            step = event.resource_pre_event if planned else event.res_outputs_event
            if step is not None and step.metadata is not None and not step.metadata.type.startswith("pulumi:"):
                op = str(getattr(step.metadata.op, "value", step.metadata.op))
                actions.setdefault(op, []).append(_name_of(step.metadata.urn))
            diag = event.diagnostic_event
            if diag is not None and diag.severity == "error" and diag.urn:
                failures[_name_of(diag.urn)] = (failures.get(_name_of(diag.urn), "") + diag.message).strip()
            failed = event.res_op_failed_event
            if failed is not None and failed.metadata is not None:
                failures.setdefault(_name_of(failed.metadata.urn), "failed")

        started = time.monotonic()
        try:
            result = call(on_output=lines.append, on_event=record, color="never", **kwargs)
        except auto.CommandError as exc:
            result, error = None, str(exc)
        else:
            error = None
        for names in actions.values():
            names.sort()  # the engine reports resources as they finish
        outputs = getattr(result, "outputs", None) or {}
        counts = (
            result.change_summary if planned and result is not None else getattr(getattr(result, "summary", None), "resource_changes", None)
        )
        return Operation(
            ok=error is None,
            seconds=time.monotonic() - started,
            actions=actions,
            failures=failures,
            outputs={name: value.value for name, value in outputs.items()},
            changes={str(getattr(op, "value", op)): count for op, count in (counts or {}).items()},
            stdout="\n".join(lines),
            error=error,
        )

    def up(self, **kwargs: Any) -> Operation:
        """``pulumi up`` (``expect_no_changes``, ``replace`` and the other Automation API options pass through;
        ``on_event`` sees every engine event as it comes)."""
        return self._run(self.stack.up, **kwargs)

    def preview(self, **kwargs: Any) -> Operation:
        """``pulumi preview``: :attr:`Operation.actions` holds what each resource would undergo (``same`` too)."""
        return self._run(self.stack.preview, planned=True, **kwargs)

    def destroy(self, **kwargs: Any) -> Operation:
        """``pulumi destroy``: every resource's delete, in dependency order."""
        return self._run(self.stack.destroy, **kwargs)

    def export(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """``pulumi stack export``: the deployment as the state file holds it (secrets as ciphertext), or with
        ``show_secrets`` every secret decrypted (what a holder of the passphrase sees)."""
        if not show_secrets:
            return dict(self.stack.export_stack().deployment or {})
        result = subprocess.run(
            [str(self.engine.cli), "stack", "export", "--show-secrets", "--stack", self.stack_name, "--non-interactive"],
            cwd=self.directory / "project",
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return dict(json.loads(result.stdout).get("deployment") or {})

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs as the last update left them (secrets decrypted)."""
        return {name: value.value for name, value in self.stack.outputs().items()}

    def state_files(self) -> list[Path]:
        """Every file the backend keeps for this stack: the checkpoint, its backups and history."""
        return sorted(path for path in (self.directory / "backend").rglob("*") if path.is_file())

    def cancel(self) -> None:
        """``pulumi cancel``: release the lock a killed ``up`` left on the stack (the next ``up`` then converges)."""
        self.stack.cancel()

    def _resource(self, name: str) -> dict[str, Any]:
        """The state's record of the resource named ``name`` (as :attr:`Operation.actions` names it)."""
        for resource in self.export().get("resources", []):
            if _name_of(resource.get("urn", "")) == name:
                return dict(resource)
        raise KeyError(name)

    def resource_outputs(self, name: str) -> dict[str, Any]:
        """The recorded outputs of the resource named ``name`` (secrets as their ciphertext envelope)."""
        return dict(self._resource(name).get("outputs") or {})

    def urn(self, name: str) -> str:
        """The URN of the resource named ``name`` (for ``up(replace=[...])``)."""
        return str(self._resource(name)["urn"])


def summary_text(operation: Operation) -> str:
    """Pulumi's own closing summary (``Resources: ... Duration: ...``) of an operation's output."""
    lines = operation.stdout.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Resources:"):
            return "\n".join(lines[index:]).strip()
    return (operation.error or "").strip()[-2000:]
