"""Test provider ``command``: ``command:local:Command`` and ``command:remote:Command`` as pulumi-command 1.2.1 has them.

Run as ``python -m testproviders.command <engine address>`` (the ``pulumi-resource-command`` shim does). Semantics
follow pulumi-command's provider/pkg/provider/{local,remote} at v1.2.1 and pulumi-go-provider's ``infer``:

* ID: the resource name and 8 random hex digits (``resource.NewUniqueHex(name, 8, 0)``);
* Check: ``connection`` is required for remote commands and its defaults are filled in (user ``root``, port 22,
  ``dialErrorLimit`` 10, ``perDialTimeout`` 15); ``logging`` must be one of the four values;
* Diff (infer's default): the old inputs against the new ones, property by property; a change of ``triggers``
  replaces (its ``replaceOnChanges``), any other change updates; an unknown value is a change;
* Create runs ``create`` (if any); Update runs ``update``, or else ``create`` (if any); Delete runs ``delete`` (if
  any) with the stored inputs, ``stdin`` included. Update and Delete offer the previous ``stdout``/``stderr`` as
  ``PULUMI_COMMAND_STDOUT``/``PULUMI_COMMAND_STDERR`` (each only when not empty) unless ``addPreviousOutputInEnv``
  is false;
* outputs: every input plus ``stdout`` and ``stderr``, each with one trailing newline trimmed; an update that
  runs nothing keeps the previous ones;
* the selected streams (``logging``: stdout, stderr, stdoutAndStderr (the default) or none) are logged line by
  line as ephemeral info on the resource while the command runs (the go SDK's ``InfoStatus``);
* a failure is ``<error>: running "<command, Go-quoted>":\\n<stdout and stderr as they came>``, ``<error>`` being
  ``Process exited with status N`` (remote) or ``exit status N`` (local), as the Go libraries word them.

Local commands run ``interpreter`` (default ``["/bin/sh", "-c"]``) plus the command, in ``dir`` (default: the
plugin's working directory), with ``environment`` merged over the plugin's environment. Remote ones: see
:mod:`testproviders.ssh`. Not implemented (the program uses none; a Check failure says so): ``assetPaths``,
``archivePaths`` and, in ``connection``, ``password``, ``privateKeyPassword``, ``proxy``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping
from typing import Any, ClassVar

from testproviders import process, server, ssh
from testproviders.server import UNKNOWN, Context, ProviderError, Resource

NAME = "command"
VERSION = "1.2.1"  # pulumi_command's _utilities.get_version() asks the engine for this version
LOGGING = ("stdout", "stderr", "stdoutAndStderr", "none")
DEFAULT_INTERPRETER = ("/bin/sh", "-c")
STDOUT_ENV, STDERR_ENV = "PULUMI_COMMAND_STDOUT", "PULUMI_COMMAND_STDERR"
COMMON_INPUTS = frozenset({"triggers", "create", "update", "delete", "stdin", "logging", "environment", "addPreviousOutputInEnv"})
# Input properties each resource implements (camelCase, as on the wire); the conformance test reads these.
LOCAL_INPUTS = COMMON_INPUTS | {"interpreter", "dir"}
REMOTE_INPUTS = COMMON_INPUTS | {"connection"}
CONNECTION_INPUTS = ssh.CONNECTION_INPUTS
NOT_IMPLEMENTED = {"assetPaths", "archivePaths"}
# Input (object) types, by "<SDK package>:<Args class>", with the properties implemented for each.
ARGS_TYPES = {"pulumi_command:ConnectionArgs": CONNECTION_INPUTS}


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` (``strconv.Quote``) writes it."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = ['"']
    for char in text:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _trim(text: str) -> str:
    return text.removesuffix("\n")


class _Command(Resource):
    """What local and remote commands share: lifecycle, diff, logging, outputs."""

    where: ClassVar[str]

    def check(self, news: dict[str, Any], olds: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        inputs, failures = super().check(news, olds)
        logging = inputs.get("logging")
        if logging is not None and logging != UNKNOWN and logging not in LOGGING:
            failures.append(("logging", f"logging: {logging!r} is not one of {', '.join(LOGGING)}"))
        for name in sorted(NOT_IMPLEMENTED & set(inputs)):
            failures.append((name, f"{name} is not implemented by the test provider (testproviders/command.py)"))
        return inputs, failures

    def replaces_on(self, key: str, old: Any, new: Any) -> bool:
        return key == "triggers"

    def create(self, ctx: Context, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        resource_id = ctx.name + secrets.token_hex(4)
        state = {**inputs, "stdout": "", "stderr": ""}
        if inputs.get("create") is not None:
            state.update(self._run(ctx, inputs["create"], inputs, previous=("", "")))
        return resource_id, state

    def update(self, ctx: Context, resource_id: str, state: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        previous = (state.get("stdout", ""), state.get("stderr", ""))
        result = {**news, "stdout": previous[0], "stderr": previous[1]}
        command = news.get("update") if news.get("update") is not None else news.get("create")
        if command is not None:
            result.update(self._run(ctx, command, news, previous=previous))
        return result

    def delete(self, ctx: Context, resource_id: str, state: dict[str, Any]) -> None:
        if state.get("delete") is not None:
            self._run(ctx, state["delete"], state, previous=(state.get("stdout", ""), state.get("stderr", "")))

    def _env(self, inputs: Mapping[str, Any], previous: tuple[str, str]) -> dict[str, str]:
        env = {str(key): str(value) for key, value in (inputs.get("environment") or {}).items()}
        if inputs.get("addPreviousOutputInEnv", True) is not False:
            if previous[0]:
                env[STDOUT_ENV] = previous[0]
            if previous[1]:
                env[STDERR_ENV] = previous[1]
        return env

    def _run(self, ctx: Context, command: str, inputs: Mapping[str, Any], previous: tuple[str, str]) -> dict[str, str]:
        logging = inputs.get("logging") or "stdoutAndStderr"
        streams = {"log_line": ctx.info_status, "log_stdout": logging in ("stdout", "stdoutAndStderr")}
        streams["log_stderr"] = logging in ("stderr", "stdoutAndStderr")
        exit_error, stdout, stderr, combined = self._execute(ctx, command, inputs, self._env(inputs, previous), streams)
        if exit_error is not None:
            raise ProviderError(f"{exit_error}: running {go_quote(command)}:\n{combined}")
        return {"stdout": _trim(stdout), "stderr": _trim(stderr)}

    def _execute(
        self, ctx: Context, command: str, inputs: Mapping[str, Any], env: dict[str, str], streams: dict[str, Any]
    ) -> tuple[str | None, str, str, str]:
        raise NotImplementedError


class LocalCommand(_Command):
    token = "command:local:Command"
    inputs = LOCAL_INPUTS

    def _execute(
        self, ctx: Context, command: str, inputs: Mapping[str, Any], env: dict[str, str], streams: dict[str, Any]
    ) -> tuple[str | None, str, str, str]:
        interpreter = list(inputs.get("interpreter") or DEFAULT_INTERPRETER)
        directory = inputs.get("dir")
        if directory is not None and not os.path.isdir(directory):
            raise ProviderError(f"chdir {directory}: no such file or directory")
        try:
            done = process.run(
                [*interpreter, command], stdin=inputs.get("stdin"), env={**os.environ, **env}, cwd=directory, timeout=ctx.timeout, **streams
            )
        except FileNotFoundError:
            raise ProviderError(f'exec: "{interpreter[0]}": executable file not found in $PATH: running {go_quote(command)}:\n') from None
        except subprocess.TimeoutExpired:
            raise ProviderError(f"signal: killed: running {go_quote(command)}:\n(no result within {ctx.timeout:.0f}s)") from None
        if done.returncode < 0:
            return f"signal: {_signal_name(-done.returncode)}", done.stdout, done.stderr, done.combined
        exit_error = f"exit status {done.returncode}" if done.returncode else None
        return exit_error, done.stdout, done.stderr, done.combined


def _signal_name(number: int) -> str:
    import signal

    names = {signal.SIGKILL: "killed", signal.SIGTERM: "terminated", signal.SIGINT: "interrupt", signal.SIGHUP: "hangup"}
    return names.get(number, f"signal {number}")


class RemoteCommand(_Command):
    token = "command:remote:Command"
    inputs = REMOTE_INPUTS
    required = frozenset({"connection"})

    def check(self, news: dict[str, Any], olds: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        inputs, failures = super().check(news, olds)
        connection = inputs.get("connection")
        if isinstance(connection, dict):
            inputs["connection"] = connection = {**ssh.CONNECTION_DEFAULTS, **connection}
            if "host" not in connection:
                failures.append(("connection.host", "missing required property 'connection.host'"))
            for name in ssh.UNSUPPORTED:
                if connection.get(name) is not None:
                    failures.append((f"connection.{name}", f"connection.{name} is not implemented by the test provider"))
        return inputs, failures

    def _execute(
        self, ctx: Context, command: str, inputs: Mapping[str, Any], env: dict[str, str], streams: dict[str, Any]
    ) -> tuple[str | None, str, str, str]:
        connection = inputs["connection"]

        def retrying(attempt: int, attempts: int) -> None:
            ctx.info_status(ssh.retry_message(attempt, connection.get("dialErrorLimit")))

        def skipped(name: str) -> None:
            ctx.warning(f"Unable to set '{name}': the test provider cannot pass this value with ssh_config SetEnv")

        try:
            result = ssh.run_ssh(
                connection,
                command,
                stdin=inputs.get("stdin"),
                env=env,
                on_retry=retrying,
                on_skipped_env=skipped,
                timeout=ctx.timeout,
                **streams,
            )
        except subprocess.TimeoutExpired:
            raise ProviderError(f"context deadline exceeded: running {go_quote(command)}:\n") from None
        if result.lost:  # x/crypto/ssh's error for a session that ended without an exit status
            return "wait: remote command exited without exit status or exit signal", result.stdout, result.stderr, result.combined
        exit_error = f"Process exited with status {result.exit_code}" if result.exit_code else None
        return exit_error, result.stdout, result.stderr, result.combined


def resources() -> list[Resource]:
    return [LocalCommand(), RemoteCommand()]


if __name__ == "__main__":
    server.main(NAME, VERSION, resources)
