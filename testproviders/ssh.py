"""A remote command over the system ``ssh`` client, as pulumi-command 1.2.1 runs one with Go's x/crypto/ssh.

Taken from ``lab/executor.py`` (``run_ssh`` and its helpers), which keeps its own copy until it is retired:

* the script goes to ssh as ONE argv element, which sshd hands verbatim to the login shell (``$SHELL -c
  <script>``): what Go's ``session.Run(cmd)`` does. ``stdin`` is fed to ssh through a pipe;
* the files ssh needs are kept off the disk (:class:`SshFiles`: in-memory files on Linux, else a private
  temporary directory removed afterwards and on SIGTERM): its config (``-F``, so no ``~/.ssh/config`` applies),
  the private key (0600; never on a command line, never logged), the pinned ``known_hosts`` and ssh's own log
  (``-E``: ssh's diagnostics go there, the remote command's stderr to stderr, so a dial failure is told from a
  command that failed);
* ``hostKey`` (an ``authorized_keys``-style ``type blob``) pins the server's key as ``ssh.FixedHostKey`` does:
  only that key type is offered (``HostKeyAlgorithms``, as pulumi-command sets them) and any other key ends the
  connection in the key exchange, before authentication, so nothing (no key, no stdin) reaches that host. Without
  ``hostKey`` any key is accepted (``ssh.InsecureIgnoreHostKey``);
* dial failures (connect, key exchange, authentication) are retried as pulumi-command's ``dialWithRetry`` does:
  ``dialErrorLimit`` (default 10) failures are retried, so up to ``dialErrorLimit + 1`` attempts (-1: unlimited,
  bounded here by :data:`MAX_DIAL_ATTEMPTS`), pausing 0.1 s, growing 1.5x up to 5 s (the Pulumi SDK's
  ``retry.Until`` defaults), each connect bounded by ``perDialTimeout`` (default 15 s); the last failure is
  reported as ``after N failed attempts: <Go's error text>`` (ssh's message mapped to x/crypto/ssh's wording);
* ``environment`` and the previous ``PULUMI_COMMAND_STDOUT``/``_STDERR`` go as ``SetEnv``. Known difference: Go's
  ``session.Setenv`` asks for a reply, so pulumi-command fails the command when sshd refuses an ``environment``
  variable (no ``AcceptEnv``) and warns for the previous-output ones; OpenSSH's client asks for none, so here a
  refused variable is silently dropped by sshd. A value ssh_config cannot carry (a newline) is not
  sent (its NAME is logged at debug level in the engine's log stream; values never are).

Not supported (the program uses none; :data:`CONNECTION_INPUTS` lists what is): ``password``,
``privateKeyPassword``, ``proxy``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testproviders import process
from testproviders.server import PrivateTempDir, ProviderError
from wgmesh.mesh.sshkeys import parse_ssh_key

DEFAULT_PORT = 22
DEFAULT_USER = "root"
DEFAULT_DIAL_ERROR_LIMIT = 10
DEFAULT_PER_DIAL_TIMEOUT = 15
MAX_DIAL_ATTEMPTS = 1000
RETRY_DELAY, RETRY_BACKOFF = 0.1, 1.5
# pulumi-command's longest pause between dial attempts is 5 s; a test of a dead host may shorten it (test equipment
# only: the attempts, their count and the failure are the same, only the wait between them is).
RETRY_MAX_DELAY = float(os.environ.get("WGMESH_TEST_MAX_DIAL_PAUSE", "5.0"))
SECRET_MODE = 0o600
# Connection properties (camelCase, as on the wire) this implementation honours.
CONNECTION_INPUTS = frozenset({"host", "port", "user", "privateKey", "agentSocketPath", "dialErrorLimit", "perDialTimeout", "hostKey"})
CONNECTION_DEFAULTS = {"port": DEFAULT_PORT, "user": DEFAULT_USER, "dialErrorLimit": DEFAULT_DIAL_ERROR_LIMIT, "perDialTimeout": 15}
UNSUPPORTED = ("password", "privateKeyPassword", "proxy")


class DialError(ProviderError):
    """No SSH session could be had (after the retries)."""


@dataclass(frozen=True)
class SshResult:
    exit_code: int
    stdout: str
    stderr: str
    combined: str
    lost: str = ""  # ssh's message when the session ended without an exit status (the connection broke)


# What ssh says when it got no session (connect, key exchange, host key, authentication), as opposed to a session
# that broke later ("Connection to X closed by remote host.", "Broken pipe", ...), which must not be retried: the
# command may have run.
DIAL_FAILURE = re.compile(
    r"^(ssh: connect to host|ssh: Could not resolve hostname|kex_exchange_identification|Connection closed by |"
    r"Connection reset by |Connection timed out during banner exchange|banner exchange|Host key verification failed|"
    r"Unable to negotiate|.*Permission denied \(|@+\s*$|.*REMOTE HOST IDENTIFICATION HAS CHANGED|Bad owner or permissions|"
    r"Load key )",
    re.MULTILINE,
)

CLOSED_BY_REMOTE = re.compile(r"Connection to \S+ closed by remote host\.\r?\n\Z")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, SECRET_MODE)
    try:
        os.fchmod(fd, SECRET_MODE)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def setenv_lines(env: Mapping[str, str], skipped: Callable[[str], None] | None = None) -> list[str]:
    """The ssh_config ``SetEnv`` line for ``env`` (none if empty); a variable it cannot carry goes to ``skipped``.

    ONE line: ssh_config keeps the first ``SetEnv`` directive it reads and ignores any later one. Backslashes and
    double quotes are escaped (ssh_config unescapes them); a newline cannot be carried at all.
    """
    pairs = []
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or "\n" in value or "\r" in value:
            if skipped is not None:
                skipped(key)
            continue
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        pairs.append(f'"{key}={escaped}"')
    return [f"SetEnv {' '.join(pairs)}"] if pairs else []


class SshFiles:
    """The files ssh reads (config, key, known_hosts) and writes (its log), secret ones included, kept off the disk.

    Where the OS allows (Linux: ``memfd_create`` and ``/proc``) each is an anonymous in-memory file (mode 0600)
    that ssh opens as ``/proc/<plugin pid>/fd/<n>`` (not ``/dev/fd``: ssh closes inherited descriptors first): no
    path on any file system, gone with the plugin even when it is killed with SIGKILL. Elsewhere (or with
    ``TESTPROVIDERS_SSH_FILES=tempdir``) they are 0600 files in a :class:`server.PrivateTempDir`, removed afterwards
    and on SIGTERM.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._tmp: PrivateTempDir | None = None
        memfd = hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")
        if not memfd or os.environ.get("TESTPROVIDERS_SSH_FILES") == "tempdir":
            self._tmp = PrivateTempDir("testproviders-ssh-")

    def __enter__(self) -> SshFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def add(self, name: str, text: str) -> str:
        """Store ``text`` as ``name``; the path ssh is to open it by."""
        if self._tmp is not None:
            path = Path(self._tmp.path) / name
            _write_private(path, text)
            return str(path)
        fd = os.memfd_create(f"testproviders-{name}", os.MFD_CLOEXEC)
        self._fds[name] = fd
        os.fchmod(fd, SECRET_MODE)
        os.write(fd, text.encode())
        return f"/proc/{os.getpid()}/fd/{fd}"

    def truncate(self, name: str) -> None:
        if self._tmp is not None:
            _write_private(Path(self._tmp.path) / name, "")
        else:
            os.ftruncate(self._fds[name], 0)

    def read(self, name: str) -> str:
        if self._tmp is not None:
            return (Path(self._tmp.path) / name).read_text(errors="replace")
        fd = self._fds[name]
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def host_key_options(host_key: str | None, host: str, port: int, files: SshFiles) -> list[str]:
    """ssh_config lines that accept exactly ``host_key`` (or, without one, any key: pulumi-command's default)."""
    if not host_key:
        return ["StrictHostKeyChecking no", "UserKnownHostsFile /dev/null", "GlobalKnownHostsFile /dev/null"]
    try:
        kind, blob = parse_ssh_key(host_key)
    except ValueError as exc:
        raise ProviderError(f"failed to parse host key: {exc}") from None
    pattern = host if port == DEFAULT_PORT else f"[{host}]:{port}"
    known_hosts = files.add("known_hosts", f"{pattern} {kind} {blob}\n")
    return [
        "StrictHostKeyChecking yes",
        f"UserKnownHostsFile {known_hosts}",
        "GlobalKnownHostsFile /dev/null",
        f"HostKeyAlgorithms {kind}",
        "CheckHostIP no",
        "UpdateHostKeys no",
        "VerifyHostKeyDNS no",
    ]


def go_dial_error(ssh_log: str, host: str, port: int) -> str:
    """ssh's own error text in x/crypto/ssh's (and Go net's) wording, as pulumi-command would report it."""
    endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    text = ssh_log.strip()
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return "ssh: handshake failed: ssh: host key mismatch"
    if "no matching host key type found" in text:
        return "ssh: handshake failed: ssh: no common algorithm for host key"
    if "Permission denied" in text:
        return "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"
    if "Connection refused" in text:
        return f"dial tcp {endpoint}: connect: connection refused"
    if "timed out" in text:
        return f"dial tcp {endpoint}: i/o timeout"
    if "No route to host" in text:
        return f"dial tcp {endpoint}: connect: no route to host"
    if "Network is unreachable" in text:
        return f"dial tcp {endpoint}: connect: network is unreachable"
    if "Could not resolve hostname" in text:
        return f"dial tcp: lookup {host}: no such host"
    if "Connection closed" in text or "Connection reset" in text or "kex_exchange_identification" in text:
        return "ssh: handshake failed: EOF"
    return f"ssh: {text.splitlines()[-1] if text else 'connection failed'}"


def dial_attempts(limit: Any) -> int:
    """How many dials pulumi-command makes: ``dialErrorLimit`` failures are retried (-1: unlimited, bounded here)."""
    limit = DEFAULT_DIAL_ERROR_LIMIT if limit is None else int(limit)
    return MAX_DIAL_ATTEMPTS if limit < 0 else min(limit + 1, MAX_DIAL_ATTEMPTS)


def run_ssh(
    connection: Mapping[str, Any],
    script: str,
    *,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    log_line: Callable[[str], None] | None = None,
    log_stdout: bool = True,
    log_stderr: bool = True,
    on_retry: Callable[[int, int], None] | None = None,
    on_skipped_env: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> SshResult:
    """Run ``script`` on the connection's host (see the module doc); :class:`DialError` if no session was had."""
    host = connection.get("host")
    if not host:
        raise ProviderError("connection.host is required")
    for name in UNSUPPORTED:
        if connection.get(name):
            raise ProviderError(f"connection.{name} is not supported by the test provider (testproviders/ssh.py)")
    port = int(connection.get("port") or DEFAULT_PORT)
    user = connection.get("user") or DEFAULT_USER
    per_dial = int(connection.get("perDialTimeout") if connection.get("perDialTimeout") is not None else DEFAULT_PER_DIAL_TIMEOUT)
    limit = connection.get("dialErrorLimit")
    attempts = dial_attempts(limit)
    with SshFiles() as files:
        options = [
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            # 0: no maximum, as pulumi-command's perDialTimeout 0
            *([f"ConnectTimeout {per_dial}"] if per_dial > 0 else []),
            "ServerAliveInterval 15",
            "ServerAliveCountMax 4",
            "ControlMaster no",
            "ControlPath none",
            "ForwardAgent no",
            "ForwardX11 no",
            "RequestTTY no",
            "LogLevel ERROR",
            "BatchMode yes",
        ]
        log_path = files.add("ssh.log", "")
        private_key = connection.get("privateKey")
        if private_key:
            key_path = files.add("key", private_key if private_key.endswith("\n") else private_key + "\n")
            options += [f"IdentityFile {key_path}", "IdentitiesOnly yes"]
        if connection.get("agentSocketPath"):
            options.append(f"IdentityAgent {connection['agentSocketPath']}")
        elif private_key:
            options.append("IdentityAgent none")
        options += host_key_options(connection.get("hostKey"), host, port, files)
        options += setenv_lines(env or {}, on_skipped_env)
        config_path = files.add("config", "Host *\n" + "".join(f"  {line}\n" for line in options))
        argv = ["ssh", "-F", config_path, "-E", log_path, "-p", str(port), "-l", user, "--", host, script]
        delay = RETRY_DELAY
        for attempt in range(1, attempts + 1):
            files.truncate("ssh.log")
            # ssh's own messages go to ssh.log (-E), so a failed dial streams nothing to the command's log.
            result = process.run(argv, stdin=stdin, log_line=log_line, log_stdout=log_stdout, log_stderr=log_stderr, timeout=timeout)
            ssh_log = files.read("ssh.log")
            closed = CLOSED_BY_REMOTE.search(result.stderr) if result.returncode == 255 else None
            if closed:  # ssh prints this one on stderr itself, not in its log: not the command's output
                stderr, combined = result.stderr[: closed.start()], result.combined.replace(closed.group(0), "", 1)
                return SshResult(result.returncode, result.stdout, stderr, combined, lost=closed.group(0).strip())
            if result.returncode != 255 or not ssh_log.strip():
                return SshResult(result.returncode, result.stdout, result.stderr, result.combined)
            if result.combined or not DIAL_FAILURE.search(ssh_log):
                return SshResult(result.returncode, result.stdout, result.stderr, result.combined, lost=ssh_log.strip())
            error = go_dial_error(ssh_log, host, port)
            if attempt == attempts:
                raise DialError(f"after {attempt - 1} failed attempts: {error}")
            if on_retry is not None:
                on_retry(attempt, attempts)
            time.sleep(delay)
            delay = min(delay * RETRY_BACKOFF, RETRY_MAX_DELAY)
        raise AssertionError("unreachable")  # pragma: no cover


def retry_message(attempt: int, limit: Any) -> str:
    """pulumi-command's status line for a failed dial that will be retried: ``Dial 3/10 failed: retrying``."""
    shown = "inf" if limit is not None and int(limit) < 0 else str(DEFAULT_DIAL_ERROR_LIMIT if limit is None else int(limit))
    return f"Dial {attempt}/{shown} failed: retrying"
