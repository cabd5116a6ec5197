"""A Pulumi mocks monitor that really runs ``command:remote:Command`` over SSH: ``pulumi up`` without the Pulumi CLI.

Lives in :mod:`lab` (not ``tests/``) because product commands (``wgmesh demo``, ``bench/lab.py``) use it;
``tests/lab_executor.py`` re-exports it for the tests.

There is no Pulumi engine, no provider plugin and no cloud here, so the end-to-end tests run the program under
:func:`pulumi.runtime.set_mocks` with :class:`LabExecutor` as the mocks. For every ``remote.Command`` it does what
pulumi-command 1.x does, against the lab's hosts (or any SSH host):

* the script goes to the system ``ssh`` client as ONE argv element, which sshd hands verbatim to the login shell
  (``bash -c <script>``): exactly what pulumi-command's ``session.Run(cmd)`` does. The ``stdin`` input is ssh's
  stdin; the private key is written to a 0600 file in a private temporary directory, never on a command line;
* ``environment`` (and, unless ``addPreviousOutputInEnv`` is false, ``PULUMI_COMMAND_STDOUT``/``_STDERR`` of the
  previous run on update and delete) are sent with ssh's ``SetEnv``, as pulumi-command's ``session.Setenv`` does:
  an sshd without a matching ``AcceptEnv`` (the lab's, most clouds') drops them, so a program relying on them
  fails here the way it would fail for real;
* dial failures (ssh exit 255 with ssh's own error text) are retried ``dialErrorLimit`` times (default 10), each
  connect bounded by ``perDialTimeout`` (default 15 s);
* ``hostKey`` (an ``authorized_keys``-style ``type blob`` line) pins the server's key as pulumi-command's
  ``ssh.FixedHostKey`` does: only that key type is offered (``HostKeyAlgorithms``) and any other key ends the
  connection during the key exchange, before authentication, so nothing (no key, no stdin) reaches that host; like
  any dial error it is retried, then fails with pulumi-command's ``ssh: handshake failed: ssh: host key mismatch``.
  Without ``hostKey`` any key is accepted (``ssh.InsecureIgnoreHostKey``);
* stdout/stderr become the ``stdout``/``stderr`` outputs with one trailing newline trimmed; a non-zero exit fails
  the registration with pulumi-command's message shape (``Process exited with status N: running "...": output``).

Lifecycle, kept in a JSON state file (mode 0600) keyed by resource name between runs, like Pulumi's state:

* first sight of a name: create (the ``create`` script, if any);
* ``triggers`` changed: replace, delete-before-replace (the old ``delete``, then ``create``);
* any other input changed (stdin, create, update, delete, connection, environment, logging): update (the
  ``update`` script, or ``create`` when there is none), as pulumi-command's default diff does;
* unchanged: no-op, the stored outputs are returned;
* names in the state that a run did not register: :meth:`LabExecutor.finish` runs their stored ``delete``
  (newest first), like the deletes at the end of ``pulumi up``. Call it only after a successful run.

The state keeps a SHA-256 of ``stdin`` (the secret config) rather than the text, and the connection (with the
private key, as Pulumi's state does) because a dropped resource's delete needs it. One difference from
pulumi-command: a delete gets no stdin (the program's uninstall scripts read none).

``command:local:Command`` (the program learns host keys with one) runs the same way on this machine, through
``/bin/sh -c`` (or its ``interpreter``) with ``environment`` added to this process's, as pulumi-command's local
commands do, with the same lifecycle and state.

Every other resource type is answered by :class:`lab.program.RecordingMocks` (outputs = inputs plus
plausible cloud values, id ``<name>-id``), so the real ``__main__.py`` runs unchanged with
``run_program(config, stack="lab", mocks=LabExecutor(...), secrets={})`` (no fake ``sshPrivateKey``: the lab stack
names its key by ``wgmesh:sshPrivateKeyPath``). Registrations arrive on Pulumi's thread pool, in parallel (widened
to ``parallel`` threads, as ``pulumi up --parallel`` would): the state is guarded by a lock and every command runs
outside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.sync_await import _ensure_event_loop

from lab.program import RecordingMocks, Registered, unwrap_secrets
from mesh.sshkeys import parse_ssh_key

COMMAND_TYPE = "command:remote:Command"
LOCAL_COMMAND_TYPE = "command:local:Command"
COMMAND_TYPES = (COMMAND_TYPE, LOCAL_COMMAND_TYPE)
HOST_KEY_MISMATCH = "Host key verification failed"
STATE_VERSION = 1
SECRET_MODE = 0o600
DEFAULT_DIAL_ERROR_LIMIT = 10
DEFAULT_PER_DIAL_TIMEOUT = 15
MAX_DIAL_ATTEMPTS = 100
# What ssh itself prints when it cannot get a session (as opposed to the remote command failing with 255).
DIAL_ERROR = re.compile(
    r"^(ssh: |kex_exchange_identification|Connection (closed|reset|timed out)|banner exchange|.*Permission denied \(|"
    r"Received disconnect|Bad owner or permissions|Host key verification failed)",
    re.MULTILINE,
)
log = logging.getLogger("wgmesh.lab_executor")


_POOLS: dict[int, ThreadPoolExecutor] = {}


def widen_thread_pool(workers: int) -> None:
    """Let up to ``workers`` registrations (so SSH commands) run at once, like ``pulumi up --parallel``.

    Pulumi's Python runtime calls the (mock) monitor through the event loop's default executor, which has only
    min(32, CPUs + 4) threads: on a small machine a 30-host mesh would install six hosts at a time.
    """
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-executor")
    _ensure_event_loop().set_default_executor(pool)


class CommandFailed(Exception):
    """A remote command exited non-zero (or could not be run): the resource's registration fails with this."""


@dataclass(frozen=True)
class SshResult:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float


def _trim(text: str) -> str:
    return text.removesuffix("\n")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    try:
        os.fchmod(fd, SECRET_MODE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _setenv_lines(env: Mapping[str, str]) -> list[str]:
    """ssh_config ``SetEnv`` lines; a value ssh_config cannot carry (newline, double quote) is left out and logged."""
    lines = []
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\n" in value or '"' in value:
            log.debug("not sending environment variable %s: ssh_config SetEnv cannot carry it", key)
            continue
        lines.append(f'SetEnv "{key}={value}"')
    return lines


def run_ssh(
    connection: Mapping[str, Any],
    script: str,
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 900.0,
    dial_pause: float = 1.0,
) -> SshResult:
    """Run ``script`` on the connection's host with the system ssh client, as pulumi-command would (see module doc)."""
    host = connection.get("host")
    if not host:
        raise CommandFailed("connection.host is required")
    port = int(connection.get("port") or 22)
    user = connection.get("user") or "root"
    private_key = connection.get("privateKey")
    if connection.get("password") or connection.get("privateKeyPassword") or connection.get("proxy"):
        raise CommandFailed("the lab executor supports key authentication only (no password, key passphrase or proxy)")
    per_dial = int(connection.get("perDialTimeout") or DEFAULT_PER_DIAL_TIMEOUT)
    limit = connection.get("dialErrorLimit")
    attempts = MAX_DIAL_ATTEMPTS if limit is not None and int(limit) < 0 else max(1, int(limit or DEFAULT_DIAL_ERROR_LIMIT))
    attempts = min(attempts, MAX_DIAL_ATTEMPTS)
    with tempfile.TemporaryDirectory(prefix="wgmesh-ssh-") as tmp:
        options = [
            "IdentitiesOnly yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"ConnectTimeout {per_dial}",
            "ServerAliveInterval 15",
            "ServerAliveCountMax 4",
            "ControlMaster no",
            "ControlPath none",
            "ForwardAgent no",
            "RequestTTY no",
            "LogLevel ERROR",
        ]
        argv = ["ssh", "-F", str(Path(tmp) / "config")]
        if private_key:
            key_path = Path(tmp) / "key"
            _write_private(key_path, private_key if private_key.endswith("\n") else private_key + "\n")
            argv += ["-i", str(key_path)]
            options.append("IdentityAgent none")
        elif connection.get("agentSocketPath"):
            options.append(f"IdentityAgent {connection['agentSocketPath']}")
        else:
            raise CommandFailed("connection has no privateKey (and no agentSocketPath)")
        options += _host_key_options(connection.get("hostKey"), host, port, Path(tmp) / "known_hosts")
        _write_private(Path(tmp) / "config", "\n".join(["Host *", *(f"  {line}" for line in options + _setenv_lines(env or {}))]) + "\n")
        argv += ["-p", str(port), "-o", "BatchMode=yes"]
        argv += [f"{user}@{host}", script]
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                result = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise CommandFailed(f"ssh {user}@{host}:{port}: no result within {timeout:.0f}s") from exc
            dial_failed = result.returncode == 255 and not result.stdout and DIAL_ERROR.search(result.stderr) is not None
            if not dial_failed or attempt == attempts:
                break
            log.info("ssh %s@%s:%s: dial attempt %d/%d failed: %s", user, host, port, attempt, attempts, result.stderr.strip())
            time.sleep(dial_pause)
        return SshResult(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def _host_key_options(host_key: str | None, host: str, port: int, known_hosts: Path) -> list[str]:
    """ssh_config lines that accept exactly ``host_key`` (or, without one, any key: pulumi-command's default)."""
    if not host_key:
        return ["StrictHostKeyChecking no", "UserKnownHostsFile /dev/null", "GlobalKnownHostsFile /dev/null"]
    try:
        kind, blob = parse_ssh_key(host_key)
    except ValueError as exc:
        raise CommandFailed(f"failed to parse host key: {exc}") from None
    pattern = host if port == 22 else f"[{host}]:{port}"
    _write_private(known_hosts, f"{pattern} {kind} {blob}\n")
    return [
        "StrictHostKeyChecking yes",
        f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null",
        f"HostKeyAlgorithms {kind}",
        "CheckHostIP no",
        "UpdateHostKeys no",
    ]


def run_local(script: str, *, interpreter: list[str] | None, env: Mapping[str, str], directory: str | None, timeout: float) -> SshResult:
    """Run ``script`` on this machine as pulumi-command's ``local.Command`` does (``/bin/sh -c`` by default)."""
    started = time.monotonic()
    argv = [*(interpreter or ["/bin/sh", "-c"]), script]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}, cwd=directory)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"local command: no result within {timeout:.0f}s") from exc
    return SshResult(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


class LabExecutor(RecordingMocks):
    """Mocks that run ``remote.Command`` for real over SSH, with create/update/no-op/delete kept in ``state_path``."""

    def __init__(
        self,
        state_path: Path | str,
        *,
        salt: str = "",
        command_timeout: float = 900.0,
        dial_pause: float = 1.0,
        parallel: int | None = 64,
    ) -> None:
        super().__init__(salt)
        if parallel:
            widen_thread_pool(parallel)
        self.state_path = Path(state_path)
        self.command_timeout = command_timeout
        self.dial_pause = dial_pause
        self._state_lock = threading.Lock()
        self._state = self._load()
        self._declared: set[str] = set()
        # (resource name, "create" | "update" | "replace" | "noop" | "delete" | "failed"), in completion order.
        self.actions: list[tuple[str, str]] = []
        self.failures: dict[str, str] = {}

    # ----------------------------------------------------------------------------------------------- state file
    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": STATE_VERSION, "seq": 0, "resources": {}}
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path}: not a lab executor state of version {STATE_VERSION}")
        return data

    def _save_locked(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(f".{self.state_path.name}.{os.getpid()}.tmp")
        _write_private(tmp, json.dumps(self._state, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.state_path)

    def recorded(self) -> dict[str, dict[str, Any]]:
        """A copy of the state's resources (name -> record), for assertions."""
        with self._state_lock:
            return json.loads(json.dumps(self._state["resources"]))

    # -------------------------------------------------------------------------------------------------- mocks
    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ not in COMMAND_TYPES:
            return super().new_resource(args)
        try:
            resource_id, outputs = self._command(args)
        except CommandFailed as exc:
            with self._state_lock:
                self.actions.append((args.name, "failed"))
                self.failures[args.name] = str(exc)
            log.error("%s", exc)
            raise
        with self._lock:
            self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider, outputs))
        return resource_id, outputs

    @staticmethod
    def _comparable(plain: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs as stored and compared: everything, with stdin as its SHA-256 (it carries the secret config)."""
        kept = {key: value for key, value in plain.items() if key not in ("stdin", "stdout", "stderr")}
        if plain.get("stdin") is not None:
            kept["stdin_sha256"] = hashlib.sha256(str(plain["stdin"]).encode()).hexdigest()
        return kept

    def _command(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        name = args.name
        plain = unwrap_secrets(dict(args.inputs))
        comparable = self._comparable(plain)
        with self._state_lock:
            if name in self._declared:
                raise CommandFailed(f"{name}: registered twice in one run (resource names must be unique)")
            self._declared.add(name)
            old = self._state["resources"].get(name)
        if pulumi.runtime.is_dry_run():
            previous = old or {}
            return f"{name}-id", {**args.inputs, "stdout": previous.get("stdout", ""), "stderr": previous.get("stderr", "")}

        if old is None:
            action = "create"
        elif old["inputs"].get("triggers") != comparable.get("triggers"):
            action = "replace"
        elif old["inputs"] != comparable:
            action = "update"
        else:
            action = "noop"

        if action == "noop":
            stdout, stderr = old["stdout"], old["stderr"]
        else:
            if action == "replace":
                self._delete(name, old)
            script = plain.get("create")
            env = dict(plain.get("environment") or {})
            if action == "update":
                script = plain.get("update") or plain.get("create")
                if plain.get("addPreviousOutputInEnv", True):
                    env |= {"PULUMI_COMMAND_STDOUT": old["stdout"], "PULUMI_COMMAND_STDERR": old["stderr"]}
            stdout = stderr = ""
            if script:
                result = self._run(name, action, plain, script, plain.get("stdin"), env, plain.get("logging"))
                stdout, stderr = _trim(result.stdout), _trim(result.stderr)
        record = {
            "type": args.typ,
            "inputs": comparable,
            "stdout": stdout,
            "stderr": stderr,
        }
        with self._state_lock:
            if old is None or action == "replace":
                self._state["seq"] += 1  # creation order: finish() deletes newest first
                record["seq"] = self._state["seq"]
            else:
                record["seq"] = old.get("seq", 0)
            self._state["resources"][name] = record
            self._save_locked()
            self.actions.append((name, action))
        return f"{name}-id", {**args.inputs, "stdout": stdout, "stderr": stderr}

    def _run(
        self,
        name: str,
        action: str,
        inputs: Mapping[str, Any],
        script: str,
        stdin: str | None,
        env: Mapping[str, str],
        logging_mode: str | None,
    ) -> SshResult:
        connection = inputs.get("connection")
        if connection is None:  # a local command
            where = "this machine"
            result = run_local(
                script, interpreter=inputs.get("interpreter"), env=env, directory=inputs.get("dir"), timeout=self.command_timeout
            )
        else:
            where = f"{connection.get('user') or 'root'}@{connection.get('host')}:{int(connection.get('port') or 22)}"
            result = run_ssh(connection, script, stdin=stdin, env=env, timeout=self.command_timeout, dial_pause=self.dial_pause)
            if result.exit_code == 255 and not result.stdout and HOST_KEY_MISMATCH in result.stderr:
                raise CommandFailed(
                    f"{name}: {action} on {where}: Dial: ssh: handshake failed: ssh: host key mismatch "
                    f"(the host did not show the pinned {connection['hostKey'].split()[0]} key; nothing was sent to it)"
                )
        mode = logging_mode or "stdoutAndStderr"
        log.info("%s: %s on %s: exit %d in %.2fs", name, action, where, result.exit_code, result.seconds)
        if mode in ("stdout", "stdoutAndStderr") and result.stdout.strip():
            log.info("%s stdout: %s", name, result.stdout.strip())
        if mode in ("stderr", "stdoutAndStderr") and result.stderr.strip():
            log.info("%s stderr: %s", name, result.stderr.strip())
        if result.exit_code != 0:
            output = (result.stdout + result.stderr).strip()
            first_line = script.strip().splitlines()[0] if script.strip() else ""
            raise CommandFailed(
                f"{name}: {action} on {where}: Process exited with status {result.exit_code}: running {first_line!r}...:\n{output[-4000:]}"
            )
        return result

    def _delete(self, name: str, record: Mapping[str, Any]) -> None:
        inputs = record["inputs"]
        script = inputs.get("delete")
        if not script:
            return
        env = dict(inputs.get("environment") or {})
        if inputs.get("addPreviousOutputInEnv", True):
            env |= {"PULUMI_COMMAND_STDOUT": record.get("stdout", ""), "PULUMI_COMMAND_STDERR": record.get("stderr", "")}
        self._run(name, "delete", inputs, script, None, env, inputs.get("logging"))

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        return super().call(args)

    # ------------------------------------------------------------------------------------------------- finish
    def finish(self) -> list[str]:
        """End a run: delete (newest first) the recorded commands this run did not register; their names.

        Raises :class:`CommandFailed` listing the deletes that failed (their records stay, to retry next time).
        """
        with self._state_lock:
            stale = [name for name in self._state["resources"] if name not in self._declared]
            stale.sort(key=lambda name: self._state["resources"][name].get("seq", 0), reverse=True)
        errors = []
        for name in stale:
            with self._state_lock:
                record = self._state["resources"][name]
            try:
                self._delete(name, record)
            except CommandFailed as exc:
                errors.append(str(exc))
                with self._state_lock:
                    self.actions.append((name, "failed"))
                    self.failures[name] = str(exc)
                continue
            with self._state_lock:
                del self._state["resources"][name]
                self._save_locked()
                self.actions.append((name, "delete"))
        with self._state_lock:
            self._declared = set()
            self._save_locked()
        if errors:
            raise CommandFailed("deletes failed:\n" + "\n".join(errors))
        return stale

    def summary(self) -> dict[str, list[str]]:
        """Resource names by action, for assertions and reports."""
        by_action: dict[str, list[str]] = {}
        with self._state_lock:
            for name, action in self.actions:
                by_action.setdefault(action, []).append(name)
        return {action: sorted(names) for action, names in by_action.items()}
